"""What produced an artifact ``auto`` finds in its work folder, and whether this run would produce the same.

``auto`` skips a stage whose artifact exists only when the artifact came from the same settings: the plans from
the same ``--budget``; a pretraining run or a fold from the same plans and training config (its checkpoint
records both) and from inputs (a pretrained encoder, a probe) not written after it. Each function returns what
differs, as short phrases for the message; an empty list means the artifact can be reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from orthodiff_auto.plans.adaptation import PretrainedPlan
from orthodiff_auto.plans.schema import Plans, ViewPlan
from orthodiff_auto.plans.subplans import Budget
from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.config import TrainingConfig

# Fields that change how fast a run goes or how often it writes, not what it learns (batch k is a pure function
# of the seed, the rank and k, whatever the number of data workers), so a rerun with other values reuses the run.
RESULT_NEUTRAL_FIELDS = frozenset({"num_workers", "checkpoint_every_epochs", "val_batch_size", "ddp_timeout_minutes",
                                   "progress_bar", "plot_every_epochs", "tensorboard", "cache_gb"})


def budget_differences(planned: Budget, requested: Budget) -> list[str]:
    return [] if str(planned) == str(requested) else [f"budget {planned} -> {requested}"]


def adaptation_differences(plans: Plans, like: Mapping[str, PretrainedPlan] | None) -> list[str]:
    """Views whose plans adopted another pretrained encoder than ``like`` has for them (or one when this run
    plans without, or none when it plans like one): the encoder's file is compared by its SHA-256."""
    found = []
    for view, vp in plans.views.items():
        had = vp.adapted_from
        wanted = like.get(view) if like else None
        if (had.sha256 if had else None) != (wanted.sha256 if wanted else None):
            found.append(f"{view} planned like {had.encoder if had else 'no pretrained encoder'} -> "
                         f"{wanted.encoder if wanted else 'no pretrained encoder'}")
    return found


def run_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint that records a run's settings: the final one, else the latest (an interrupted run)."""
    for name in ("checkpoint_final.pt", "checkpoint_latest.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def fold_differences(run_dir: Path, config: TrainingConfig, plans: Plans, inputs: Sequence[Path] = ()) -> list[str]:
    """How the fold in ``run_dir`` differs from one trained with ``config`` under ``plans`` from ``inputs``."""
    checkpoint = run_checkpoint(run_dir)
    if checkpoint is None:
        return []
    recorded = load_checkpoint(checkpoint, mmap=True)  # settings only: the weights are never read
    found = config_differences(recorded.get("config", {}), config.to_dict(), TrainingConfig().to_dict())
    if recorded.get("extras", {}).get("plans") != plans.to_dict():
        found.append("plans")
    return found + newer_inputs(checkpoint, inputs)


def pretrain_differences(run_dir: Path, config: TrainingConfig, diffusion_config: Mapping[str, Any],
                         view_plan: ViewPlan) -> list[str]:
    """How the pretraining run in ``run_dir`` differs from one with these configs under the view's plan."""
    checkpoint = run_checkpoint(run_dir)
    if checkpoint is None:
        return []
    recorded = load_checkpoint(checkpoint, mmap=True)
    extras = recorded.get("extras", {})
    found = config_differences(recorded.get("config", {}), config.to_dict(), TrainingConfig().to_dict())
    found += config_differences(extras.get("diffusion_config", {}), dict(diffusion_config))
    if (extras.get("diffusion_plan") != view_plan.diffusion.to_dict()
            or extras.get("architecture") != view_plan.segmentation.architecture.to_dict()):
        found.append("plans")
    return found


def config_differences(recorded: Mapping[str, Any], requested: Mapping[str, Any],
                       defaults: Mapping[str, Any] | None = None) -> list[str]:
    """``key old -> new`` for every result-relevant field whose value differs (every field of the config, the
    classification settings included). ``defaults``: the value of a field the recorded config lacks (added to
    the config since: the run used its default)."""
    recorded = {**(defaults or {}), **recorded}
    return [f"{key} {recorded.get(key)!r} -> {requested.get(key)!r}"
            for key in sorted(set(recorded) | set(requested))
            if key not in RESULT_NEUTRAL_FIELDS and recorded.get(key) != requested.get(key)]


def newer_inputs(checkpoint: Path, inputs: Sequence[Path]) -> list[str]:
    """Inputs written after the checkpoint (e.g. an encoder pretrained again since the fold was fine-tuned)."""
    stamp = checkpoint.stat().st_mtime_ns
    return [f"{p.name} is newer" for p in inputs if p.is_file() and p.stat().st_mtime_ns > stamp]


__all__ = ["RESULT_NEUTRAL_FIELDS", "adaptation_differences", "budget_differences", "config_differences",
           "fold_differences", "newer_inputs", "pretrain_differences", "run_checkpoint"]
