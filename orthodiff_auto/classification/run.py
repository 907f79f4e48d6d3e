"""``train_fold ... cls VIEW FOLD`` and ``train_fold ... cls fused FOLD``: set-up, the generic loop, the fold's
validation (thresholds, metrics, per-case predictions) and summary.json.

Outputs in ``request.output_dir()`` (``results/cls/<view|fused>/<variant>/fold_<k>/``):
``checkpoint_{latest,best,final}.pt`` (extras: plans, findings order, inputs, split, fusion mode and gate
weights, and in ``checkpoint_final.pt`` the thresholds chosen on the validation fold),
``validation_predictions.csv``, ``summary.json``, ``progress.png``, ``training_log.txt``.

The steps: the fold's cases (``fold.classification_fold``), the task (``build_task``: one view, the fused views,
or frozen diffusion features; ``fusion=stacked`` trains nothing and goes to ``stacked.train_stacked_fold``,
``fusion=mpae`` likewise to ``mpae_fold.train_mpae_fold``),
the loop, the validation (``validation.validate_classification_fold``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from orthodiff_auto.classification.anatomy import ANATOMY_KIND, train_anatomy_fold
from orthodiff_auto.classification.config import FUSED, ClassificationConfig
from orthodiff_auto.classification.fold import (
    ClassificationFold,
    classification_fold,
    pretrained_by_view,
    single_view_states,
)
from orthodiff_auto.classification.frozen import build_frozen_task
from orthodiff_auto.classification.mpae_fold import train_mpae_fold
from orthodiff_auto.classification.noised import NOISED_KIND, NoisedClassificationTask, pretrained_denoiser_state
from orthodiff_auto.classification.stacked import train_stacked_fold
from orthodiff_auto.classification.task import FusedClassificationTask, ViewClassificationTask
from orthodiff_auto.classification.validation import validate_classification_fold
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.training.checkpoint import refuse_to_overwrite
from orthodiff_auto.training.distributed import (DistributedContext, barrier, distributed_device, shutdown,
                                                 training_timeout)
from orthodiff_auto.training.fold import FoldRequest
from orthodiff_auto.training.loop import Trainer
from orthodiff_auto.training.pretrained import read_encoder_checkpoint


def train_classification_fold(request: FoldRequest, plans: Plans, log=print,
                              cls_config: ClassificationConfig | None = None) -> dict[str, Any]:
    """Train one classification fold (a view, or ``fused``) and validate it; returns the summary."""
    cls_config = cls_config or ClassificationConfig.from_training(request.config)
    device, ctx = distributed_device(request.device, timeout=training_timeout(request.config))
    try:
        return _train(request, plans, cls_config, device, ctx, log)
    finally:
        shutdown(ctx)


def _train(request: FoldRequest, plans: Plans, cls_config: ClassificationConfig, device: torch.device,
           ctx: DistributedContext, log) -> dict[str, Any]:
    if cls_config.classifier_features == ANATOMY_KIND:  # a logistic regression on segmentation features
        return train_anatomy_fold(request, plans, cls_config, device, log)
    fold = classification_fold(request, plans)
    refuse_to_overwrite(request.output_dir(), request.resume)
    if request.view == FUSED and cls_config.fusion == "stacked":  # nothing to train: a gate fitted out of fold
        return train_stacked_fold(request, plans, cls_config, device, ctx, log, fold)
    if request.view == FUSED and cls_config.fusion == "mpae":  # nothing to train: a head fitted out of fold
        return train_mpae_fold(request, plans, cls_config, device, ctx, log, fold)
    task = build_task(request, plans, cls_config, fold, device, log)
    return _fit_and_validate(request, task, fold, cls_config, device, ctx, log)


def build_task(request: FoldRequest, plans: Plans, cls_config: ClassificationConfig, fold: ClassificationFold,
               device: torch.device, log):
    """The task of the generic loop: frozen diffusion features (per view or fused), the fused views
    (branches from this fold's single-view classifiers or pretrained encoders), or one view."""
    frozen = cls_config.classifier_features == "diffusion"
    if frozen and request.pretrained is not None:
        raise UserInputError(f"{request.pretrained}: --pretrained does not apply to classifier_features=diffusion, "
                             "which reads each view's frozen denoiser and probe.json from RESULTS/pretrain/VIEW")
    pretrained = None
    if request.pretrained is not None and cls_config.classifier_features != NOISED_KIND:
        pretrained = read_encoder_checkpoint(request.pretrained)
    common = dict(config=request.config, cls_config=cls_config, preprocessed_dir=Path(request.preprocessed_dir),
                  findings=fold.findings, labels=fold.labels, train_cases=fold.train, val_cases=fold.val,
                  fold=request.fold)
    if frozen:
        return build_frozen_task(request, plans, fold.views, fold.present, device, log, **common)
    if cls_config.classifier_features == NOISED_KIND:
        if request.view == FUSED:
            raise UserInputError("classifier_features=noised trains single views (fuse them with the fused model "
                                 "of the finetune mode or compare views in model selection)")
        found = pretrained_denoiser_state(request, request.view)
        state, source, schedule, timesteps = found if found else ({}, None, "cosine", 1000)
        log(f"noised inputs at t={request.config.noise_timestep}: " + (f"weights of {source}" if source else
                                                                         "no pretraining run, from scratch"))
        return NoisedClassificationTask(plans, request.view, denoiser_state=state, denoiser_source=source,
                                        schedule=schedule, timesteps=timesteps, **common)
    if request.view == FUSED:
        # also on resume: which branches were warm-started decides the optimizer's parameter groups
        init_states = (single_view_states(request, fold.views, fold.findings, fold.val_ids, log)
                       if cls_config.fused_init == "auto" else {})
        by_view = pretrained_by_view(request, pretrained, [v for v in fold.views if v not in init_states], log)
        return FusedClassificationTask(plans, fold.views, present=fold.present, init_states=init_states,
                                       pretrained_by_view=by_view, pretrained=pretrained, **common)
    return ViewClassificationTask(plans, request.view, pretrained=pretrained, **common)


def _fit_and_validate(request: FoldRequest, task, fold: ClassificationFold, cls_config: ClassificationConfig,
                      device: torch.device, ctx: DistributedContext, log) -> dict[str, Any]:
    """The generic loop on ``task`` (resumed with --continue), then the fold's validation on the main process."""
    out = request.output_dir()
    out.mkdir(parents=True, exist_ok=True)
    # cached feature vectors: data-loading workers would only add their start-up time
    frozen = cls_config.classifier_features == "diffusion"
    loop_config = replace(request.config, num_workers=0) if frozen else request.config
    trainer = Trainer(task, loop_config, out, device, ctx, log=log)
    latest = out / "checkpoint_latest.pt"
    if request.resume and latest.is_file():
        trainer.resume(latest)
    trainer.log(_start_line(request, task, fold, cls_config, device, ctx))
    start = time.perf_counter()
    trainer.fit()
    train_seconds = time.perf_counter() - start
    summary: dict[str, Any] = {}
    if ctx.is_main:
        summary = validate_classification_fold(task, trainer, device, out, request, fold.sites, fold.skipped,
                                               train_seconds, log)
    barrier(ctx)
    return summary


def _start_line(request: FoldRequest, task, fold: ClassificationFold, cls_config: ClassificationConfig,
                device: torch.device, ctx: DistributedContext) -> str:
    n_skipped = len(fold.skipped["train"]) + len(fold.skipped["val"])
    return (f"cls {request.view} fold {request.fold} ({request.variant}"
            + (f", fusion {cls_config.fusion} of {'+'.join(fold.views)}" if request.view == FUSED else "")
            + f"): {len(fold.train)} training, {len(fold.val)} validation cases"
            + (f" ({n_skipped} without a {request.view} scan skipped)" if n_skipped else "")
            + f"; findings {fold.findings}; batch {task.batch_size}, device {device}"
            + (f", {ctx.world_size} processes" if ctx.enabled else ""))


__all__ = ["build_task", "train_classification_fold"]
