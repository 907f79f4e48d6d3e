"""The Python API for inference: arrays or files in, segmentations and findings out.

``Predictor(model_dir)`` loads the chosen fold checkpoints once; ``predict_case`` takes the scans of one
case (any subset of views) as arrays with their geometry and returns segmentations in each scan's original
geometry and the findings. ``orthodiff predict_folder`` is a thin wrapper around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.inference import FindingsEnsemble
from orthodiff_auto.data.image_io import ImageGeometry, read_image
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.model_dir import ModelDescription
from orthodiff_auto.networks.builder import build_segmentation_network
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.case import preprocess_case
from orthodiff_auto.segmentation.prediction import label_map_in_original_geometry, predict_logits
from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.device import resolve_device


@dataclass
class SegmentationEnsemble:
    """The fold models of one view; probabilities are averaged over folds (nnU-Net's ensembling)."""

    view: str
    plans: Plans
    models: list[torch.nn.Module]
    patch_size: tuple[int, ...]

    @classmethod
    def load(cls, view: str, checkpoints: Sequence[Path], device: torch.device) -> "SegmentationEnsemble":
        if not checkpoints:
            raise UserInputError(f"no segmentation checkpoints for view {view!r}")
        models, plans, patch = [], None, None
        for path in checkpoints:
            ckpt = load_checkpoint(path, map_location="cpu")
            extras = ckpt.get("extras", {})
            if ckpt.get("task") != "seg" or extras.get("view") != view:
                raise UserInputError(f"{path}: not a segmentation checkpoint of view {view!r}")
            plans = Plans.from_dict(extras["plans"])
            spec = plans.view(view).segmentation.architecture
            net = build_segmentation_network(spec, 1, plans.num_classes, deep_supervision=False, initialize=False)
            net.load_state_dict(ckpt["model"])
            models.append(net.to(device).eval())
            patch = tuple(extras.get("patch_size") or plans.view(view).segmentation.patch_size)
        return cls(view, plans, models, patch)

    def probabilities(self, data: np.ndarray, device: torch.device, overlap: float, mirror_axes,
                      batch_size: int = 2, mixed_precision: bool = True) -> np.ndarray:
        """Mean softmax over the folds on the preprocessed grid (C, z, y, x)."""
        total = None
        image = torch.as_tensor(np.ascontiguousarray(data, dtype=np.float32))
        for model in self.models:
            logits = predict_logits(model, image, self.patch_size, self.plans.num_classes, device, overlap=overlap,
                                    mirror_axes=mirror_axes, batch_size=batch_size, mixed_precision=mixed_precision)
            probs = torch.softmax(logits, 0)
            total = probs if total is None else total + probs
        return (total / len(self.models)).cpu().numpy()

    def segment(self, image: np.ndarray, geometry: ImageGeometry, device: torch.device, overlap: float = 0.5,
                tta: bool = False, batch_size: int = 2) -> np.ndarray:
        """Label map in the input's exact geometry (same shape, to be written with the same header)."""
        view_plan = self.plans.view(self.view)
        data, _, props = preprocess_case(image, geometry, view_plan)
        probs = self.probabilities(data, device, overlap, (0, 1, 2) if tta else None, batch_size)
        return label_map_in_original_geometry(probs, props, view_plan, self.plans.labels)


@dataclass
class CasePrediction:
    case_id: str
    segmentations: dict[str, np.ndarray] = field(default_factory=dict)  # view -> label map (original geometry)
    findings: dict[str, dict[str, float]] = field(default_factory=dict)  # finding -> probability, call, spread
    findings_note: str | None = None  # why ``findings`` is empty when a classifier exists


class Predictor:
    """Loads a model folder once; predicts cases from arrays or files."""

    def __init__(self, model_dir: Path | str, folds: Sequence[int] | None = None, device: str | None = None,
                 tta: bool = False, overlap: float = 0.5):
        self.model_dir = Path(model_dir)
        self.description = ModelDescription.load(self.model_dir)
        self.device = resolve_device(device)
        self.tta = tta
        self.overlap = overlap
        self.folds = None if folds is None else [int(f) for f in folds]
        self.segmenters: dict[str, SegmentationEnsemble] = {}
        for view, choice in self.description.segmentation.items():
            self.segmenters[view] = SegmentationEnsemble.load(view, self._select(choice.checkpoints), self.device)
        self.classifier = None
        if self.description.classification is not None:
            self.classifier = FindingsEnsemble.load(self._select(self.description.classification.checkpoints), self.device)

    def _select(self, checkpoints: Sequence[str]) -> list[Path]:
        paths = [self.model_dir / c for c in checkpoints]
        if self.folds is not None:
            chosen = [p for p in paths if any(p.stem == f"fold_{f}" for f in self.folds)]
            if not chosen:
                raise UserInputError(f"none of folds {self.folds} exists in {self.model_dir}")
            paths = chosen
        return paths

    @property
    def views(self) -> list[str]:
        return list(self.segmenters)

    def predict_case(self, case_id: str, scans: Mapping[str, tuple[np.ndarray, ImageGeometry]]) -> CasePrediction:
        """``scans``: view -> (array in SimpleITK order, geometry). Views without a model are ignored for
        segmentation; the findings use every view the classifier knows (missing views are masked)."""
        result = CasePrediction(case_id)
        for view, (image, geometry) in scans.items():
            if view in self.segmenters:
                result.segmentations[view] = self.segmenters[view].segment(
                    image, geometry, self.device, self.overlap, self.tta)
        if self.classifier is not None:
            if self.classifier.can_assess(scans):
                result.findings = self.classifier.predict(scans)
            else:  # a single-view classifier and a case without that view: segmentations, no findings
                result.findings_note = (f"no findings: the classifier reads {' or '.join(self.classifier.views)}, "
                                        f"the case has {', '.join(sorted(scans))}")
        return result

    def predict_files(self, case_id: str, files: Mapping[str, Path]) -> CasePrediction:
        scans = {view: read_image(path) for view, path in files.items()}
        return self.predict_case(case_id, scans)
