"""A fold's classification outputs: thresholds chosen on its validation cases, metrics, predictions CSV.

``validation_predictions.csv`` has one row per validation case: ``case_id``, then per finding (dataset.json's
order) ``<finding>_probability``, ``<finding>_predicted`` (0/1 at the fold's threshold) and
``<finding>_label`` (the reference), then ``site`` when the dataset has sites and, for the fused model,
``views`` (the views the case had, joined by ``+``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from orthodiff_auto.training.classification_metrics import choose_thresholds, evaluate_findings
from orthodiff_auto.utils.atomic import atomic_path

PREDICTIONS_CSV = "validation_predictions.csv"


def select_thresholds(labels: np.ndarray, probabilities: np.ndarray, method: str = "youden",
                      target_sensitivity: float | None = None) -> np.ndarray:
    """One threshold per finding on these cases: Youden's J, or the largest reaching ``target_sensitivity``.

    NaN where the finding has only one class among the cases (no threshold can be chosen).
    """
    return choose_thresholds(np.asarray(labels).astype(bool), np.asarray(probabilities, dtype=float), method,
                             target_sensitivity)


def thresholds_table(findings: Sequence[str], thresholds: Sequence[float]) -> dict[str, float | None]:
    """{finding: threshold}, None where undefined (JSON- and weights_only-friendly)."""
    return {f: (None if t is None or math.isnan(float(t)) else float(t)) for f, t in zip(findings, thresholds)}


def fold_metrics(labels: np.ndarray, probabilities: np.ndarray, findings: Sequence[str], thresholds: np.ndarray,
                 sites: Sequence[str] | None = None) -> dict:
    """Per-finding AUROC, AP, sensitivity, specificity, F1 (at ``thresholds``), macro averages and, when sites
    are given and there are several, the same per site (with the overall thresholds)."""
    result = evaluate_findings(np.asarray(labels).astype(bool), np.asarray(probabilities, dtype=float), findings,
                               thresholds=thresholds, groups=sites if sites is not None and len(set(sites)) > 1 else None)
    out = {"n_cases": result["n_cases"], "per_finding": result["per_finding"], "macro": result["macro"]}
    if "groups" in result:
        out["per_site"] = result["groups"]
    return out


def write_validation_predictions(path: Path | str, case_ids: Sequence[str], findings: Sequence[str],
                                 probabilities: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None,
                                 extra_columns: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """Write the per-case CSV (atomically); returns the table."""
    probabilities = np.asarray(probabilities, dtype=float)
    labels = np.asarray(labels).astype(int)
    columns: dict[str, Sequence] = {"case_id": list(case_ids)}
    for f, name in enumerate(findings):
        columns[f"{name}_probability"] = probabilities[:, f]
        if thresholds is not None:
            t = thresholds[f]
            columns[f"{name}_predicted"] = (probabilities[:, f] >= t).astype(int) if not np.isnan(t) else [""] * len(case_ids)
        columns[f"{name}_label"] = labels[:, f]
    for k, v in (extra_columns or {}).items():
        columns[k] = list(v)
    table = pd.DataFrame(columns)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def subset_predictions_path(fold_dir: Path | str, views: Sequence[str]) -> Path:
    """Where a multi-view model's validation predictions reading only ``views`` are written."""
    return Path(fold_dir) / f"validation_predictions@{'+'.join(views)}.csv"


def read_validation_predictions(path: Path | str, findings: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(case ids, probabilities (N, F), labels (N, F)) of a validation_predictions.csv, in ``findings`` order."""
    table = pd.read_csv(path, dtype={"case_id": str})
    probs = table[[f"{f}_probability" for f in findings]].to_numpy(dtype=float)
    labels = table[[f"{f}_label" for f in findings]].to_numpy(dtype=int)
    return table["case_id"].tolist(), probs, labels


__all__ = [
    "PREDICTIONS_CSV", "select_thresholds", "thresholds_table", "fold_metrics",
    "write_validation_predictions", "read_validation_predictions", "subset_predictions_path",
]
