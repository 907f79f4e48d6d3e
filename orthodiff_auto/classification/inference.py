"""Findings of new cases from the fold checkpoints of one classification configuration (a view, or fused).

``FindingsEnsemble.load(checkpoints, device)`` reads the ``checkpoint_final.pt`` files of the folds (each holds
its plans, findings order, input geometry, fusion mode and the thresholds chosen on its validation fold);
``predict_prepared(scans)`` takes each view's preprocessed scan (the view's plan) with the case's predicted
segmentation on that grid, cuts the classification region around the segmented anatomy (the cascade; the
field of view's centre when the prediction is empty) at the classification spacing, averages the folds'
probabilities, and calls a finding positive when the mean probability reaches the mean of the folds'
thresholds (0.5 where no fold has one, e.g. fold ``all``). ``predict(scans)`` does the same from raw arrays
without a segmentation (the region then sits in the field of view's centre).
A fused ensemble uses whichever of its views a case has (missing views are masked); a single-view one needs
its view and raises ``UserInputError`` without it. A frozen-feature model (``classification.frozen``) carries
its denoiser weights and probe choice in its final checkpoint and runs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.clinical_inputs import ClinicalEncoding
from orthodiff_auto.classification.anatomy import ANATOMY_KIND, AnatomyFeatureModel, anatomy_features
from orthodiff_auto.classification.frozen import FROZEN_KIND, FrozenFeatureClassifier, frozen_classifier_from_extras
from orthodiff_auto.classification.fusion import FusedClassifier
from orthodiff_auto.classification.model import ViewClassifier
from orthodiff_auto.data.clinical import ClinicalVariable, case_clinical_values, clinical_from_dicts
from orthodiff_auto.classification.noised import NOISED_KIND, NoisedViewClassifier, noised_classifier_from_extras
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.case import preprocess_case
from orthodiff_auto.preprocessing.classification_input import (
    ViewInput,
    centre_from_labels,
    cut_region,
    region_volume,
)
from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.device import autocast_for

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class PreparedScan:
    """One view of a case as the models read it: preprocessed data (1, z, y, x) at ``spacing``, its properties
    (for mapping back), and the predicted segmentation on that grid (label indices; None when not segmented)."""

    data: np.ndarray
    spacing: tuple[float, float, float]
    properties: object
    labels: np.ndarray | None = None

    @classmethod
    def from_scan(cls, image: np.ndarray, geometry, view_plan, segmentation: np.ndarray | None = None) -> "PreparedScan":
        """Preprocess a scan (array in SimpleITK order with its geometry); ``segmentation``: a label map of the
        scan in its own geometry (e.g. from another tool), carried onto the preprocessed grid."""
        data, seg, props = preprocess_case(image, geometry, view_plan, segmentation)
        return cls(data, tuple(props.spacing_after_resampling), props, None if seg is None else seg[0])


def build_classifier(extras: Mapping, plans: Plans, where: str = "checkpoint") -> torch.nn.Module:
    """The network a classification checkpoint's extras describe (weights not loaded; a frozen-feature model
    comes with its denoisers loaded and takes the checkpoint's weights into ``.head``)."""
    findings = list(extras["findings"])
    if extras.get("kind") == NOISED_KIND:
        return noised_classifier_from_extras(extras, plans.view(extras["view"]).classification.architecture)
    if extras.get("kind") == FROZEN_KIND:
        return frozen_classifier_from_extras(extras, where)
    if extras.get("kind") == "fused":
        views = list(extras["views"])
        archs = {v: plans.view(v).classification.architecture for v in views}
        return FusedClassifier(views, archs, len(findings), extras.get("fusion", "gate"),
                               num_clinical=int((extras.get("mpae") or {}).get("num_clinical", 0)))
    return ViewClassifier(plans.view(extras["view"]).classification.architecture, len(findings))


class FindingsEnsemble:
    def __init__(self, name: str, views: Sequence[str], findings: Sequence[str], plans: Plans,
                 inputs: Mapping[str, ViewInput], models: Sequence[torch.nn.Module],
                 fold_thresholds: Sequence[Mapping[str, float | None] | None], device: torch.device,
                 mixed_precision: bool = True):
        self.name = name  # a view, or "fused"
        self.views = list(views)
        self.findings = list(findings)
        self.plans = plans
        self.inputs = dict(inputs)
        self.models = list(models)
        self.fold_thresholds = list(fold_thresholds)
        self.device = device
        self.mixed_precision = mixed_precision
        self.noise_draws = 1  # noised-input classifiers: fixed noises averaged per prediction (from the checkpoint)
        self.thresholds = self._ensemble_thresholds()
        # fusion=mpae with a tabular branch: per model its clinical variables and their encoding (else None)
        self.clinical: list[tuple[tuple[ClinicalVariable, ...], ClinicalEncoding] | None] = [None] * len(self.models)

    @property
    def clinical_declaration(self) -> list[ClinicalVariable]:
        """The clinical variables any of the models reads (none for most classifiers)."""
        out: dict[str, ClinicalVariable] = {}
        for entry in self.clinical:
            out.update({v.name: v for v in (entry[0] if entry else ()) if v.name not in out})
        return list(out.values())

    @property
    def clinical_variables(self) -> list[str]:
        """Names of the clinical columns any of the models reads."""
        return [v.name for v in self.clinical_declaration]

    @classmethod
    def load(cls, checkpoints: Sequence[Path | str], device: torch.device | str = "cpu") -> "FindingsEnsemble":
        if not checkpoints:
            raise UserInputError("no classification checkpoints")
        device = torch.device(device)
        models, thresholds, first, clinical = [], [], None, []
        plans = None
        for path in checkpoints:
            ckpt = load_checkpoint(path, map_location="cpu")
            extras = ckpt.get("extras", {})
            if ckpt.get("task") != "cls" or "findings" not in extras:
                raise UserInputError(f"{path}: not a classification checkpoint")
            key = (extras.get("kind"), extras.get("view"), tuple(extras["findings"]), tuple(extras.get("views", [])),
                   extras.get("fusion"))
            if first is None:
                first = key
                plans = Plans.from_dict(extras["plans"])
                inputs = {v: ViewInput.from_dict(d) for v, d in extras["inputs"].items()}
            elif key != first:
                raise UserInputError(f"{path}: a different classification model than {checkpoints[0]} "
                                     f"(view/fusion/findings differ); an ensemble needs folds of one configuration")
            if extras.get("kind") == ANATOMY_KIND:  # fitted numbers, no network
                models.append(AnatomyFeatureModel.from_checkpoint(extras, ckpt["model"], str(path)))
            else:
                model = build_classifier(extras, plans, str(path))
                (model.head if isinstance(model, FrozenFeatureClassifier) else model).load_state_dict(ckpt["model"])
                models.append(model.to(device).eval())
            thresholds.append(extras.get("thresholds"))
            head = extras.get("mpae") or {}
            clinical.append((clinical_from_dicts(head["clinical"]), ClinicalEncoding.from_dict(head["encoding"]))
                            if head.get("encoding") else None)
        kind, view, findings, views, _ = first
        ensemble = cls(view, list(views) or [view], list(findings), plans, inputs, models, thresholds, device)
        ensemble.clinical = clinical
        ensemble.noise_draws = int((extras.get("noised") or {}).get("draws", 1))
        return ensemble

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
    @property
    def reads_anatomy(self) -> bool:
        return bool(self.models) and isinstance(self.models[0], AnatomyFeatureModel)

    def prepare_preprocessed(self, view: str, scan: "PreparedScan") -> np.ndarray:
        """(1, *input_size) network input of one preprocessed scan: the region around its predicted anatomy
        (an anatomy-feature model: the features of its segmentation)."""
        if self.reads_anatomy:
            if scan.labels is None:
                raise UserInputError(f"the anatomy-feature classifier needs the {view} scan's segmentation")
            return anatomy_features(scan.data[0], scan.labels, scan.spacing, self.models[0].label_values)
        spec = self.inputs[view]
        centre = centre_from_labels(scan.labels) if spec.roi_source == "labels" else None
        return cut_region(region_volume(scan.data, scan.spacing, spec, centre), spec.input_size)

    def prepare(self, view: str, image: np.ndarray, geometry, segmentation: np.ndarray | None = None) -> np.ndarray:
        """(1, *input_size) network input of one scan (array in SimpleITK order with its geometry); the region is
        centred on ``segmentation`` (a label map in the scan's geometry) when given."""
        scan = PreparedScan.from_scan(image, geometry, self.plans.view(view), segmentation)
        return self.prepare_preprocessed(view, scan)

    # ------------------------------------------------------------------ prediction
    def fold_probabilities(self, inputs: Mapping[str, np.ndarray], clinical: Mapping[str, object] | None = None) -> np.ndarray:
        """(folds, F) probabilities from prepared inputs ``{view: (1, *input_size)}`` (any subset of views);
        ``clinical``: the case's clinical cells (name -> value; absent or empty: missing), read by models with a
        tabular branch only."""
        available = [v for v in self.views if v in inputs]
        if not available:
            raise UserInputError(f"the classifier needs a scan of {' or '.join(self.views)}; the case has "
                                 f"{sorted(inputs) or 'none'}")
        out = []
        with torch.no_grad(), autocast_for(self.device, self.mixed_precision):
            for model, tabular in zip(self.models, self.clinical):
                if isinstance(model, AnatomyFeatureModel):
                    logits = torch.from_numpy(model.logits(inputs))[None]
                elif isinstance(model, (FusedClassifier, FrozenFeatureClassifier)):
                    present = torch.tensor([[v in inputs for v in self.views]], device=self.device)
                    x = {v: torch.from_numpy(np.asarray(inputs[v], np.float32)[None]).to(self.device) if v in inputs
                         else torch.zeros(1, 1, *self.inputs[v].input_size, device=self.device) for v in self.views}
                    extra = {}
                    if tabular is not None:
                        variables, encoding = tabular
                        q = encoding.encode(case_clinical_values(clinical, variables))
                        extra["clinical"] = torch.from_numpy(q).to(self.device)
                    logits = model(x, present, **extra)["logits"]
                elif isinstance(model, NoisedViewClassifier):
                    x = torch.from_numpy(np.asarray(inputs[self.views[0]], np.float32)[None]).to(self.device)
                    logits = model.predict(x, self.noise_draws)
                else:
                    logits = model(torch.from_numpy(np.asarray(inputs[self.views[0]], np.float32)[None]).to(self.device))
                out.append(torch.sigmoid(logits.float())[0].cpu().numpy())
        return np.stack(out).astype(np.float64)

    def predict_inputs(self, inputs: Mapping[str, np.ndarray],
                       clinical: Mapping[str, object] | None = None) -> dict[str, dict[str, float]]:
        probs = self.fold_probabilities(inputs, clinical)
        mean, spread = probs.mean(0), probs.std(0)
        return {f: {"probability": float(mean[i]), "call": bool(mean[i] >= self.thresholds[f]),
                    "spread": float(spread[i])} for i, f in enumerate(self.findings)}

    def can_assess(self, views) -> bool:
        """Whether a case with these views has a scan the classifier reads (a fused one masks the others)."""
        return any(v in self.views for v in views)

    def predict_prepared(self, scans: Mapping[str, "PreparedScan"],
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


__all__ = ["FindingsEnsemble", "PreparedScan", "build_classifier", "DEFAULT_THRESHOLD"]
