"""``train_fold ... cls VIEW FOLD`` and ``train_fold ... cls fused FOLD``: set-up, the generic loop, the fold's
validation (thresholds, metrics, per-case predictions) and summary.json.

Outputs in ``request.output_dir()`` (``results/cls/<view|fused>/<variant>/fold_<k>/``):
``checkpoint_{latest,best,final}.pt`` (extras: plans, findings order, inputs, split, fusion mode and gate
weights, and in ``checkpoint_final.pt`` the thresholds chosen on the validation fold),
``validation_predictions.csv``, ``summary.json``, ``progress.png``, ``training_log.txt``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.config import ClassificationConfig
from orthodiff_auto.classification.metrics_io import (
    PREDICTIONS_CSV,
    fold_metrics,
    select_thresholds,
    thresholds_table,
    write_validation_predictions,
)
from orthodiff_auto.classification.task import FusedClassificationTask, ViewClassificationTask
from orthodiff_auto.data.preprocessed import load_findings
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.training.classification_metrics import auroc, macro_auroc
from orthodiff_auto.training.checkpoint import refuse_to_overwrite
from orthodiff_auto.training.device import autocast_for
from orthodiff_auto.training.distributed import DistributedContext, barrier, distributed_device, shutdown
from orthodiff_auto.utils.atomic import write_json_atomic
from orthodiff_auto.utils.json_safe import json_safe

FUSED = "fused"


def train_classification_fold(request, plans: Plans, log=print,
                              cls_config: ClassificationConfig | None = None) -> dict[str, Any]:
    """Train one classification fold (a view, or ``fused``) and validate it; returns the summary."""
    cls_config = cls_config or ClassificationConfig.from_training(request.config)
    device, ctx = distributed_device(request.device)
    try:
        return _train(request, plans, cls_config, device, ctx, log)
    finally:
        shutdown(ctx)


def _view_cases(preprocessed_dir: Path, plans: Plans) -> dict[str, set[str]]:
    from orthodiff_auto.preprocessing.storage import PreprocessedDataset

    return {v: set(PreprocessedDataset(preprocessed_dir, v).case_ids(subset="train"))
            for v in plans.views if (preprocessed_dir / v).is_dir()}


def _single_view_states(request, views: Sequence[str], findings: Sequence[str], val_cases: Sequence[str],
                        log) -> dict[str, dict[str, torch.Tensor]]:
    """Model states of this fold's single-view classifiers (same variant) that exist; refuses one that was
    trained on any of this fold's validation cases (splits remade since)."""
    from orthodiff_auto.training.checkpoint import load_checkpoint

    states = {}
    held_out = set(val_cases)
    for view in views:
        path = replace(request, view=view).output_dir() / "checkpoint_final.pt"
        if not path.is_file():
            continue
        ckpt = load_checkpoint(path)
        extras = ckpt.get("extras", {})
        if list(extras.get("findings", [])) != list(findings):
            raise UserInputError(f"{path}: trained for findings {extras.get('findings')}, the dataset declares "
                                 f"{list(findings)}; retrain that view or delete it")
        leaked = sorted(set(extras.get("split", {}).get("train", [])) & held_out)
        if leaked:
            raise UserInputError(f"{path}: trained on validation cases of this fold ({leaked[:5]}); the splits "
                                 "changed since — retrain that view or delete it")
        states[view] = ckpt["model"]
        log(f"fused: {view} branch starts from {path}")
    return states


def _pretrained_by_view(request, pretrained: dict[str, Any] | None, views: Sequence[str],
                        log) -> dict[str, dict[str, Any]]:
    """Fused model: an encoder checkpoint per view without a single-view classifier. ``--pretrained`` names one
    file; ``encoder_<view>.pt`` beside it or in a sibling folder named after the view (``pretrain/<view>/``, as
    ``orthodiff pretrain`` writes them) serves each view, and the named file serves the view it was pretrained on."""
    if pretrained is None:
        return {}
    from orthodiff_auto.training.pretrained import read_encoder_checkpoint

    given = Path(request.pretrained).resolve()
    out: dict[str, dict[str, Any]] = {}
    for view in views:
        candidates = [given.parent / f"encoder_{view}.pt", given.parent.parent / view / f"encoder_{view}.pt"]
        candidate = next((c for c in candidates if c.is_file()), None)
        if candidate is not None:
            out[view] = pretrained if candidate.resolve() == given else read_encoder_checkpoint(candidate)
        elif pretrained.get("view") == view:
            out[view] = pretrained
        else:
            log(f"fused: no pretrained encoder for view {view} beside {given} (encoder_{view}.pt): from scratch")
    return out


def _train(request, plans: Plans, cls_config: ClassificationConfig, device: torch.device, ctx: DistributedContext,
           log) -> dict[str, Any]:
    from orthodiff_auto.training.loop import Trainer
    from orthodiff_auto.training.fold import prepare_split
    from orthodiff_auto.training.splits import subsample_labelled

    pp = Path(request.preprocessed_dir)
    view_cases = _view_cases(pp, plans)
    if not view_cases:
        raise UserInputError(f"{pp}: no preprocessed views (run `orthodiff preprocess`)")
    if request.view != FUSED and request.view not in view_cases:
        raise UserInputError(f"{pp / request.view}: no preprocessed data for view {request.view!r}")
    all_cases = sorted(set().union(*view_cases.values()))
    findings, table = load_findings(pp, plans.findings, all_cases)  # before the split: it reads the same table
    train_ids, val_ids = prepare_split(request, plans)
    labels = {c: table.loc[c, findings].to_numpy(dtype=np.float32) for c in all_cases}
    sites = table["site"].astype(str).to_dict() if "site" in table.columns else None

    if request.view == FUSED:
        views = [v for v in view_cases if any(c in view_cases[v] for c in train_ids)]
        if not views:
            raise UserInputError(f"fold {request.fold}: no training scans of any view")
        train = [c for c in train_ids if any(c in view_cases[v] for v in views)]
        val = [c for c in val_ids if any(c in view_cases[v] for v in views)]
        skipped = {"train": sorted(set(train_ids) - set(train)), "val": sorted(set(val_ids) - set(val))}
    else:
        views = [request.view]
        have = view_cases[request.view]
        train = [c for c in train_ids if c in have]
        val = [c for c in val_ids if c in have]
        skipped = {"train": [c for c in train_ids if c not in have], "val": [c for c in val_ids if c not in have]}
    if request.label_fraction < 1:
        train = subsample_labelled(train, request.label_fraction, request.config.seed)
    if not train:
        raise UserInputError(f"fold {request.fold}: no training scans of view {request.view!r}")

    out = request.output_dir()
    latest = out / "checkpoint_latest.pt"
    refuse_to_overwrite(out, request.resume)
    if request.view == FUSED and cls_config.fusion == "stacked":  # nothing to train: a gate fitted out of fold
        from orthodiff_auto.classification.stacked import train_stacked_fold

        present = {c: [c in view_cases[v] for v in views] for c in set(train) | set(val)}
        return train_stacked_fold(request, plans, cls_config, device, ctx, log, views=views, findings=findings,
                                  labels=labels, train=train, val=val, val_ids=val_ids, present=present, sites=sites,
                                  skipped=skipped)
    frozen = cls_config.classifier_features == "diffusion"
    if frozen and request.pretrained is not None:
        raise UserInputError(f"{request.pretrained}: --pretrained does not apply to classifier_features=diffusion, "
                             "which reads each view's frozen denoiser and probe.json from RESULTS/pretrain/VIEW")
    pretrained = None
    if request.pretrained is not None:
        from orthodiff_auto.training.pretrained import read_encoder_checkpoint

        pretrained = read_encoder_checkpoint(request.pretrained)

    common = dict(config=request.config, cls_config=cls_config, preprocessed_dir=pp, findings=findings, labels=labels,
                  train_cases=train, val_cases=val, fold=request.fold)
    present = {c: [c in view_cases[v] for v in views] for c in set(train) | set(val)}
    if frozen:
        from orthodiff_auto.classification.frozen import build_frozen_task

        task = build_frozen_task(request, plans, views, present, device, log, **common)
    elif request.view == FUSED:
        # also on resume: which branches were warm-started decides the optimizer's parameter groups
        init_states = (_single_view_states(request, views, findings, val_ids, log)
                       if cls_config.fused_init == "auto" else {})
        by_view = _pretrained_by_view(request, pretrained, [v for v in views if v not in init_states], log)
        task = FusedClassificationTask(plans, views, present=present, init_states=init_states,
                                       pretrained_by_view=by_view, pretrained=pretrained, **common)
    else:
        task = ViewClassificationTask(plans, request.view, pretrained=pretrained, **common)
    out.mkdir(parents=True, exist_ok=True)
    # cached feature vectors: data-loading workers would only add their start-up time
    loop_config = replace(request.config, num_workers=0) if frozen else request.config
    trainer = Trainer(task, loop_config, out, device, ctx, log=log)
    if request.resume and latest.is_file():
        trainer.resume(latest)
    n_skipped = len(skipped["train"]) + len(skipped["val"])
    trainer.log(
        f"cls {request.view} fold {request.fold} ({request.variant}"
        + (f", fusion {cls_config.fusion} of {'+'.join(views)}" if request.view == FUSED else "")
        + f"): {len(train)} training, {len(val)} validation cases"
        + (f" ({n_skipped} without a {request.view} scan skipped)" if n_skipped else "")
        + f"; findings {findings}; batch {task.batch_size}, device {device}"
        + (f", {ctx.world_size} processes" if ctx.enabled else ""))
    start = time.perf_counter()
    trainer.fit()
    train_seconds = time.perf_counter() - start
    summary: dict[str, Any] = {}
    if ctx.is_main:
        summary = validate_classification_fold(task, trainer, device, out, request, sites, skipped, train_seconds, log)
    barrier(ctx)
    return summary


def validate_classification_fold(task, trainer, device, out: Path, request, sites, skipped, train_seconds,
                                 log) -> dict[str, Any]:
    """Predict the validation cases with the final model, choose thresholds, write CSV, summary, checkpoint."""
    from orthodiff_auto.training.checkpoint import load_checkpoint, save_checkpoint

    cfg, ccfg = task.config, task.cls_config
    model = trainer.model
    model.eval()
    findings, val = task.findings, task.val_cases
    start = time.perf_counter()
    with torch.no_grad(), autocast_for(device, cfg.mixed_precision):
        if task.view == FUSED:
            outputs = task.forward_cases(model, val, device)
        else:
            outputs = {"logits": task.predict_logits(model, val, device)}
    probs = 1.0 / (1.0 + np.exp(-outputs["logits"].astype(np.float64)))
    y = task.label_matrix(val)
    extra: dict[str, list] = {}
    if sites is not None:
        extra["site"] = [sites.get(c, "") for c in val]
    if task.view == FUSED:
        present = task.present_matrix(val)
        extra["views"] = ["+".join(v for v, p in zip(task.views, row) if p) for row in present]
    metrics: dict[str, Any] | None = None
    branch_auroc: dict[str, dict[str, float]] | None = None
    if val:
        thresholds = select_thresholds(y, probs, ccfg.threshold_method, ccfg.target_sensitivity)
        metrics = fold_metrics(y, probs, findings, thresholds, [sites.get(c, "") for c in val] if sites else None)
        if task.view == FUSED:
            branch_auroc = _branch_auroc(task, outputs["view_logits"], y, present)
    else:
        thresholds = np.full(len(findings), np.nan)
    task.thresholds = thresholds_table(findings, thresholds)
    write_validation_predictions(out / PREDICTIONS_CSV, val, findings, probs, y, thresholds, extra)
    validation_seconds = time.perf_counter() - start

    final = out / "checkpoint_final.pt"
    payload = load_checkpoint(final)
    payload["extras"] = task.checkpoint_extras()  # now with the thresholds (and the final gate weights)
    if hasattr(task, "inference_extras"):  # frozen features: the denoiser weights, in this checkpoint only
        payload["extras"].update(task.inference_extras())
    save_checkpoint(final, payload)

    history = trainer.history
    times, waits = history.get("epoch_time_s", []), history.get("data_wait_s", [])
    summary: dict[str, Any] = {
        "task": "cls",
        "view": request.view,
        "views": list(task.views),
        "fold": str(request.fold),
        "variant": request.variant,
        "pretrained_from": str(request.pretrained) if request.pretrained else None,
        "label_fraction": request.label_fraction,
        "findings": list(findings),
        "num_training_cases": len(task.train_cases),
        "num_validation_cases": len(val),
        "skipped_without_view": skipped,
        "pos_weight": {f: float(w) for f, w in zip(findings, task.pos_weight)},
        "threshold_method": ccfg.threshold_method,
        "target_sensitivity": ccfg.target_sensitivity,
        "thresholds": task.thresholds,
        "metrics": metrics,
        "config": cfg.to_dict(),
        "classification_config": ccfg.to_dict(),
        "timing": {
            "training_seconds": train_seconds,
            "seconds_per_iteration_median": float(np.median(times) / cfg.iterations_per_epoch) if times else None,
            "data_wait_fraction": float(sum(waits) / sum(times)) if times and sum(times) > 0 else None,
            "validation_seconds": validation_seconds,
        },
        "final_train_loss": history["train_loss"][-1] if history.get("train_loss") else None,
    }
    if task.view == FUSED:
        summary.update(fusion=task.fusion, gate_weights=task.gate_weights(), init_sources=dict(task.init_sources),
                       branch_auroc=branch_auroc)
    if task.pretrained_info:
        summary["pretrained"] = task.pretrained_info
    if hasattr(task, "specs"):
        summary["diffusion_features"] = {v: s.to_dict() for v, s in task.specs.items()}
    write_json_atomic(out / "summary.json", json_safe(summary))
    if metrics is not None:
        per = metrics["per_finding"]
        log("validation AUROC: " + ", ".join(f"{f} {per[f]['auroc']:.3f}" for f in findings)
            + f" | macro {metrics['macro']['auroc']:.3f}")
    if summary.get("gate_weights"):
        log("gate weights: " + "; ".join(f"{f} " + " ".join(f"{v} {w:.2f}" for v, w in ws.items())
                                          for f, ws in summary["gate_weights"].items()))
    return summary


def _branch_auroc(task, view_logits: np.ndarray, y: np.ndarray, present: np.ndarray) -> dict[str, dict[str, float]]:
    """AUROC of each view branch's own logits inside the fused model, on the validation cases with that view."""
    out = {}
    for v, view in enumerate(task.views):
        rows = present[:, v]
        out[view] = {f: auroc(y[rows, i], view_logits[rows, i, v]) if rows.any() else float("nan")
                     for i, f in enumerate(task.findings)}
        out[view]["macro"] = macro_auroc(y[rows], view_logits[rows, :, v]) if rows.any() else float("nan")
    return out


__all__ = ["train_classification_fold", "validate_classification_fold"]
