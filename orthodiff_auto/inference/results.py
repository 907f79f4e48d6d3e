"""What ``Predictor.predict`` returns: SimpleITK images in each input's geometry, and the findings."""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk


@dataclass(frozen=True)
class Finding:
    """One finding of a case: the folds' mean probability, the threshold behind the call (the mean of the folds'
    cross-validation thresholds) and the call, and the folds' standard deviation, all from the classifier model
    selection chose to read this finding."""

    name: str
    probability: float
    threshold: float
    positive: bool
    spread: float


@dataclass
class Prediction:
    case_id: str
    # view -> label map (label values of dataset.json) in that input's exact geometry
    segmentations: dict[str, sitk.Image] = field(default_factory=dict)
    # view -> class probabilities (a vector image, component i = the i-th of ``probability_labels``), on request
    probabilities: dict[str, sitk.Image] = field(default_factory=dict)
    probability_labels: tuple[str, ...] = ()  # label names in channel order (ascending label value)
    findings: dict[str, Finding] = field(default_factory=dict)  # in dataset.json's order
    classifier: str | None = None  # the classification configuration(s) that produced the findings
    findings_note: str | None = None  # why ``findings`` is empty when the model has a classifier


__all__ = ["Finding", "Prediction"]
