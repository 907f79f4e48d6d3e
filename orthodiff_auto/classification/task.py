"""Classification as tasks of the generic training loop: one view (``ViewClassificationTask``) or the fusion
of a fold's views (``FusedClassificationTask``).

Both train with BCE-with-logits and per-finding positive weights (n_negative / n_positive on the fold's
training cases, clamped), validate every epoch on the fold's validation cases (whole field of view, no
augmentation: loss and macro AUROC, which picks ``checkpoint_best.pt``), and keep in their checkpoint extras
everything inference needs: plans, findings order, input geometry per view, split, fusion mode and gate
weights, and the decision thresholds once the fold's validation has chosen them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from orthodiff_auto.classification.config import ClassificationConfig
from orthodiff_auto.classification.data import (
    FusedBatches,
    ViewBatches,
    balanced_case_weights,
    build_transforms,
    positive_weights,
)
from orthodiff_auto.classification.fusion import FusedClassifier, gate_weights_table
from orthodiff_auto.classification.model import ViewClassifier
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.classification_input import InputLoader, ViewInput
from orthodiff_auto.training.checkpoint import unwrap
from orthodiff_auto.training.classification_metrics import macro_auroc
from orthodiff_auto.training.config import TrainingConfig
from orthodiff_auto.training.distributed import per_rank_batch_size
from orthodiff_auto.training.pretrained import load_pretrained_encoder, pretrained_parameter_groups


class ClassificationTaskBase:
    """What both tasks share: labels, loss weights, inputs, validation, extras."""

    name = "cls"
    selection_metric: str | None = "val_macro_auroc"

    def __init__(self, plans: Plans, views: Sequence[str], config: TrainingConfig, cls_config: ClassificationConfig,
                 preprocessed_dir: Path, findings: Sequence[str], labels: Mapping[str, np.ndarray],
                 train_cases: Sequence[str], val_cases: Sequence[str], fold: int | str = 0,
                 pretrained: dict[str, Any] | None = None):
        self.plans = plans
        self.views = list(views)
        self.config = config
        self.cls_config = cls_config
        self.preprocessed_dir = Path(preprocessed_dir)
        self.findings = list(findings)
        self.labels = {c: np.asarray(v, dtype=np.float32) for c, v in labels.items()}
        self.train_cases = sorted(train_cases)
        self.val_cases = sorted(val_cases)
        self.fold = fold
        self.pretrained = pretrained
        self.inputs = {v: ViewInput.from_plan(v, plans.view(v).classification) for v in self.views}
        train_y = self.label_matrix(self.train_cases)
        self.pos_weight = positive_weights(train_y, cls_config.pos_weight_max)
        self.sample_weights = balanced_case_weights(train_y) if cls_config.balanced_sampling else None
        self.thresholds: dict[str, float | None] | None = None
        self.pretrained_info: dict[str, dict[str, Any]] = {}  # view -> what was loaded
        self._model: nn.Module | None = None
        self._loader: InputLoader | None = None

    # ------------------------------------------------------------------ helpers
    def label_matrix(self, cases: Sequence[str]) -> np.ndarray:
        if not cases:
            return np.zeros((0, len(self.findings)), dtype=np.float32)
        return np.stack([self.labels[c] for c in cases]).astype(np.float32)

    def loader(self) -> InputLoader:
        if self._loader is None:
            self._loader = InputLoader(self.preprocessed_dir, self.inputs, self.cls_config.cache_gb * (1 << 30),
                                       self.plans.ignore_label)
        return self._loader

    def _transforms(self, view: str):
        cfg, ccfg = self.config, self.cls_config
        p = cfg.augmentation_probability if cfg.augment else 0.0
        return build_transforms(self.inputs[view], p, ccfg.mirror, ccfg.rotation_degrees,
                                (ccfg.scale_low, ccfg.scale_high))

    def bce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pw = torch.as_tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=pw)

    def fused_loss(self, out: dict[str, torch.Tensor], target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Fused BCE plus the view branches' own BCE on the views each case has: gate mode with weight 1 (the
        gate sees the branches detached, so they learn only from this), concat mode with ``aux_weight``."""
        target = target.float()
        loss = self.bce(out["logits"], target)
        branch_weight = 1.0 if self.cls_config.fusion == "gate" else self.cls_config.aux_weight
        if branch_weight > 0:
            pw = torch.as_tensor(self.pos_weight, device=target.device)[:, None]
            per = F.binary_cross_entropy_with_logits(
                out["view_logits"].float(), target[..., None].expand_as(out["view_logits"]), pos_weight=pw,
                reduction="none")
            mask = present.bool()[:, None, :].expand_as(per).float()
            loss = loss + branch_weight * (per * mask).sum() / mask.sum().clamp_min(1.0)
        return loss

    # ------------------------------------------------------------------ prediction
    def predict_logits(self, model: nn.Module, cases: Sequence[str], device: torch.device) -> np.ndarray:
        raise NotImplementedError

    def predict(self, model: nn.Module, cases: Sequence[str], device: torch.device) -> np.ndarray:
        """Probabilities (N, F) of whole fields of view (call under no_grad / autocast as wanted)."""
        logits = self.predict_logits(model, cases, device)
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))

    def epoch_validation(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if not self.val_cases:
            return {}
        logits = self.predict_logits(model, self.val_cases, device)
        y = self.label_matrix(self.val_cases)
        loss = float(self.bce(torch.from_numpy(logits), torch.from_numpy(y)))
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        return {"val_loss": loss, "val_macro_auroc": macro_auroc(y, probs)}

    # ------------------------------------------------------------------ checkpoint
    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            "plans": self.plans.to_dict(),
            "findings": list(self.findings),
            "views": list(self.views),
            "inputs": {v: s.to_dict() for v, s in self.inputs.items()},
            "fold": str(self.fold),
            "split": {"train": list(self.train_cases), "val": list(self.val_cases)},
            "pos_weight": [float(x) for x in self.pos_weight],
            "classification_config": self.cls_config.to_dict(),
            "threshold_method": self.cls_config.threshold_method,
            "target_sensitivity": self.cls_config.target_sensitivity,
            "thresholds": None if self.thresholds is None else dict(self.thresholds),
            "pretrained_from": (self.pretrained or {}).get("source_path"),
        }


def _load_pretrained(encoder: nn.Module, pretrained: dict[str, Any], arch, view_plan) -> dict[str, Any]:
    """Load a pretrained encoder checkpoint (``training.pretrained``; a warning for each difference between its
    plan and ``view_plan``); what was loaded, for the summary."""
    info = load_pretrained_encoder(encoder, pretrained, arch)
    info.warn_about_differences(view_plan)
    return info.to_dict()


class ViewClassificationTask(ClassificationTaskBase):
    """One view: its encoder (scratch or pretrained), attention pooling, multi-label head."""

    def __init__(self, plans: Plans, view: str, config: TrainingConfig, cls_config: ClassificationConfig,
                 preprocessed_dir: Path, findings: Sequence[str], labels: Mapping[str, np.ndarray],
                 train_cases: Sequence[str], val_cases: Sequence[str], fold: int | str = 0,
                 pretrained: dict[str, Any] | None = None):
        super().__init__(plans, [view], config, cls_config, preprocessed_dir, findings, labels, train_cases, val_cases,
                         fold, pretrained)
        self.view = view
        self.cls_plan = plans.view(view).classification
        self.batch_size = int(config.batch_size or self.cls_plan.batch_size)

    def build_model(self) -> nn.Module:
        model = ViewClassifier(self.cls_plan.architecture, len(self.findings))
        if self.pretrained is not None:
            self.pretrained_info[self.view] = _load_pretrained(model.encoder, self.pretrained, self.cls_plan.architecture,
                                                            self.plans.view(self.view))
        self._model = model
        return model

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return pretrained_parameter_groups(model, self.pretrained is not None)

    def batch_dataset(self, start: int, total: int, ctx) -> ViewBatches:
        return ViewBatches(self.loader(), self.view, self.train_cases, self.label_matrix(self.train_cases),
                           per_rank_batch_size(self.batch_size, ctx), self._transforms(self.view), start, total, seed=self.config.seed,
                           rank=ctx.rank, weights=self.sample_weights, shift_regions=self.config.augment)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.bce(model(batch["data"]), batch["target"])

    def predict_logits(self, model: nn.Module, cases: Sequence[str], device: torch.device) -> np.ndarray:
        out = []
        step = max(1, self.config.val_batch_size or 2)
        loader = self.loader()
        for i in range(0, len(cases), step):
            x = torch.from_numpy(np.stack([loader.load(self.view, c) for c in cases[i:i + step]])).to(device)
            out.append(self.batch_logits(model, x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.findings)), dtype=np.float32)

    def batch_logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits of one validation batch (a subclass may read its inputs otherwise, e.g. noised)."""
        return model(x)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {**super().checkpoint_extras(), "kind": "view", "view": self.view}


class MultiViewOutputs:
    """For tasks whose ``forward_cases`` returns a dict with ``logits`` and whose model may carry a gate over
    views (the fine-tuned fused task and the frozen-feature task)."""

    def predict_logits(self, model: nn.Module, cases: Sequence[str], device: torch.device) -> np.ndarray:
        return self.forward_cases(model, cases, device)["logits"]

    def gate_weights(self) -> dict[str, dict[str, float]] | None:
        if self._model is None:
            return None
        return gate_weights_table(unwrap(self._model).gate_weights(), self.findings, self.views)


class FusedClassificationTask(MultiViewOutputs, ClassificationTaskBase):
    """The fold's view classifiers fused by a per-finding gate or by concatenation (see ``fusion``).

    ``present[case]`` lists, per view in ``views`` order, whether the case has that view. A branch starts from
    ``init_states[view]`` (the model state of this fold's single-view classifier of that view) when given,
    else from the encoder checkpoint ``pretrained_by_view[view]`` when given, else from scratch;
    ``init_sources`` says which (for the summary). ``pretrained`` is the checkpoint named on the command line.
    """

    num_clinical = 0  # mpae: inputs of the fusion head's tabular branch (classification.mpae_fold)

    def forward_extras(self, cases: Sequence[str], device: torch.device) -> dict[str, Any]:
        """Extra keyword inputs of the fused model for ``cases`` (none here; mpae: their clinical inputs)."""
        return {}

    def __init__(self, plans: Plans, views: Sequence[str], config: TrainingConfig, cls_config: ClassificationConfig,
                 preprocessed_dir: Path, findings: Sequence[str], labels: Mapping[str, np.ndarray],
                 present: Mapping[str, Sequence[bool]], train_cases: Sequence[str], val_cases: Sequence[str],
                 fold: int | str = 0, pretrained: dict[str, Any] | None = None,
                 init_states: Mapping[str, dict[str, torch.Tensor]] | None = None,
                 pretrained_by_view: Mapping[str, dict[str, Any]] | None = None):
        super().__init__(plans, views, config, cls_config, preprocessed_dir, findings, labels, train_cases, val_cases,
                         fold, pretrained)
        self.present = {c: np.asarray(p, dtype=bool) for c, p in present.items()}
        self.init_states = dict(init_states or {})
        self.pretrained_by_view = dict(pretrained_by_view or {})
        self.fusion = cls_config.fusion
        self.view = "fused"
        batches = [plans.view(v).classification.batch_size for v in self.views]
        # each view's plan sized its batch for that encoder alone; the fused step runs all of them
        self.batch_size = int(config.batch_size or max(2, min(batches) // len(self.views)))
        self.init_sources: dict[str, str] = {}

    def present_matrix(self, cases: Sequence[str], views: Sequence[str] | None = None) -> np.ndarray:
        """(cases, views) whether each case has each view (restricted to ``views`` when given)."""
        if not cases:
            return np.zeros((0, len(self.views)), dtype=bool)
        present = np.stack([self.present[c] for c in cases])
        if views is not None:
            present &= np.isin(self.views, list(views))[None]
        return present

    def build_model(self) -> nn.Module:
        archs = {v: self.plans.view(v).classification.architecture for v in self.views}
        model = FusedClassifier(self.views, archs, len(self.findings), self.fusion, num_clinical=self.num_clinical)
        for view in self.views:
            branch = model.branches[view]
            if view in self.init_states:
                try:
                    branch.load_state_dict(self.init_states[view])
                except RuntimeError as e:
                    raise UserInputError(f"the single-view {view} classifier of this fold does not fit the plans "
                                         f"({str(e).splitlines()[0]}); retrain it or delete it") from None
                self.init_sources.setdefault(view, "single-view checkpoint")
            elif view in self.pretrained_by_view:
                ckpt = self.pretrained_by_view[view]
                self.pretrained_info[view] = _load_pretrained(branch.encoder, ckpt, archs[view], self.plans.view(view))
                self.init_sources.setdefault(view, f"pretrained encoder {ckpt.get('source_path')}")
            else:
                self.init_sources.setdefault(view, "scratch")
        model.init_concat_head_from_branches()
        self._model = model
        return model

    def _warm_started(self, view: str) -> bool:
        return view in self.init_states or view in self.pretrained_by_view

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        model = unwrap(model)
        warm = {id(p) for v in self.views if self._warm_started(v) for p in model.branches[v].encoder.parameters()}
        groups = [{"params": [p for p in model.parameters() if id(p) not in warm]}]
        if warm:
            groups.insert(0, {"params": [p for p in model.parameters() if id(p) in warm], "warmup": True})
        return groups

    def batch_dataset(self, start: int, total: int, ctx) -> FusedBatches:
        return FusedBatches(self.loader(), self.views, self.train_cases, self.present_matrix(self.train_cases),
                            self.label_matrix(self.train_cases), per_rank_batch_size(self.batch_size, ctx),
                            {v: self._transforms(v) for v in self.views}, start, total, seed=self.config.seed,
                            rank=ctx.rank, weights=self.sample_weights, view_dropout=self.cls_config.view_dropout,
                            shift_regions=self.config.augment)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        present = batch["present"].bool()
        out = model({v: batch[f"data_{v}"] for v in self.views}, present)
        return self.fused_loss(out, batch["target"], present)

    def forward_cases(self, model: nn.Module, cases: Sequence[str], device: torch.device,
                      views: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Fused logits, per-view logits and (gate) per-case weights; ``views``: read only these (the others
        masked as missing), to score the model on cases arriving with fewer views."""
        loader = self.loader()
        step = max(1, self.config.val_batch_size or 2)
        parts: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(cases), step):
            chunk = list(cases[i:i + step])
            present = self.present_matrix(chunk, views)
            inputs = {}
            for v, view in enumerate(self.views):
                x = np.zeros((len(chunk), 1, *self.inputs[view].input_size), dtype=np.float32)
                for j, c in enumerate(chunk):
                    if present[j, v]:
                        x[j] = loader.load(view, c)
                inputs[view] = torch.from_numpy(x).to(device)
            out = model(inputs, torch.from_numpy(present).to(device), **self.forward_extras(chunk, device))
            for k, t in out.items():
                parts.setdefault(k, []).append(t.float().cpu().numpy())
        if not parts:
            f, v = len(self.findings), len(self.views)
            return {"logits": np.zeros((0, f)), "view_logits": np.zeros((0, f, v))}
        return {k: np.concatenate(v) for k, v in parts.items()}

    def checkpoint_extras(self) -> dict[str, Any]:
        return {**super().checkpoint_extras(), "kind": "fused", "view": "fused", "fusion": self.fusion,
                "gate_weights": self.gate_weights(), "init_sources": dict(self.init_sources)}


__all__ = ["ClassificationTaskBase", "FusedClassificationTask", "MultiViewOutputs", "ViewClassificationTask"]
