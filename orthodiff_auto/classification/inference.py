"""Findings of new cases from the fold checkpoints of one classification configuration (a view, or fused).

``FindingsEnsemble.load(checkpoints, device)`` reads the ``checkpoint_final.pt`` files of the folds (each holds
its plans, findings order, its reader's ``kind`` and what the reader's ``load`` needs, and the thresholds
chosen on its validation fold) and turns each into its reader's ``FindingsModel`` (``reader.READERS``).
``predict_prepared(scans)`` takes each view's preprocessed scan (the view's plan) with the case's predicted
segmentation on that grid, lets the first fold's model prepare its input (e.g. the classification region
around the segmented anatomy at the classification spacing, the field of view's centre when the prediction is
empty), averages the folds' probabilities, and calls a finding positive when the mean probability reaches the
mean of the folds' thresholds (0.5 where no fold has one, e.g. fold ``all``). ``predict(scans)`` does the same
from raw arrays without a segmentation. A fused ensemble uses whichever of its views a case has (missing views
are masked); a single-view one needs its view and raises ``UserInputError`` without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.reader import FindingsModel, PreparedScan, reader_of_checkpoint
from orthodiff_auto.classification.readers import READERS
from orthodiff_auto.data.clinical import ClinicalVariable
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.training.checkpoint import load_checkpoint

DEFAULT_THRESHOLD = 0.5


class FindingsEnsemble:
    def __init__(self, name: str, views: Sequence[str], findings: Sequence[str], plans: Plans,
                 models: Sequence[FindingsModel], fold_thresholds: Sequence[Mapping[str, float | None] | None]):
        self.name = name  # a view, or "fused"
        self.views = list(views)
        self.findings = list(findings)
        self.plans = plans
        self.models = list(models)
        self.fold_thresholds = list(fold_thresholds)
        self.thresholds = self._ensemble_thresholds()

    @property
    def clinical_declaration(self) -> list[ClinicalVariable]:
        """The clinical variables any of the models reads (none for most classifiers)."""
        out: dict[str, ClinicalVariable] = {}
        for model in self.models:
            out.update({v.name: v for v in model.clinical_variables if v.name not in out})
        return list(out.values())

    @property
    def clinical_variables(self) -> list[str]:
        """Names of the clinical columns any of the models reads."""
        return [v.name for v in self.clinical_declaration]

    @classmethod
    def load(cls, checkpoints: Sequence[Path | str], device: torch.device | str = "cpu") -> "FindingsEnsemble":
        """The folds' checkpoints of one configuration, each loaded by the reader its ``kind`` names."""
        if not checkpoints:
            raise UserInputError("no classification checkpoints")
        device = torch.device(device)
        models, thresholds, first, plans = [], [], None, None
        for path in checkpoints:
            ckpt = load_checkpoint(path, map_location="cpu")
            extras = ckpt.get("extras", {})
            if ckpt.get("task") != "cls" or "findings" not in extras:
                raise UserInputError(f"{path}: not a classification checkpoint")
            reader = reader_of_checkpoint(extras, str(path))
            key = (reader.name, extras.get("view"), tuple(extras["findings"]), tuple(extras.get("views", [])),
                   extras.get("fusion"))
            if first is None:
                first = key
                plans = Plans.from_dict(extras["plans"])
            elif key != first:
                raise UserInputError(f"{path}: a different classification model than {checkpoints[0]} "
                                     f"(view/fusion/findings differ); an ensemble needs folds of one configuration")
            models.append(reader.load(extras, ckpt["model"], plans, device, str(path)))
            thresholds.append(extras.get("thresholds"))
        _, view, findings, views, _ = first
        return cls(view, list(views) or [view], list(findings), plans, models, thresholds)

    def _ensemble_thresholds(self) -> dict[str, float]:
        out = {}
        for f in self.findings:
            values = [t[f] for t in self.fold_thresholds if t and t.get(f) is not None]
            out[f] = float(np.mean(values)) if values else DEFAULT_THRESHOLD
        return out

    def thresholds_table(self) -> dict[str, float]:
        """{finding: threshold} behind the calls (the mean of the folds' validation thresholds)."""
        return dict(self.thresholds)

    # ------------------------------------------------------------------ inputs
    def prepare_preprocessed(self, view: str, scan: PreparedScan) -> np.ndarray:
        """The models' input of one preprocessed scan (the folds of a configuration read the same input)."""
        return self.models[0].prepare(view, scan)

    def prepare(self, view: str, image: np.ndarray, geometry, segmentation: np.ndarray | None = None) -> np.ndarray:
        """The models' input of one scan (array in SimpleITK order with its geometry); the region is centred on
        ``segmentation`` (a label map in the scan's geometry) when given."""
        scan = PreparedScan.from_scan(image, geometry, self.plans.view(view), segmentation)
        return self.prepare_preprocessed(view, scan)

    # ------------------------------------------------------------------ prediction
    def fold_probabilities(self, inputs: Mapping[str, np.ndarray], clinical: Mapping[str, object] | None = None) -> np.ndarray:
        """(folds, F) probabilities from prepared inputs ``{view: input}`` (any subset of views);
        ``clinical``: the case's clinical cells (name -> value; absent or empty: missing), read by models with a
        tabular branch only."""
        available = [v for v in self.views if v in inputs]
        if not available:
            raise UserInputError(f"the classifier needs a scan of {' or '.join(self.views)}; the case has "
                                 f"{sorted(inputs) or 'none'}")
        present = [v for v in self.views if v in inputs]
        return np.stack([m.probabilities(inputs, present, clinical) for m in self.models]).astype(np.float64)

    def predict_inputs(self, inputs: Mapping[str, np.ndarray],
                       clinical: Mapping[str, object] | None = None) -> dict[str, dict[str, float]]:
        probs = self.fold_probabilities(inputs, clinical)
        mean, spread = probs.mean(0), probs.std(0)
        return {f: {"probability": float(mean[i]), "call": bool(mean[i] >= self.thresholds[f]),
                    "spread": float(spread[i])} for i, f in enumerate(self.findings)}

    def predict_prepared(self, scans: Mapping[str, PreparedScan],
                         clinical: Mapping[str, object] | None = None) -> dict[str, dict[str, float]]:
        """``scans``: view -> its preprocessed scan with the predicted segmentation (``PreparedScan``)."""
        return self.predict_inputs({v: self.prepare_preprocessed(v, s) for v, s in scans.items() if v in self.views},
                                   clinical)

    def predict(self, scans: Mapping[str, tuple[np.ndarray, object]],
                segmentations: Mapping[str, np.ndarray] | None = None,
                clinical: Mapping[str, object] | None = None) -> dict[str, dict[str, float]]:
        """``scans``: view -> (array in SimpleITK order, geometry); ``segmentations``: view -> label map in that
        scan's geometry, which centres the region (without it, the field of view's centre). Returns
        {finding: {probability, call, spread}} in dataset.json's order (``spread``: standard deviation of the
        folds' probabilities); ``clinical``: the case's clinical cells, for a model that reads them."""
        segmentations = segmentations or {}
        inputs = {v: self.prepare(v, image, geometry, segmentations.get(v))
                  for v, (image, geometry) in scans.items() if v in self.views}
        return self.predict_inputs(inputs, clinical)


__all__ = ["DEFAULT_THRESHOLD", "FindingsEnsemble", "PreparedScan", "READERS"]
