"""The classification settings as a classifier reads them.

They are defined once, in ``training.config.ClassificationSettings``, which every ``TrainingConfig`` is: each is
set on the command line like any training setting (``--set fusion=concat --set mirror=all``) and compared by
``pipeline.stale``. ``ClassificationConfig.from_training(config)`` takes them from a training config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from orthodiff_auto.training.config import FUSION_MODES, MIRROR_MODES, ClassificationSettings

#: the name of the fused model of a fold's views, where a single-view model has its view's name
FUSED = "fused"


@dataclass(frozen=True)
class ClassificationConfig(ClassificationSettings):
    """A run's classification settings (``training.config.ClassificationSettings`` documents each), checked."""

    def __post_init__(self):
        self.check_classification_settings()

    @property
    def threshold_method(self) -> str:
        return "youden" if self.target_sensitivity is None else "sensitivity"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_training(cls, config: Any, **overrides: Any) -> "ClassificationConfig":
        """The training config's classification settings (the defaults where an object lacks one), then
        ``overrides``."""
        values = {f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)}
        values.update(overrides)
        return replace(cls(), **values)


__all__ = ["ClassificationConfig", "FUSED", "FUSION_MODES", "MIRROR_MODES"]
