"""Findings for new cases: the fold classifiers of the chosen configuration, ensembled.

Each fold's probability is a sigmoid of its logits; the case's probability is the mean over folds, its
uncertainty the spread (standard deviation) across folds, and the call compares the mean with the mean of
the folds' stored thresholds (each chosen on its own validation fold). Views the case lacks are masked out
by the fused model; a single-view model without its view gives no probability (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.data import ViewInput, center_pad_crop, resample_to_spacing
from orthodiff_auto.classification.fusion import FusedClassifier
from orthodiff_auto.classification.model import ViewClassifier
from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.case import preprocess_case
from orthodiff_auto.training.checkpoint import load_checkpoint


@dataclass
class FindingsEnsemble:
    findings: list[str]
    kind: str  # "view" or "fused"
    views: list[str]
    inputs: dict[str, ViewInput]
    plans: Plans
    models: list[torch.nn.Module]
    thresholds: np.ndarray  # (F,) mean of the folds' thresholds
    device: torch.device

    @classmethod
    def load(cls, checkpoints: Sequence[Path], device: torch.device) -> "FindingsEnsemble":
        if not checkpoints:
            raise UserInputError("no classification checkpoints in the model folder")
        models, thresholds, first = [], [], None
        for path in checkpoints:
            ckpt = load_checkpoint(path, map_location="cpu")
            extras = ckpt.get("extras", {})
            if "findings" not in extras or "inputs" not in extras:
                raise UserInputError(f"{path}: not a classification checkpoint")
            plans = Plans.from_dict(extras["plans"])
            findings = list(extras["findings"])
            views = list(extras["views"])
            if first is None:
                first = (findings, extras.get("kind", "view"), views, plans, extras["inputs"])
            elif (findings, views) != (first[0], first[2]):
                raise UserInputError(f"{path}: findings or views differ from the other folds")
            archs = {v: plans.view(v).classification.architecture for v in views}
            if extras.get("kind") == "fused":
                model = FusedClassifier(views, archs, len(findings), extras.get("fusion", "gate"))
            else:
                model = ViewClassifier(archs[views[0]], len(findings))
            model.load_state_dict(ckpt["model"])
            models.append(model.to(device).eval())
            stored = extras.get("thresholds") or {}
            thresholds.append([np.nan if stored.get(f) is None else float(stored[f]) for f in findings])
        findings, kind, views, plans, inputs = first
        inputs = {v: ViewInput(v, tuple(d["spacing"]), tuple(d["input_size"])) for v, d in inputs.items()}
        with np.errstate(all="ignore"):
            mean_thresholds = np.nanmean(np.asarray(thresholds, dtype=float), axis=0)
        mean_thresholds = np.where(np.isnan(mean_thresholds), 0.5, mean_thresholds)
        return cls(findings, kind, views, inputs, plans, models, mean_thresholds, device)

    def thresholds_table(self) -> dict[str, float]:
        return {f: float(t) for f, t in zip(self.findings, self.thresholds)}

    def _input(self, view: str, image: np.ndarray, geometry: ImageGeometry) -> np.ndarray:
        view_plan = self.plans.view(view)
        data, _, _ = preprocess_case(image, geometry, view_plan)
        spec = self.inputs[view]
        data = resample_to_spacing(data, view_plan.target_spacing, spec.spacing)
        return center_pad_crop(data, spec.input_size)

    @torch.no_grad()
    def fold_probabilities(self, scans: Mapping[str, tuple[np.ndarray, ImageGeometry]]) -> np.ndarray | None:
        """(folds, F) probabilities, or None when the model's view(s) are all missing."""
        present = [v in scans for v in self.views]
        if not any(present):
            return None
        inputs = {}
        for v in self.views:
            size = self.inputs[v].input_size
            x = self._input(v, *scans[v]) if v in scans else np.zeros((1, *size), np.float32)
            inputs[v] = torch.from_numpy(x[None]).to(self.device)
        mask = torch.tensor([present], device=self.device)
        out = []
        for model in self.models:
            logits = model(inputs, mask)["logits"] if self.kind == "fused" else model(inputs[self.views[0]])
            out.append(torch.sigmoid(logits.float())[0].cpu().numpy())
        return np.stack(out)

    def predict(self, scans: Mapping[str, tuple[np.ndarray, ImageGeometry]]) -> dict[str, dict[str, float]]:
        probs = self.fold_probabilities(scans)
        result = {}
        for i, f in enumerate(self.findings):
            if probs is None:
                result[f] = {"probability": float("nan"), "call": 0, "spread": float("nan")}
                continue
            mean = float(probs[:, i].mean())
            result[f] = {"probability": mean, "call": int(mean >= self.thresholds[i]),
                         "spread": float(probs[:, i].std())}
        return result
