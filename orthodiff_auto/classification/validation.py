"""The validation of a trained or fitted classification fold: the final model's predictions of the fold's
validation cases (and, for a multi-view model, of the same cases reading only some of their views), the
thresholds chosen on them, the metrics and the summary, written by ``fold_outputs.write_fold_outputs``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from orthodiff_auto.classification.config import FUSED
from orthodiff_auto.classification.fold import ClassificationFold, view_combinations
from orthodiff_auto.classification.fold_outputs import (CasePredictions, FoldOutputs, probabilities_of,
                                                        score_validation, write_fold_outputs)
from orthodiff_auto.classification.metrics_io import thresholds_table
from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.classification_metrics import auroc, macro_auroc
from orthodiff_auto.training.device import autocast_for


def validate_classification_fold(task, model: nn.Module, history: Mapping[str, Any], device, out: Path, request,
                                 fold: ClassificationFold, train_seconds: float, log,
                                 checkpoint: dict[str, Any] | None = None,
                                 fit: tuple[str, str, Any] | None = None, log_lines: Sequence[str] = ()) -> dict:
    """Predict the validation cases with ``model``, choose thresholds, write the fold's outputs.
    ``checkpoint``: checkpoint_final.pt's payload (default: the one the training loop wrote); ``fit``: (file
    name, summary key, fit) of a model fitted out of the loop (``stacked``, ``mpae``)."""
    cfg, ccfg = task.config, task.cls_config
    model.eval()
    findings, val = task.findings, task.val_cases
    start = time.perf_counter()
    with torch.no_grad(), autocast_for(device, cfg.mixed_precision):
        if task.view == FUSED:
            outputs = task.forward_cases(model, val, device)
        else:
            outputs = {"logits": task.predict_logits(model, val, device)}
    probs = probabilities_of(outputs["logits"])
    y = task.label_matrix(val)
    extra: dict[str, list] = {}
    if fold.sites is not None:
        extra["site"] = [fold.sites.get(c, "") for c in val]
    if task.view == FUSED:
        present = task.present_matrix(val)
        extra["views"] = ["+".join(v for v, p in zip(task.views, row) if p) for row in present]
    thresholds, metrics = score_validation(y, probs, findings, ccfg, extra.get("site"))
    branch_auroc = branch_aurocs(task, outputs["view_logits"], y, present) if task.view == FUSED and val else None
    task.thresholds = thresholds_table(findings, thresholds)
    subsets = view_subset_predictions(task, model, device, val, cfg.mixed_precision) if task.view == FUSED else {}
    validation_seconds = time.perf_counter() - start

    payload = checkpoint if checkpoint is not None else load_checkpoint(out / "checkpoint_final.pt")
    payload["extras"] = task.checkpoint_extras()  # now with the thresholds (and the final gate weights)
    if hasattr(task, "inference_extras"):  # frozen features: the denoiser weights, in this checkpoint only
        payload["extras"].update(task.inference_extras())
    summary = fold_summary(task, request, fold, metrics, history, train_seconds, validation_seconds)
    if task.view == FUSED:
        summary.update(fusion=task.fusion, gate_weights=task.gate_weights(), init_sources=dict(task.init_sources),
                       branch_auroc=branch_auroc)
    if task.pretrained_info:
        summary["pretrained"] = task.pretrained_info
    if hasattr(task, "specs"):
        summary["diffusion_features"] = {v: s.to_dict() for v, s in task.specs.items()}
    if fit is not None:
        summary[fit[1]] = fit[2].summary_dict()
    write_fold_outputs(out, FoldOutputs(payload, CasePredictions(list(val), probs, y), thresholds, summary, extra,
                                        subsets, None if fit is None else (fit[0], fit[2].to_dict()), log_lines),
                       findings, log)
    if summary.get("gate_weights"):
        log("gate weights: " + "; ".join(f"{f} " + " ".join(f"{v} {w:.2f}" for v, w in ws.items())
                                          for f, ws in summary["gate_weights"].items()))
    return summary


def fold_summary(task, request, fold: ClassificationFold, metrics, history: Mapping[str, Any], train_seconds: float,
                 validation_seconds: float) -> dict[str, Any]:
    """summary.json's common part: what was trained on which cases, the thresholds, metrics and timing."""
    cfg, ccfg = task.config, task.cls_config
    times, waits = history.get("epoch_time_s", []), history.get("data_wait_s", [])
    return {
        "task": "cls",
        "view": request.view,
        "views": list(task.views),
        "fold": str(request.fold),
        "variant": request.variant,
        "pretrained_from": str(request.pretrained) if request.pretrained else None,
        "label_fraction": request.label_fraction,
        "label_fraction_seed": request.label_fraction_seed,
        "findings": list(task.findings),
        "num_training_cases": len(task.train_cases),
        "num_validation_cases": len(task.val_cases),
        "skipped_without_view": fold.skipped,
        "pos_weight": {f: float(w) for f, w in zip(task.findings, task.pos_weight)},
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


def view_subset_predictions(task, model, device, val: Sequence[str],
                            mixed_precision: bool) -> dict[tuple[str, ...], CasePredictions]:
    """For every proper subset of the fused model's views: its predictions of the validation cases that have
    those views, reading only those (the others masked as missing). Model selection compares them with the
    single-view models for cases that arrive with fewer views."""
    out = {}
    for subset in view_combinations(task.views)[1:]:
        cases = [c for c, row in zip(val, task.present_matrix(val)) if all(row[task.views.index(v)] for v in subset)]
        with torch.no_grad(), autocast_for(device, mixed_precision):
            logits = task.forward_cases(model, cases, device, views=subset)["logits"] if cases else np.zeros(
                (0, len(task.findings)))
        out[subset] = CasePredictions(cases, probabilities_of(logits), task.label_matrix(cases))
    return out


def branch_aurocs(task, view_logits: np.ndarray, y: np.ndarray, present: np.ndarray) -> dict[str, dict[str, float]]:
    """AUROC of each view branch's own logits inside the fused model, on the validation cases with that view."""
    out = {}
    for v, view in enumerate(task.views):
        rows = present[:, v]
        out[view] = {f: auroc(y[rows, i], view_logits[rows, i, v]) if rows.any() else float("nan")
                     for i, f in enumerate(task.findings)}
        out[view]["macro"] = macro_auroc(y[rows], view_logits[rows, :, v]) if rows.any() else float("nan")
    return out


__all__ = ["branch_aurocs", "fold_summary", "validate_classification_fold", "view_subset_predictions"]
