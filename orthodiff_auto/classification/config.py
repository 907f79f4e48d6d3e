"""Classification settings beside the generic ``TrainingConfig``.

``ClassificationConfig.from_training(config)`` takes every field below that the training config also has
(so ``--set fusion=concat`` works once ``TrainingConfig`` carries the field) and the defaults otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.config import FUSION_MODES

#: the name of the fused model of a fold's views, where a single-view model has its view's name
FUSED = "fused"
MIRROR_MODES = ("left_right", "all", "none")


@dataclass(frozen=True)
class ClassificationConfig:
    # fused model: "gate" (a learned weight per finding over the views), "stacked" (the same gate fitted on the
    # other folds' out-of-fold single-view predictions, branches = this fold's single-view classifiers
    # unchanged; classification.stacked), "mpae" (a fusion head fitted on the same out-of-fold predictions,
    # chosen inside the fold among the heads with and without clinical data; classification.mpae_fold) or
    # "concat" (pooled features concatenated) or "xattn" (per-finding queries attending over the present views'
    # bottleneck tokens)
    fusion: str = "gate"
    # decision thresholds chosen on the validation fold: Youden's J, or the largest threshold reaching this
    # sensitivity when it is given (in (0, 1])
    target_sensitivity: float | None = None
    # the reader (classification.reader.READERS): "finetune": the encoder is trained (from scratch or a
    # pretrained encoder); "noised": the denoiser's encoder fine-tuned on noised inputs; "diffusion": only a light
    # head on pooled features of the frozen pretrained denoiser at the timestep and block `orthodiff probe` chose;
    # "anatomy": features of the fold's predicted segmentation per structure, logistic regression
    classifier_features: str = "finetune"
    # draw training cases so that positives and negatives of every finding weigh alike (default: uniformly;
    # imbalance is handled by the loss' per-finding positive weights)
    balanced_sampling: bool = False
    # mirroring augmentation: "left_right" (the physical left-right axis of each view only), "all", "none"
    mirror: str = "left_right"
    # BCE positive weight per finding is n_negative / n_positive on the fold's training cases, clamped to
    # [1 / pos_weight_max, pos_weight_max]
    pos_weight_max: float = 50.0
    # fused concat model: weight of the per-view auxiliary BCE losses (keeps every view's logits a predictor
    # on its own); in gate mode the branches always learn from their own losses only (weight 1)
    aux_weight: float = 0.5
    # fused model: branches start from this fold's single-view classifiers when they exist ("auto"), or never
    # ("scratch": from scratch, or from --pretrained encoders). Single-view classifiers have fitted the same
    # training cases, so a gate learned on top of them favours the view that fitted its training cases best
    fused_init: str = "auto"
    # fused model: during training each present view of a case with several views is dropped with this
    # probability (at least one stays), so the fused model learns to predict from any subset of views
    view_dropout: float = 0.1
    # stacked fusion: strength of the L2 pull of the gate towards equal weights (no calibration: stacked.py says
    # why), per fitting case: the penalty is stacked_l2 / n_cases * sum of squares, a Gaussian prior
    # of standard deviation 1 / sqrt(2 * stacked_l2) on the centred gate logits
    stacked_l2: float = 0.5
    # mild spatial augmentation of the whole field of view
    rotation_degrees: float = 15.0
    scale_low: float = 0.85
    scale_high: float = 1.15
    # decoded inputs kept in memory per process (LRU)
    cache_gb: float = 1.0
    # anatomy features: the inverse L2 strengths C the inner cross-validation chooses from
    anatomy_strengths: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)

    def __post_init__(self):
        if self.fusion not in FUSION_MODES:
            raise UserInputError(f"config fusion: choose one of {list(FUSION_MODES)}, got {self.fusion!r}")
        if self.fused_init not in ("auto", "scratch"):
            raise UserInputError(f"config fused_init: choose 'auto' or 'scratch', got {self.fused_init!r}")
        if self.mirror not in MIRROR_MODES:
            raise UserInputError(f"config mirror: choose one of {list(MIRROR_MODES)}, got {self.mirror!r}")
        if self.target_sensitivity is not None and not 0 < self.target_sensitivity <= 1:
            raise UserInputError(f"config target_sensitivity must be in (0, 1], got {self.target_sensitivity}")
        if self.pos_weight_max < 1:
            raise UserInputError(f"config pos_weight_max must be >= 1, got {self.pos_weight_max}")
        if self.aux_weight < 0:
            raise UserInputError(f"config aux_weight must be >= 0, got {self.aux_weight}")
        if self.stacked_l2 < 0:
            raise UserInputError(f"config stacked_l2 must be >= 0, got {self.stacked_l2}")
        if not 0 <= self.view_dropout < 1:
            raise UserInputError(f"config view_dropout must be in [0, 1), got {self.view_dropout}")
        if not 0 < self.scale_low <= self.scale_high:
            raise UserInputError(f"config scale range must satisfy 0 < low <= high, got {self.scale_low}, {self.scale_high}")

    @property
    def threshold_method(self) -> str:
        return "youden" if self.target_sensitivity is None else "sensitivity"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_training(cls, config: Any, **overrides: Any) -> "ClassificationConfig":
        """The fields the training config shares with this one (when it has them), then ``overrides``."""
        values = {f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)}
        values.update(overrides)
        return replace(cls(), **values)


__all__ = ["ClassificationConfig", "FUSED", "FUSION_MODES", "MIRROR_MODES"]
