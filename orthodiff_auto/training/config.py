"""Training hyper-parameters as one typed config with named presets and ``key=value`` overrides.

A setting is never a subclass: ``--config demo --set num_epochs=20 --set initial_lr=0.005``.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, fields, replace
from typing import Any

from orthodiff_auto.errors import UserInputError


#: how a fused classifier combines its views (ClassificationSettings.fusion documents each)
FUSION_MODES = ("gate", "stacked", "mpae", "concat", "xattn")
MIRROR_MODES = ("left_right", "all", "none")


ANATOMY_FEATURE_SETS = ("basic", "where", "sectors")
# the segmentation configurations the anatomy reader can read: those predicting on the view's own grid alone
ANATOMY_SEGMENTATIONS = ("3d_fullres", "2d")


@dataclass(frozen=True)
class ClassificationSettings:
    """The classification settings of a run, part of every ``TrainingConfig`` (so ``--set mirror=all`` sets any of
    them, and ``pipeline.stale`` compares them with the rest); ``classification.config.ClassificationConfig`` is
    the same fields as a classifier reads them."""

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
    # the reader (classification.reader.READERS, checked when a classification run starts): "finetune": the
    # encoder is trained (from scratch or a pretrained encoder); "noised": the denoiser's encoder fine-tuned on
    # inputs noised at noise_timestep; "diffusion": only a light head on pooled features of the frozen pretrained
    # denoiser at the timestep and block `orthodiff probe` chose; "anatomy": features of the fold's predicted
    # segmentation per structure, logistic regression
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
    # anatomy features: "basic" (per whole structure), "where" (basic plus regions in millimetres, halves along
    # each structure's principal axes, pose and the joint's surroundings) or "sectors" (where plus each region per
    # tercile sector of the structure's principal frame, the sectors a family chosen per finding). With screening,
    # "sectors" had the best pooled out-of-fold macro AUROC from reference labels at both presets measured
    # (benchmarks.md, "The anatomy reader's ceiling")
    anatomy_feature_set: str = "sectors"
    # anatomy features: each finding's regression reads only this many features, those of strongest univariate
    # AUROC on the fold's training cases (0: all); 40 over 20 by 0.01 at both presets (within the CIs), both well
    # above 0 with the finer sets (benchmarks.md)
    anatomy_screen_features: int = 40
    # anatomy features: the segmentation configuration whose fold segmentation they read ("3d_fullres" or "2d":
    # those predicting on the view's own grid); auto sets the one it trained
    anatomy_segmentation: str = "3d_fullres"
    # frozen diffusion features: "attention" (the block's map, attention-pooled per finding) or "mean" (averaged)
    frozen_pooling: str = "attention"
    # noised fine-tuning: the timestep inputs are noised at, and how many fixed noises prediction averages over
    noise_timestep: int = 100
    noise_draws: int = 4

    def check_classification_settings(self) -> None:
        """UserInputError naming the first setting out of its range."""
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
        if self.noise_draws < 1 or self.noise_timestep < 0:
            raise UserInputError(f"config noise_draws must be >= 1 and noise_timestep >= 0, got {self.noise_draws}, "
                                 f"{self.noise_timestep}")
        if self.anatomy_feature_set not in ANATOMY_FEATURE_SETS:
            raise UserInputError(f"config anatomy_feature_set: choose one of {list(ANATOMY_FEATURE_SETS)}, "
                                 f"got {self.anatomy_feature_set!r}")
        if self.anatomy_segmentation not in ANATOMY_SEGMENTATIONS:
            raise UserInputError(f"config anatomy_segmentation: choose one of {list(ANATOMY_SEGMENTATIONS)}, "
                                 f"got {self.anatomy_segmentation!r}")
        if self.anatomy_screen_features < 0:
            raise UserInputError(f"config anatomy_screen_features must be >= 0 (0: every feature), "
                                 f"got {self.anatomy_screen_features}")
        if self.frozen_pooling not in ("attention", "mean"):
            raise UserInputError(f"config frozen_pooling: choose 'attention' or 'mean', got {self.frozen_pooling!r}")


@dataclass(frozen=True)
class TrainingConfig(ClassificationSettings):
    # schedule: nnU-Net's proven defaults (SGD Nesterov, momentum 0.99, poly decay with exponent 0.9)
    optimizer: str = "sgd"  # "sgd" or "adamw" (diffusion models train better with AdamW)
    num_epochs: int = 1000
    iterations_per_epoch: int = 250
    initial_lr: float = 1e-2
    weight_decay: float = 3e-5
    momentum: float = 0.99
    nesterov: bool = True
    poly_exponent: float = 0.9
    grad_clip_norm: float = 12.0
    # batches: None takes the plan's values
    batch_size: int | None = None
    patch_size: tuple[int, ...] | None = None
    oversample_foreground: float = 0.33
    # the class a forced-foreground patch is centred on: "uniform" among the classes present in the case (nnU-Net
    # v2) or "voxels" (a random foreground voxel: classes in proportion to their volume); training.patch_sampling
    foreground_class_choice: str = "uniform"
    # data pipeline
    num_workers: int | None = None  # None: sized from the CPUs (training.loop.default_loader_workers)
    augment: bool = True
    augmentation_probability: float = 1.0  # scales every augmentation's probability (0 turns them off)
    # network and loss
    deep_supervision: bool = True
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    # fine-tuning from a pretrained encoder: encoder learns at lr * encoder_lr_factor during warm-up
    encoder_lr_factor: float = 0.1
    encoder_warmup_epochs: int = 10
    # hardware
    mixed_precision: bool = True  # on CUDA only; bf16 where supported, else fp16 with a grad scaler
    channels_last: bool = False  # channels_last_3d memory format (CUDA); the three below: training.device.SpeedOptions
    cudnn_benchmark: bool = False  # cuDNN autotuner (CUDA)
    compile: bool = False  # torch.compile the network (CUDA)
    seed: int = 12345
    # DDP: how long a process waits at a barrier or collective for the others, e.g. while rank 0 validates an
    # epoch or writes a checkpoint (torch's default is 10 min with nccl, 30 with gloo)
    ddp_timeout_minutes: float = 180.0
    # bookkeeping and validation
    checkpoint_every_epochs: int = 50
    # end this process after epoch N (counted from the run's start) with checkpoint_latest.pt written, so that
    # `--continue` goes on from there; the schedule still runs to num_epochs, so it changes no result
    stop_after_epoch: int | None = None
    val_batches_per_epoch: int = 10  # fixed validation patches for the per-epoch pseudo Dice
    val_overlap: float = 0.5
    val_mirroring: bool = False
    # segmentation: sliding windows per forward pass (None: by the patch, sliding_window.windows_per_pass);
    # classification: cases per forward pass (None: 2)
    val_batch_size: int | None = None
    # watching a run (they change what a person sees, not what is learnt)
    progress_bar: bool = True  # a bar over each epoch's iterations on stderr, only when stderr is a terminal
    plot_every_epochs: int = 1  # redraw progress.png every N epochs and after the last
    tensorboard: bool = False  # scalars to <run folder>/tensorboard (needs the 'tensorboard' extra)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainingConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserInputError(f"unknown training config keys {unknown}")
        values = {}
        hints = typing.get_type_hints(cls)
        for k, v in d.items():
            values[k] = _coerce(k, v, hints[k])
        return cls(**values)

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adamw"):
            raise UserInputError(f"config optimizer: choose 'sgd' or 'adamw', got {self.optimizer!r}")
        self.check_classification_settings()
        if self.foreground_class_choice not in ("uniform", "voxels"):
            raise UserInputError(f"config foreground_class_choice: choose 'uniform' or 'voxels', got "
                                 f"{self.foreground_class_choice!r}")
        if self.stop_after_epoch is not None and self.stop_after_epoch < 1:
            raise UserInputError(f"config stop_after_epoch: must be at least 1 (or none), got {self.stop_after_epoch}")
        if self.plot_every_epochs < 1:
            raise UserInputError(f"config plot_every_epochs: must be at least 1, got {self.plot_every_epochs}")

    @property
    def total_iterations(self) -> int:
        return self.num_epochs * self.iterations_per_epoch


PRESETS: dict[str, TrainingConfig] = {
    # seconds on a CPU: proves that the whole path runs and the loss goes down (tests)
    "smoke": TrainingConfig(num_epochs=2, iterations_per_epoch=4, num_workers=0, checkpoint_every_epochs=1,
                            val_batches_per_epoch=1, plot_every_epochs=10,
                            initial_lr=1e-2, encoder_warmup_epochs=1, batch_size=2, mixed_precision=False),
    # minutes on a 2-core CPU with the cpu plan: the demo's budget. AdamW, because in a few hundred steps
    # nnU-Net's SGD (lr 0.01, momentum 0.99) had not left the all-background solution (documentation/training.md)
    "demo": TrainingConfig(optimizer="adamw", initial_lr=1e-2, weight_decay=1e-4, num_epochs=32,
                           iterations_per_epoch=25, num_workers=2, checkpoint_every_epochs=8,
                           encoder_warmup_epochs=4, val_batches_per_epoch=4),
    # nnU-Net-length training on a GPU
    "full": TrainingConfig(),
}


def make_config(preset: str = "full", overrides: list[str] | None = None) -> TrainingConfig:
    """The preset with ``key=value`` overrides applied (values parsed by the field's type)."""
    if preset not in PRESETS:
        raise UserInputError(f"unknown config {preset!r}; choose one of {sorted(PRESETS)}")
    config = PRESETS[preset]
    if not overrides:
        return config
    hints = typing.get_type_hints(TrainingConfig)
    changes: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise UserInputError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in hints:
            raise UserInputError(f"--set {key}: unknown config key; known keys: {', '.join(sorted(hints))}")
        changes[key] = parse_setting(key, text.strip(), hints[key])
    return replace(config, **changes)


def parse_setting(key: str, text: str, hint) -> Any:
    """The value of ``--set key=text`` for a field of type ``hint`` (JSON, comma lists, none/null)."""
    if text.lower() in ("none", "null") and _allows_none(hint):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if isinstance(value, str) and "," in value:
        value = [json.loads(p) for p in value.split(",")]
    return _coerce(key, value, hint)


def _allows_none(hint) -> bool:
    return type(None) in typing.get_args(hint)


def _coerce(key: str, value: Any, hint) -> Any:
    base = [a for a in typing.get_args(hint) if a is not type(None)] if _allows_none(hint) else [hint]
    target = base[0]
    if value is None:
        if _allows_none(hint):
            return None
        raise UserInputError(f"config {key}: may not be None")
    origin = typing.get_origin(target)
    try:
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                value = [value]
            element = typing.get_args(target)[0]  # tuple[int, ...] or tuple[float, ...]
            return tuple(element(v) for v in value)
        if target is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if target is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if target is float:
            return float(value)
        return target(value)
    except (TypeError, ValueError):
        raise UserInputError(f"config {key}: cannot use {value!r} as {getattr(target, '__name__', target)}") from None


__all__ = ["ClassificationSettings", "FUSION_MODES", "MIRROR_MODES", "TrainingConfig", "PRESETS", "make_config", "parse_setting"]
