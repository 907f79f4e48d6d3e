"""Settings of diffusion pretraining that segmentation training does not have, with presets and ``--set``.

``orthodiff pretrain --config demo --set num_epochs=5 --set ema_decay=0.99``: each ``key=value`` goes to the
``TrainingConfig`` (schedule, batches, hardware; parsed by ``training.config``) or to ``DiffusionConfig``
(below), whichever has the key. Pretraining starts from different defaults than segmentation training
(``PRETRAIN_TRAINING_DEFAULTS``), applied before the user's overrides.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields, replace
from typing import Any

from orthodiff_auto.diffusion.schedule import PREDICTIONS
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.config import PRESETS, TrainingConfig, make_config, parse_setting


@dataclass(frozen=True)
class DiffusionConfig:
    # EMA of the weights (what export and sampling use); warm-up: decay min(ema_decay, (1 + n) / (10 + n))
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    # loss: None takes the plan's prediction ("epsilon", "v" or "x0"); min_snr_gamma None = plain MSE
    prediction: str | None = None
    min_snr_gamma: float | None = None
    # what pretrain does after training: DDIM samples for the figure
    num_samples: int = 2
    sample_steps: int = 50
    # fixed validation batches (fixed timesteps, no augmentation) reported each epoch, drawn from a seeded
    # fraction of the scans held out of training (at least one; diffusion/holdout.py)
    val_batches: int = 2
    validation_fraction: float = 0.05

    def __post_init__(self):
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserInputError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.prediction is not None and self.prediction not in PREDICTIONS:
            raise UserInputError(f"prediction must be one of {list(PREDICTIONS)}, got {self.prediction!r}")
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise UserInputError(f"min_snr_gamma must be > 0 (or none), got {self.min_snr_gamma}")
        if self.num_samples < 0 or self.sample_steps < 1 or self.val_batches < 0:
            raise UserInputError("num_samples and val_batches must be >= 0, sample_steps >= 1")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise UserInputError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DIFFUSION_PRESETS: dict[str, DiffusionConfig] = {
    "smoke": DiffusionConfig(ema_decay=0.9, num_samples=1, sample_steps=5, val_batches=1),
    "demo": DiffusionConfig(ema_decay=0.995, num_samples=2, sample_steps=25),
    "full": DiffusionConfig(),
}

# Segmentation defaults that do not suit pretraining (see documentation/pretraining.md): light augmentation
# only (the loop's spatial transforms are not used at all), no encoder warm-up (everything is trained from scratch).
PRETRAIN_TRAINING_DEFAULTS: dict[str, list[str]] = {
    "smoke": ["encoder_warmup_epochs=0"],
    # fewer steps than fine-tuning, so the demo fits 15 minutes; SGD at lr 0.03 had the lowest EMA validation
    # loss after 125 steps among SGD 0.01/0.03 and AdamW 1e-3/3e-4 (documentation/benchmarks.md)
    "demo": ["encoder_warmup_epochs=0", "num_epochs=10", "optimizer=sgd", "initial_lr=0.03"],
    "full": ["encoder_warmup_epochs=0"],
}


def make_pretrain_configs(preset: str = "full",
                          overrides: list[str] | None = None) -> tuple[TrainingConfig, DiffusionConfig]:
    """(training config, diffusion config) of ``preset`` with ``key=value`` overrides, each routed by its key."""
    if preset not in PRESETS or preset not in DIFFUSION_PRESETS:
        raise UserInputError(f"unknown config {preset!r}; choose one of {sorted(DIFFUSION_PRESETS)}")
    training_keys = set(typing.get_type_hints(TrainingConfig))
    hints = typing.get_type_hints(DiffusionConfig)
    training_items = list(PRETRAIN_TRAINING_DEFAULTS.get(preset, []))
    changes: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise UserInputError(f"--set {item!r}: expected key=value")
        key, text = (s.strip() for s in item.split("=", 1))
        if key in hints:
            changes[key] = parse_setting(key, text, hints[key])
        elif key in training_keys:
            training_items.append(f"{key}={text}")
        else:
            raise UserInputError(f"--set {key}: unknown config key; training keys: {', '.join(sorted(training_keys))}; "
                                 f"diffusion keys: {', '.join(sorted(hints))}")
    return make_config(preset, training_items), replace(DIFFUSION_PRESETS[preset], **changes)


__all__ = ["DIFFUSION_PRESETS", "DiffusionConfig", "PRETRAIN_TRAINING_DEFAULTS", "make_pretrain_configs"]
