"""Planning a dataset like a pretrained encoder bundle (``plan_and_preprocess --like``, ``auto --pretrained-from``):
read the bundle (``training.pretrained.read_pretrained_bundle``), then plan and preprocess with the views it has
adopting its encoders' architecture, normalisation and spacing (``plans.adaptation``)."""

from __future__ import annotations

from pathlib import Path

from orthodiff_auto.preprocessing.runner import PreprocessSummary
from orthodiff_auto.preprocessing.stages import plan_and_preprocess
from orthodiff_auto.training.pretrained import read_pretrained_bundle
from orthodiff_auto.utils.log import log_line


def plan_and_preprocess_like(dataset: Path | str, out: Path | str, like: Path | str, budget: str | None = None,
                             num_processes: int = 2, progress: bool = True, log=log_line) -> PreprocessSummary:
    """``orthodiff plan_and_preprocess --like PRETRAINED``: ``plan_and_preprocess`` with the views the bundle at
    ``like`` has encoders for planned like them (UserInputError, exit 2, naming what differs when they cannot
    be, before anything is written)."""
    bundle = read_pretrained_bundle(like)
    for view, plan in bundle.items():
        log(f"{view}: planned like {plan.encoder} (pretrained on {plan.dataset_name!r})")
    return plan_and_preprocess(dataset, out, budget, num_processes, progress=progress, log=log, like=bundle)


__all__ = ["plan_and_preprocess_like"]
