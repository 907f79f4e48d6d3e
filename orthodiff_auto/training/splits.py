"""Cross-validation splits: made once per dataset (case level, so a case's views share a fold), saved, reused.

With findings, folds are stratified on every finding and on the site (iterative stratification,
Sechidis et al. 2011), so every fold sees every finding; without, they are a seeded shuffle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.utils.atomic import write_json_atomic

DEFAULT_SEED = 12345


def stratification_matrix(case_ids: Sequence[str], table: pd.DataFrame | None, findings: Sequence[str]) -> np.ndarray:
    """(N, L) 0/1 matrix: one column per finding and per site value."""
    if table is None:
        return np.zeros((len(case_ids), 0), dtype=np.int8)
    rows = table.reindex(list(case_ids))
    columns = [rows[list(findings)].fillna(0).to_numpy(dtype=np.int8)] if findings else []
    if "site" in rows.columns:
        columns.append(pd.get_dummies(rows["site"].fillna("unknown")).to_numpy(dtype=np.int8))
    return np.concatenate(columns, axis=1) if columns else np.zeros((len(case_ids), 0), dtype=np.int8)


def iterative_stratification(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per row of a multi-label 0/1 matrix, balancing every label across folds."""
    n = labels.shape[0]
    rng = np.random.default_rng(seed)
    fold_of = np.full(n, -1, dtype=np.int64)
    capacity = np.full(n_folds, n / n_folds)  # cases each fold still wants
    desired = np.tile(labels.sum(axis=0) / n_folds, (n_folds, 1)).astype(float)  # (folds, labels)
    remaining = labels.astype(bool).copy()
    while True:
        counts = remaining[fold_of < 0].sum(axis=0)
        if not counts.any():
            break
        # the rarest label still to place goes first: it is the hardest to balance
        label = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        for case in rng.permutation(np.flatnonzero((fold_of < 0) & remaining[:, label])):
            want = desired[:, label]
            best = np.flatnonzero(want == want.max())
            if len(best) > 1:
                best = best[capacity[best] == capacity[best].max()]
            fold = int(rng.choice(best))
            fold_of[case] = fold
            desired[fold] -= labels[case]
            capacity[fold] -= 1
    for case in rng.permutation(np.flatnonzero(fold_of < 0)):
        best = np.flatnonzero(capacity == capacity.max())
        fold = int(rng.choice(best))
        fold_of[case] = fold
        capacity[fold] -= 1
    return fold_of


def make_splits(
    case_ids: Sequence[str], table: pd.DataFrame | None = None, findings: Sequence[str] = (), n_folds: int = 5,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, list[str]]]:
    """nnU-Net-style list of {"train": [...], "val": [...]} per fold; a pure function of its inputs."""
    case_ids = sorted(case_ids)
    if len(case_ids) < n_folds:
        raise UserInputError(f"{len(case_ids)} training cases cannot make {n_folds} folds")
    fold_of = iterative_stratification(stratification_matrix(case_ids, table, findings), n_folds, seed)
    ids = np.asarray(case_ids)
    return [{"train": sorted(ids[fold_of != f].tolist()), "val": sorted(ids[fold_of == f].tolist())} for f in range(n_folds)]


def load_or_create_splits(
    path: Path, case_ids: Sequence[str], table: pd.DataFrame | None, findings: Sequence[str], n_folds: int = 5,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, list[str]]]:
    """Reuse a saved splits.json (every view and task shares it); create it on first use."""
    path = Path(path)
    if path.is_file():
        try:
            splits = json.loads(path.read_text())
            saved = sorted({c for s in splits for c in s["val"]})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserInputError(f"{path}: malformed splits file ({e})") from None
        if saved != sorted(case_ids):
            raise UserInputError(
                f"{path}: its cases differ from the dataset's training cases (added or removed cases?); "
                "delete it to make new splits"
            )
        return splits
    splits = make_splits(case_ids, table, findings, n_folds, seed)
    write_json_atomic(path, splits)
    return splits


def fold_cases(splits: list[dict[str, list[str]]], fold: int | str) -> tuple[list[str], list[str]]:
    """(train, val) case ids; fold 'all' trains on every case and has no validation cases."""
    if fold == "all":
        return sorted({c for s in splits for c in s["val"]}), []
    if not isinstance(fold, int) or not 0 <= fold < len(splits):
        raise UserInputError(f"fold {fold!r} out of range: choose 0-{len(splits) - 1} or 'all'")
    return list(splits[fold]["train"]), list(splits[fold]["val"])


def subsample_labelled(
    case_ids: Sequence[str], fraction: float, seed: int = DEFAULT_SEED, table: pd.DataFrame | None = None,
    findings: Sequence[str] = (),
) -> list[str]:
    """A seeded subset of about ``fraction`` of the cases for label-efficiency studies, stratified per finding.

    Every finding that has a positive among ``case_ids`` keeps at least one positive, and likewise a negative,
    even where that takes more than ``fraction`` of the cases (at 10% of 23 cases a random subset of 2 misses
    most findings); the rest follows the pool's proportion of every finding and site. Without a table it is a
    seeded shuffle. The subset is a prefix of one seeded order of the cases (``label_fraction_order``), so the
    subsets of one seed are nested: the cases kept at 0.1 are among those kept at 0.5.
    """
    if not 0 < fraction <= 1:
        raise UserInputError(f"label fraction must be in (0, 1], got {fraction}")
    ordered = sorted(case_ids)
    if not ordered:
        return []
    present = findings_matrix(ordered, table, findings)
    required = np.concatenate([present, 1 - present], axis=1)
    strata = np.concatenate([required, stratification_matrix(ordered, table, ())], axis=1)
    order = label_fraction_order(required, strata, seed)
    covering = int(np.flatnonzero(_covered_after(required, order))[0]) + 1 if required.any() else 1
    keep = max(1, int(round(fraction * len(ordered))), covering)
    return sorted(ordered[i] for i in order[:keep])


def findings_matrix(case_ids: Sequence[str], table: pd.DataFrame | None, findings: Sequence[str]) -> np.ndarray:
    """(N, F) 0/1 matrix of the findings of ``case_ids`` (a case missing from the table has none)."""
    if table is None or not findings:
        return np.zeros((len(case_ids), 0), dtype=np.int8)
    return table.reindex(list(case_ids))[list(findings)].fillna(0).to_numpy(dtype=np.int8)


def label_fraction_order(required: np.ndarray, strata: np.ndarray, seed: int) -> np.ndarray:
    """A seeded order of the rows whose shortest prefix that covers every ``required`` column with a 1 (where
    any row has one) is short, and whose longer prefixes follow the pool's proportion of every ``strata`` column.

    Greedy: while a required column is uncovered, take from the cases that cover its rarest one the case covering
    the most uncovered columns; afterwards the case that most reduces the prefix's shortfall against the pool's
    proportions (counts each column should have by now minus those it has). Ties go by a seeded shuffle.
    """
    n = required.shape[0]
    priority = np.random.default_rng(seed).permutation(n)  # lower wins a tie
    required = required.astype(bool)
    strata = strata.astype(np.float64)
    proportion = strata.mean(axis=0) if n else strata.sum(axis=0)
    remaining = np.ones(n, dtype=bool)
    covered = ~required.any(axis=0)  # a column no case has cannot be covered
    counts = np.zeros(strata.shape[1])
    order = []
    for k in range(n):
        uncovered = ~covered
        if uncovered.any():
            available = required[remaining][:, uncovered].sum(axis=0)
            rarest = np.flatnonzero(uncovered)[int(np.argmin(available))]
            candidates = remaining & required[:, rarest]
            score = required[:, uncovered].sum(axis=1).astype(np.float64)
        else:
            candidates = remaining
            score = strata @ ((k + 1) * proportion - counts)
        best = np.flatnonzero(candidates & (score == score[candidates].max()))
        pick = int(best[np.argmin(priority[best])])
        order.append(pick)
        remaining[pick] = False
        covered |= required[pick]
        counts += strata[pick]
    return np.asarray(order, dtype=np.int64)


def _covered_after(required: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per prefix length k+1 of ``order``: whether it covers every required column that any row covers."""
    needed = required.astype(bool).any(axis=0)
    seen = np.logical_or.accumulate(required[order].astype(bool), axis=0)
    return (seen | ~needed).all(axis=1)
