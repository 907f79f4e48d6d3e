"""The validation of a classification fold, after training: the final model's predictions of the fold's
validation cases, the thresholds chosen on them, the metrics, ``validation_predictions.csv``, the final
checkpoint with the thresholds, and summary.json (shared by the trained models and the stacked gate)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.config import FUSED
from orthodiff_auto.classification.metrics_io import (
    PREDICTIONS_CSV,
    subset_predictions_path,
    fold_metrics,
    select_thresholds,
    thresholds_table,
    write_validation_predictions,
)
from orthodiff_auto.training.checkpoint import load_checkpoint, save_checkpoint
from orthodiff_auto.training.classification_metrics import auroc, macro_auroc
from orthodiff_auto.training.device import autocast_for
from orthodiff_auto.utils.atomic import write_json_atomic
from orthodiff_auto.utils.json_safe import json_safe


def validate_classification_fold(task, trainer, device, out: Path, request, sites, skipped, train_seconds,
                                 log) -> dict[str, Any]:
    """Predict the validation cases with the final model, choose thresholds, write CSV, summary, checkpoint."""
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
            branch_auroc = branch_aurocs(task, outputs["view_logits"], y, present)
    else:
        thresholds = np.full(len(findings), np.nan)
    task.thresholds = thresholds_table(findings, thresholds)
    write_validation_predictions(out / PREDICTIONS_CSV, val, findings, probs, y, thresholds, extra)
    if task.view == FUSED and hasattr(task, "forward_cases"):
        write_view_subset_predictions(task, model, device, val, out, cfg.mixed_precision)
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
        "label_fraction_seed": request.label_fraction_seed,
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


def view_subsets(views: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty proper subset of ``views``, in their order (the combinations a case can arrive with)."""
    return [s for n in range(1, len(views)) for s in itertools.combinations(views, n)]


def write_view_subset_predictions(task, model, device, val: Sequence[str], out: Path, mixed_precision: bool) -> None:
    """For every proper subset of the fused model's views: its predictions of the validation cases that have
    those views, reading only those (the others masked as missing), in ``subset_predictions_path``. Model
    selection compares them with the single-view models for cases that arrive with fewer views."""
    for subset in view_subsets(task.views):
        cases = [c for c, row in zip(val, task.present_matrix(val)) if all(row[task.views.index(v)] for v in subset)]
        with torch.no_grad(), autocast_for(device, mixed_precision):
            logits = task.forward_cases(model, cases, device, views=subset)["logits"] if cases else np.zeros(
                (0, len(task.findings)))
        probs = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
        write_validation_predictions(subset_predictions_path(out, subset), cases, task.findings, probs,
                                     task.label_matrix(cases))


def branch_aurocs(task, view_logits: np.ndarray, y: np.ndarray, present: np.ndarray) -> dict[str, dict[str, float]]:
    """AUROC of each view branch's own logits inside the fused model, on the validation cases with that view."""
    out = {}
    for v, view in enumerate(task.views):
        rows = present[:, v]
        out[view] = {f: auroc(y[rows, i], view_logits[rows, i, v]) if rows.any() else float("nan")
                     for i, f in enumerate(task.findings)}
        out[view]["macro"] = macro_auroc(y[rows], view_logits[rows, :, v]) if rows.any() else float("nan")
    return out


__all__ = ["branch_aurocs", "validate_classification_fold", "view_subsets", "write_view_subset_predictions"]
