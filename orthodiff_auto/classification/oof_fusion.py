"""Fusion heads fitted on the single-view classifiers' out-of-fold predictions, scored without using a fold's own
labels, and the choice among them made inside each fold.

The single-view folds' ``validation_predictions.csv`` give every labelled case one out-of-fold (OOF) logit per
finding and view it has. On that table:

- ``cross_fit(mode, table)``: for each fold ``k``, the mode's head (``classification.mpae``) and its clinical
  encoding are fitted on the other folds' cases and predict fold ``k``'s: pooled, one fused prediction per
  case from a head that never saw that case's labels (cross-fitting, as the stacked gate: the OOF logits of
  the fitting cases come from classifiers that were trained on fold ``k``'s cases among others);
- ``nested_choice(modes, table)``: for each fold ``k``, every mode is scored by ``cross_fit`` over the other
  folds only (pooled macro AUROC), the best is fitted on the other folds and predicts fold ``k``: the
  honest estimate of "choose the fusion mode by cross-validation", since no fold's labels take part in its
  own choice.

Modes (``FUSION_HEADS``): ``stacked`` (one weight per finding and view), ``mpae`` (case-dependent gate and
cross-finding stacking), each also ``+clinical`` (a tabular branch on the encoded clinical columns).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from orthodiff_auto.classification.clinical_inputs import ClinicalEncoding, fit_clinical_encoding
from orthodiff_auto.classification.mpae import FusionHead, fit_fusion_head
from orthodiff_auto.data.clinical import ClinicalValues, ClinicalVariable
from orthodiff_auto.training.classification_metrics import macro_auroc


@dataclass(frozen=True)
class FusionHeadMode:
    """A kind of head: a case-dependent gate or not, cross-finding stacking or not, clinical inputs or not."""

    name: str
    case_gate: bool
    cross_finding: bool
    clinical: bool


FUSION_HEADS = {m.name: m for m in (
    FusionHeadMode("stacked", False, False, False),
    FusionHeadMode("mpae", True, True, False),
    FusionHeadMode("stacked+clinical", False, False, True),
    FusionHeadMode("mpae+clinical", True, True, True),
)}


@dataclass(frozen=True)
class OutOfFoldTable:
    """Every labelled case's OOF view logits, labels, the fold that predicted it and its clinical values."""

    cases: list[str]
    findings: list[str]
    views: list[str]
    logits: np.ndarray  # (N, F, V), 0 where absent
    present: np.ndarray  # (N, V) bool
    labels: np.ndarray  # (N, F) 0/1
    fold: np.ndarray  # (N,) the fold whose validation split holds the case
    clinical: ClinicalValues | None = None
    variables: tuple[ClinicalVariable, ...] = ()

    def rows(self, mask: np.ndarray) -> "OutOfFoldTable":
        c = self.clinical
        sub = None if c is None else ClinicalValues(c.numeric_names, c.numeric[mask],
                                                    {k: [v for v, keep in zip(col, mask) if keep]
                                                     for k, col in c.categorical.items()})
        return replace(self, cases=[x for x, keep in zip(self.cases, mask) if keep], logits=self.logits[mask],
                       present=self.present[mask], labels=self.labels[mask], fold=self.fold[mask], clinical=sub)


@dataclass(frozen=True)
class FittedFusion:
    mode: FusionHeadMode
    head: FusionHead
    encoding: ClinicalEncoding | None

    def predict(self, table: OutOfFoldTable) -> np.ndarray:
        q = self.encoding.encode(table.clinical) if self.encoding is not None else None
        return self.head.predict(table.logits, table.present, q)


def fit_mode(mode: FusionHeadMode, table: OutOfFoldTable, l2: float = 1.0) -> FittedFusion:
    """The mode's head fitted on all rows of ``table`` (the clinical encoding on the same rows)."""
    encoding = q = None
    if mode.clinical:
        if table.clinical is None or not table.variables:
            raise ValueError(f"fusion head {mode.name} needs clinical columns; the dataset declares none")
        encoding = fit_clinical_encoding(table.variables, table.clinical)
        q = encoding.encode(table.clinical)
    head = fit_fusion_head(table.logits, table.present, table.labels, q, case_gate=mode.case_gate,
                           cross_finding=mode.cross_finding, l2=l2)
    return FittedFusion(mode, head, encoding)


def cross_fit(mode: FusionHeadMode, table: OutOfFoldTable, l2: float = 1.0) -> np.ndarray:
    """(N, F) fused logits, each fold's cases predicted by a head fitted on the other folds' cases."""
    out = np.zeros(table.labels.shape, dtype=np.float64)
    for k in np.unique(table.fold):
        held = table.fold == k
        out[held] = fit_mode(mode, table.rows(~held), l2).predict(table.rows(held))
    return out


@dataclass(frozen=True)
class NestedChoice:
    logits: np.ndarray  # (N, F) each fold's cases predicted by the mode chosen without them
    chosen: dict[str, str]  # fold -> mode
    inner_scores: dict[str, dict[str, float]]  # fold -> mode -> pooled macro AUROC over the other folds


def nested_choice(modes: Sequence[FusionHeadMode], table: OutOfFoldTable, l2: float = 1.0) -> NestedChoice:
    """For each fold, the mode with the best cross-fitted macro AUROC over the other folds (ties: the first in
    ``modes``), fitted on the other folds, predicts the fold."""
    out = np.zeros(table.labels.shape, dtype=np.float64)
    chosen: dict[str, str] = {}
    scores: dict[str, dict[str, float]] = {}
    for k in np.unique(table.fold):
        held = table.fold == k
        inner = table.rows(~held)
        scores[str(k)] = {m.name: macro_auroc(inner.labels, cross_fit(m, inner, l2)) for m in modes}
        best = max(modes, key=lambda m: (np.nan_to_num(scores[str(k)][m.name], nan=-1.0), -modes.index(m)))
        chosen[str(k)] = best.name
        out[held] = fit_mode(best, inner, l2).predict(table.rows(held))
    return NestedChoice(out, chosen, scores)


__all__ = ["FUSION_HEADS", "FittedFusion", "FusionHeadMode", "NestedChoice", "OutOfFoldTable", "cross_fit",
           "fit_mode", "nested_choice"]
