"""A classification fold trained by the generic loop (the fine-tuned, noised and frozen-feature readers): the
fold's cases and the output folder checked, the loop on the reader's task (resumed with ``--continue``), then
the fold's validation on the main process (``validation.validate_classification_fold``)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from orthodiff_auto.classification.config import FUSED, ClassificationConfig
from orthodiff_auto.classification.fold import ClassificationFold, classification_fold
from orthodiff_auto.classification.validation import validate_classification_fold
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.training.checkpoint import refuse_to_overwrite
from orthodiff_auto.training.distributed import DistributedContext, barrier
from orthodiff_auto.training.fold import FoldRequest
from orthodiff_auto.training.loop import Trainer


def checked_fold(request: FoldRequest, plans: Plans) -> ClassificationFold:
    """The fold's cases, after refusing to overwrite a finished run without ``--continue``."""
    fold = classification_fold(request, plans)
    refuse_to_overwrite(request.output_dir(), request.resume)
    return fold


def task_arguments(request: FoldRequest, cls_config: ClassificationConfig, fold: ClassificationFold) -> dict[str, Any]:
    """The keyword arguments every classification task takes from the request and the fold."""
    return dict(config=request.config, cls_config=cls_config, preprocessed_dir=Path(request.preprocessed_dir),
                findings=fold.findings, labels=fold.labels, train_cases=fold.train, val_cases=fold.val,
                fold=request.fold)


def fit_and_validate(request: FoldRequest, task, fold: ClassificationFold, cls_config: ClassificationConfig,
                     device: torch.device, ctx: DistributedContext, log, cached_inputs: bool = False) -> dict[str, Any]:
    """The generic loop on ``task`` (resumed with --continue), then the fold's validation on the main process.
    ``cached_inputs``: the task's inputs are in memory, so data-loading workers would only add start-up time."""
    out = request.output_dir()
    out.mkdir(parents=True, exist_ok=True)
    loop_config = replace(request.config, num_workers=0) if cached_inputs else request.config
    trainer = Trainer(task, loop_config, out, device, ctx, log=log)
    latest = out / "checkpoint_latest.pt"
    if request.resume and latest.is_file():
        trainer.resume(latest)
    trainer.log(start_line(request, task, fold, cls_config, device, ctx))
    start = time.perf_counter()
    trainer.fit()
    train_seconds = time.perf_counter() - start
    summary: dict[str, Any] = {}
    if ctx.is_main and not trainer.stopped_early:  # stop_after_epoch: nothing to validate yet
        summary = validate_classification_fold(task, trainer.model, trainer.history, device, out, request, fold,
                                               train_seconds, log)
    barrier(ctx)
    return summary


def start_line(request: FoldRequest, task, fold: ClassificationFold, cls_config: ClassificationConfig,
               device: torch.device, ctx: DistributedContext) -> str:
    n_skipped = len(fold.skipped["train"]) + len(fold.skipped["val"])
    return (f"cls {request.view} fold {request.fold} ({request.variant}"
            + (f", fusion {cls_config.fusion} of {'+'.join(fold.views)}" if request.view == FUSED else "")
            + f": {len(fold.train)} training, {len(fold.val)} validation cases"
            + (f" ({n_skipped} without a {request.view} scan skipped)" if n_skipped else "")
            + f"; findings {fold.findings}; batch {task.batch_size}, device {device}"
            + (f", {ctx.world_size} processes" if ctx.enabled else ""))


__all__ = ["checked_fold", "fit_and_validate", "start_line", "task_arguments"]
