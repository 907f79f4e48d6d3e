"""What every reader's fold writes, written by one function (``write_fold_outputs``): the fit of a reader that
fits rather than trains (``stacked_gate.json``, ``mpae_head.json``), the log lines, the validation predictions
(``validation_predictions.csv`` and, for a multi-view model, one file per proper subset of its views),
``checkpoint_final.pt`` with the thresholds chosen on the validation cases, and summary.json.

``score_validation`` chooses the thresholds and computes the metrics the same way for every reader;
``fold_logger`` is the log of a fold fitted outside the training loop (console and training_log.txt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from orthodiff_auto.classification.metrics_io import (
    PREDICTIONS_CSV,
    fold_metrics,
    select_thresholds,
    subset_predictions_path,
    write_validation_predictions,
)
from orthodiff_auto.training.checkpoint import save_checkpoint
from orthodiff_auto.utils.atomic import write_json_atomic
from orthodiff_auto.utils.json_safe import json_safe
from orthodiff_auto.utils.log import append_log_line


@dataclass(frozen=True)
class CasePredictions:
    """Probabilities (N, F) and 0/1 labels (N, F) of some validation cases."""

    cases: list[str]
    probabilities: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class FoldOutputs:
    checkpoint: dict[str, Any]  # checkpoint_final.pt's payload, extras with the thresholds
    predictions: CasePredictions  # every validation case, with the views it has
    thresholds: np.ndarray  # (F,) chosen on the validation cases, NaN where undefined
    summary: dict[str, Any]
    extra_columns: Mapping[str, Sequence] = field(default_factory=dict)  # site, views
    subsets: Mapping[tuple[str, ...], CasePredictions] = field(default_factory=dict)  # reading only these views
    fit: tuple[str, dict[str, Any]] | None = None  # (file name, JSON) of a reader fitted out of the loop
    log_lines: Sequence[str] = ()


def probabilities_of(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def score_validation(labels: np.ndarray, probabilities: np.ndarray, findings: Sequence[str], cls_config,
                     sites: Sequence[str] | None) -> tuple[np.ndarray, dict[str, Any] | None]:
    """(thresholds, metrics) of the validation cases: the thresholds by ``cls_config``'s rule, NaN and no
    metrics without cases."""
    if not len(labels):
        return np.full(len(findings), np.nan), None
    thresholds = select_thresholds(labels, probabilities, cls_config.threshold_method, cls_config.target_sensitivity)
    return thresholds, fold_metrics(labels, probabilities, findings, thresholds, sites)


def fold_logger(out: Path, log):
    """``log`` that also appends to the fold's training_log.txt."""
    def trainer_log(msg: str) -> None:
        log(msg)
        append_log_line(out / "training_log.txt", msg)
    return trainer_log


def write_fold_outputs(out: Path, outputs: FoldOutputs, findings: Sequence[str], log) -> dict[str, Any]:
    """Write the fold's outputs (atomically, file by file) and log its validation AUROC; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    if outputs.fit is not None:
        write_json_atomic(out / outputs.fit[0], json_safe(outputs.fit[1]))
    for line in outputs.log_lines:
        log(line)
    p = outputs.predictions
    write_validation_predictions(out / PREDICTIONS_CSV, p.cases, findings, p.probabilities, p.labels,
                                 outputs.thresholds, dict(outputs.extra_columns))
    for views, sub in outputs.subsets.items():
        write_validation_predictions(subset_predictions_path(out, views), sub.cases, findings, sub.probabilities,
                                     sub.labels)
    save_checkpoint(out / "checkpoint_final.pt", outputs.checkpoint)
    write_json_atomic(out / "summary.json", json_safe(outputs.summary))
    metrics = outputs.summary.get("metrics")
    if metrics is not None:
        per = metrics["per_finding"]
        log("validation AUROC: " + ", ".join(f"{f} {per[f]['auroc']:.3f}" for f in findings)
            + f" | macro {metrics['macro']['auroc']:.3f}")
    return outputs.summary


__all__ = ["CasePredictions", "FoldOutputs", "fold_logger", "probabilities_of", "score_validation",
           "write_fold_outputs"]
