"""Multi-label classification metrics: one column per finding, one row per case.

AUROC, AP and the ROC curve (and so Youden's threshold) are scikit-learn's (``roc_auc_score``,
``average_precision_score``, ``roc_curve``), the field's reference implementation. Only the bootstrap computes
them itself: row-wise on (B, N) arrays, so that 1000 resamples of every finding take one vectorised pass instead
of a sklearn call each (about 3 ms per call; tests hold the two equal on tied scores). Conventions:
  * AUROC and AP are NaN when a column holds only one class (neither is informative then).
  * A case is called positive when ``score >= threshold``.
  * Ratios with a zero denominator (e.g. sensitivity without positives) are NaN, never 0, so that
    NaN-aware macro averages skip them instead of being dragged down.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

# Bootstrap resamples are evaluated in chunks of about this many (resample, case) elements to bound memory.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


# ---------------------------------------------------------------- input checks

def _labels_1d(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y, s = _as_binary(y_true), _as_scores(y_score)
    if y.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"y_true and y_score must be 1-D of equal length, got {y.shape} and {s.shape}")
    return y, s


def _labels_2d(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y, s = _as_binary(y_true), _as_scores(y_score)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"y_true and y_score must be (cases, findings) of equal shape, got {y.shape} and {s.shape}")
    return y, s


def _as_binary(y_true) -> np.ndarray:
    y = np.asarray(y_true)
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    return y.astype(bool)


def _as_scores(y_score) -> np.ndarray:
    s = np.asarray(y_score, dtype=float)
    if not np.isfinite(s).all():
        raise ValueError("y_score must be finite")
    return s


def _nanmean(values, axis=None):
    """Mean over non-NaN values; NaN (without a warning) where there are none."""
    values = np.asarray(values, dtype=float)
    valid = ~np.isnan(values)
    count = valid.sum(axis=axis)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ---------------------------------------------------------------- ranking metrics, row-wise

def _ranking_metrics_rows(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision of each row of (B, N) labels and scores, sharing one sort: the bootstrap's
    vectorised form of sklearn's ``roc_auc_score`` and ``average_precision_score``.

    Both are computed over tie groups (equal scores), as sklearn does: AUROC counts a tied
    positive/negative pair as 1/2; AP = sum over groups of (recall gain) * (precision at the group's end).
    """
    n = y.shape[1]
    if n == 0:
        return np.full(y.shape[0], np.nan), np.full(y.shape[0], np.nan)
    order = np.argsort(-s, axis=1, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=1)
    y_sorted = np.take_along_axis(y, order, axis=1)
    tp = np.cumsum(y_sorted, axis=1)  # positives ranked at or above each position
    positions = np.arange(n)
    changes = s_sorted[:, 1:] != s_sorted[:, :-1]
    is_end = np.concatenate([changes, np.ones((y.shape[0], 1), bool)], axis=1)
    is_start = np.concatenate([np.ones((y.shape[0], 1), bool), changes], axis=1)
    # Index of the last / first position of each position's tie group.
    group_end = np.minimum.accumulate(np.where(is_end, positions, n)[:, ::-1], axis=1)[:, ::-1]
    group_start = np.maximum.accumulate(np.where(is_start, positions, 0), axis=1)
    tp_end = np.take_along_axis(tp, group_end, axis=1)
    tp_before = np.where(group_start > 0, np.take_along_axis(tp, np.maximum(group_start - 1, 0), axis=1), 0)

    n_pos = tp[:, -1].astype(float)
    n_neg = n - n_pos
    defined = (n_pos > 0) & (n_neg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Each negative beats no positive ranked above it and ties half of those sharing its score.
        pairs = np.where(~y_sorted, tp_before + 0.5 * (tp_end - tp_before), 0.0).sum(axis=1)
        auroc = np.where(defined, pairs / (n_pos * n_neg), np.nan)
        precision_at_end = tp_end / (group_end + 1.0)
        ap = np.where(defined, np.where(y_sorted, precision_at_end, 0.0).sum(axis=1) / n_pos, np.nan)
    return auroc, ap


def _has_both_classes(y: np.ndarray) -> bool:
    return bool(y.any()) and not bool(y.all())


def auroc(y_true, y_score) -> float:
    """Area under the ROC curve (sklearn's ``roc_auc_score``: ties count 1/2); NaN when only one class is
    present."""
    y, s = _labels_1d(y_true, y_score)
    return float(roc_auc_score(y, s)) if _has_both_classes(y) else float("nan")


def average_precision(y_true, y_score) -> float:
    """Average precision (sklearn's ``average_precision_score``: step-wise, no interpolation); NaN when only
    one class is present."""
    y, s = _labels_1d(y_true, y_score)
    return float(average_precision_score(y, s)) if _has_both_classes(y) else float("nan")


def roc_points(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's ``roc_curve`` with every distinct score kept: (fpr, tpr, thresholds), thresholds descending.

    The first point is (0, 0) at threshold +inf; tied scores share one point, so a tied positive/negative pair
    is a diagonal step and the area under these points is ``auroc``. Empty arrays when only one class is
    present (no curve is defined)."""
    y, s = _labels_1d(y_true, y_score)
    if not _has_both_classes(y):
        return np.empty(0), np.empty(0), np.empty(0)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr, thresholds


def auroc_scores(labels, scores, findings: Sequence[str]) -> tuple[float, dict[str, float]]:
    """(macro AUROC, {finding: AUROC}) of (cases, findings) labels and scores, one column per finding. A finding
    with one class only has NaN and is left out of the macro mean (NaN when no finding has both classes)."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    per = {f: auroc(labels[:, i], scores[:, i]) for i, f in enumerate(findings)}
    defined = [v for v in per.values() if not math.isnan(v)]
    return (float(np.mean(defined)) if defined else float("nan")), per


def macro_auroc(labels, scores) -> float:
    """Mean AUROC over the findings (columns) where it is defined (NaN when none is)."""
    return auroc_scores(labels, scores, range(np.shape(labels)[1]))[0]


# ---------------------------------------------------------------- thresholds

def youden_threshold(y_true, y_score) -> float:
    """Threshold (one of the scores) maximising sensitivity + specificity - 1 on sklearn's ROC curve; the
    largest one on ties.

    NaN when only one class is present.
    """
    y, s = _labels_1d(y_true, y_score)
    fpr, tpr, thresholds = roc_points(y, s)
    if thresholds.size == 0:
        return float("nan")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    # Back to counts, so that J * n_pos * n_neg is an exact integer: equal J values tie exactly (float tpr - fpr
    # may not) and argmax takes the first, the largest threshold. Point 0 (threshold +inf, nothing called
    # positive) is not a score, so it is left out, as a threshold would never be chosen there.
    tp = np.rint(tpr[1:] * n_pos).astype(np.int64)
    fp = np.rint(fpr[1:] * n_neg).astype(np.int64)
    return float(thresholds[1:][np.argmax(tp * n_neg - fp * n_pos)])


def threshold_for_sensitivity(y_true, y_score, target: float) -> float:
    """Largest threshold whose sensitivity is at least ``target`` (in (0, 1]); NaN without positives.

    That is the k-th highest positive score, k being the fewest true positives reaching the target.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    y, s = _labels_1d(y_true, y_score)
    positives = np.sort(s[y])[::-1]
    n_pos = positives.size
    if n_pos == 0:
        return float("nan")
    # Same float expression as the sensitivity reported later (tp / n_pos), so the target is met as checked.
    k = int(np.argmax(np.arange(1, n_pos + 1) / n_pos >= target))
    return float(positives[k])


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def binary_metrics_at_threshold(y_true, y_score, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, F1, precision and accuracy with ``score >= threshold`` called positive.

    Undefined ratios are NaN; a NaN threshold (e.g. Youden on a one-class column) gives all NaN.
    """
    y, s = _labels_1d(y_true, y_score)
    if np.isnan(threshold):
        return {k: float("nan") for k in ("sensitivity", "specificity", "f1", "precision", "accuracy")}
    pred = s >= threshold
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    tn = y.size - tp - fp - fn
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "accuracy": _ratio(tp + tn, y.size),
    }


def choose_thresholds(y_true, y_score, method: str = "youden", target_sensitivity: float | None = None) -> np.ndarray:
    """One threshold per finding column: ``"youden"`` or ``"sensitivity"`` (needs ``target_sensitivity``)."""
    y, s = _labels_2d(y_true, y_score)
    if method == "youden":
        return np.array([youden_threshold(y[:, f], s[:, f]) for f in range(y.shape[1])])
    if method == "sensitivity":
        if target_sensitivity is None:
            raise ValueError('method="sensitivity" needs target_sensitivity')
        return np.array([threshold_for_sensitivity(y[:, f], s[:, f], target_sensitivity) for f in range(y.shape[1])])
    raise ValueError(f'method must be "youden" or "sensitivity", got {method!r}')


# ---------------------------------------------------------------- evaluation of all findings

def _bootstrap_ranking(y: np.ndarray, s: np.ndarray, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AP, each (n_resamples, F), on case resamples shared by all findings (seeded)."""
    n_cases, n_findings = y.shape
    indices = np.random.default_rng(seed).integers(0, n_cases, size=(n_resamples, n_cases))
    auc = np.empty((n_resamples, n_findings))
    ap = np.empty((n_resamples, n_findings))
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // max(n_cases, 1))
    for f in range(n_findings):
        for start in range(0, n_resamples, chunk):
            idx = indices[start:start + chunk]
            auc[start:start + chunk, f], ap[start:start + chunk, f] = _ranking_metrics_rows(y[idx, f], s[idx, f])
    return auc, ap


def macro_auroc_ci(y_true, y_score, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% bootstrap interval of the macro AUROC (the mean over findings recomputed on each case
    resample; seeded)."""
    y, s = _labels_2d(y_true, y_score)
    if y.shape[0] == 0:
        return float("nan"), float("nan")
    low, high = _percentile_ci(macro_auroc_bootstrap(y, s, n_resamples, seed)[:, None])
    return float(low[0]), float(high[0])


def macro_auroc_bootstrap(y_true, y_score, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """The macro AUROC on each of ``n_resamples`` case resamples (NaN where no finding has both classes).
    The resampled case indices depend only on the number of cases and the seed, so two models' scores of the
    same cases (same order) get the same resamples: their difference is a paired bootstrap."""
    y, s = _labels_2d(y_true, y_score)
    auc, _ = _bootstrap_ranking(y, s, n_resamples, seed)
    return _nanmean(auc, axis=1)


def auroc_of_each(y_true, y_scores) -> np.ndarray:
    """The AUROC of each row of ``y_scores`` (K readers, N cases) against the same labels (N,), in one vectorised
    pass (the bootstrap's pair count: equal to sklearn's ``roc_auc_score``, ties 1/2); NaN with one class."""
    y, s = _as_binary(y_true), _as_scores(y_scores)
    if y.ndim != 1 or s.ndim != 2 or s.shape[1] != y.size:
        raise ValueError(f"y_true must be (N,) and y_scores (K, N), got {y.shape} and {s.shape}")
    return _ranking_metrics_rows(np.broadcast_to(y, s.shape), s)[0]


def auroc_bootstrap(y_true, y_score, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """One finding's AUROC on each of ``n_resamples`` case resamples (NaN where a resample has one class). As in
    ``macro_auroc_bootstrap``, the resamples depend only on the number of cases and the seed: two readers' scores
    of the same cases (same order) give a paired bootstrap of their difference."""
    y, s = _labels_1d(y_true, y_score)
    return _bootstrap_ranking(y[:, None], s[:, None], n_resamples, seed)[0][:, 0]


def percentile_ci(samples) -> tuple[float, float]:
    """Percentile 95% interval (2.5th, 97.5th) of bootstrap samples, NaN ones left out (NaN when all are)."""
    low, high = _percentile_ci(np.asarray(samples, dtype=float).reshape(-1, 1))
    return float(low[0]), float(high[0])


def _percentile_ci(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2.5th and 97.5th percentiles per column over non-NaN resamples (one-class resamples are NaN)."""
    low = np.full(samples.shape[1], np.nan)
    high = np.full(samples.shape[1], np.nan)
    for f in range(samples.shape[1]):
        valid = samples[:, f][~np.isnan(samples[:, f])]
        if valid.size:
            low[f], high[f] = np.percentile(valid, [2.5, 97.5])
    return low, high


def _evaluate_block(
    y: np.ndarray, s: np.ndarray, findings: Sequence[str], thresholds: np.ndarray, bootstrap: int, seed: int
) -> dict:
    per_finding: dict[str, dict[str, float]] = {}
    for f, name in enumerate(findings):
        row = {"auroc": auroc(y[:, f], s[:, f]), "ap": average_precision(y[:, f], s[:, f]),
               "threshold": float(thresholds[f])}
        row.update(binary_metrics_at_threshold(y[:, f], s[:, f], thresholds[f]))
        row.update(n_positive=int(y[:, f].sum()), n_negative=int((~y[:, f]).sum()))
        per_finding[name] = row
    metric_names = ("auroc", "ap", "sensitivity", "specificity", "f1", "precision", "accuracy")
    macro = {m: float(_nanmean([per_finding[name][m] for name in findings])) for m in metric_names}
    if bootstrap > 0 and y.shape[0] > 0:
        samples = dict(zip(("auroc", "ap"), _bootstrap_ranking(y, s, bootstrap, seed)))
        for metric, values in samples.items():
            low, high = _percentile_ci(values)
            for f, name in enumerate(findings):
                per_finding[name][f"{metric}_ci_low"] = float(low[f])
                per_finding[name][f"{metric}_ci_high"] = float(high[f])
            # Macro CI: the macro average recomputed on each resample.
            macro_low, macro_high = _percentile_ci(_nanmean(values, axis=1)[:, None])
            macro[f"{metric}_ci_low"], macro[f"{metric}_ci_high"] = float(macro_low[0]), float(macro_high[0])
    return {"n_cases": int(y.shape[0]), "per_finding": per_finding, "macro": macro}


def evaluate_findings(
    y_true,
    y_score,
    findings: Sequence[str],
    thresholds: Sequence[float] | None = None,
    groups: Sequence[str] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict:
    """Per-finding and macro metrics for (cases, findings) labels and scores.

    Returns ``{"n_cases", "threshold_method", "per_finding": {name: {auroc, ap, threshold, sensitivity,
    specificity, f1, precision, accuracy, n_positive, n_negative[, auroc_ci_low, auroc_ci_high, ap_ci_low,
    ap_ci_high]}}, "macro": {NaN-aware means[, CIs]}[, "groups": {group: same block}]}``.

    Without ``thresholds`` each finding uses its Youden threshold on these very cases (optimistic: pass
    thresholds chosen on validation data for an unbiased test). ``bootstrap`` > 0 adds percentile 95% CIs
    from that many case resamples (seeded; resamples with one class are skipped). Groups (e.g. sites) are
    evaluated with the overall thresholds, so their numbers are comparable; keys are ``str(group)``.
    """
    y, s = _labels_2d(y_true, y_score)
    findings = list(findings)
    if len(findings) != y.shape[1]:
        raise ValueError(f"{len(findings)} finding names for {y.shape[1]} columns")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    if thresholds is None:
        method = "youden"
        thresholds = choose_thresholds(y, s, "youden")
    else:
        method = "given"
        thresholds = np.asarray(thresholds, dtype=float)
        if thresholds.shape != (len(findings),):
            raise ValueError(f"need one threshold per finding ({len(findings)}), got shape {thresholds.shape}")
    result = {"threshold_method": method, **_evaluate_block(y, s, findings, thresholds, bootstrap, seed)}
    if groups is not None:
        groups = np.asarray([str(g) for g in groups])
        if groups.shape != (y.shape[0],):
            raise ValueError(f"need one group per case ({y.shape[0]}), got {groups.shape[0]}")
        result["groups"] = {
            g: _evaluate_block(y[groups == g], s[groups == g], findings, thresholds, bootstrap, seed)
            for g in sorted(set(groups.tolist()))
        }
    return result
