"""``train_fold ... cls fused FOLD --set fusion=mpae``: a fusion head fitted on out-of-fold branch logits and,
when the dataset declares clinical columns, on the cases' clinical data, the kind of head chosen inside the fold.

As ``fusion=stacked`` (``classification.stacked``): the branches are fold ``k``'s single-view classifiers,
unchanged, and the fitting rows are fold ``k``'s training cases with the out-of-fold logits the other folds'
single-view classifiers gave them. Then:

- the kind of head (``oof_fusion.FUSION_HEADS``: ``stacked`` and ``mpae``, and with clinical columns also
  ``stacked+clinical`` and ``mpae+clinical``) is chosen by cross-fitting over the fitting rows only (each
  row's inner fold is the fold whose classifier predicted it): fold ``k``'s validation cases take no part in
  the choice;
- the chosen head and its clinical encoding are fitted on all fitting rows and go into the fused model
  (``FusedClassifier`` mode ``mpae``); validation, thresholds and outputs are the fused model's, plus
  ``mpae_head.json`` (the choice, the inner scores, the head, the encoding and every fitting case).

At prediction ``FindingsEnsemble`` reads a case's clinical values when given (``predict_folder --clinical``),
else treats them as missing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.fold import ClassificationFold
from orthodiff_auto.classification.oof_fusion import FUSION_HEADS, OutOfFoldTable, cross_fit, fit_mode
from orthodiff_auto.classification.stacked import StackedFusionTask, fitting_rows, publish_fitted_fold
from orthodiff_auto.data.clinical import ClinicalValues, clinical_from_dicts, clinical_values
from orthodiff_auto.data.preprocessed import load_findings, read_preprocessed_description
from orthodiff_auto.training.classification_metrics import macro_auroc

MPAE_JSON = "mpae_head.json"


@dataclass(frozen=True)
class MPAEFit:
    """What ``mpae_head.json`` holds (and, without the case list, summary.json and the checkpoint)."""

    fold: str
    findings: list[str]
    views: list[str]
    head_kind: str  # the FUSION_HEADS entry chosen inside the fold
    inner_macro_auroc: dict[str, float]  # head kind -> cross-fitted macro AUROC over the fitting rows
    head: dict[str, Any]  # FusionHead.to_dict()
    clinical: list[dict[str, Any]]  # the declared clinical variables the head reads (none without clinical)
    encoding: dict[str, Any] | None  # ClinicalEncoding.to_dict()
    num_clinical: int
    num_fitting_cases: int
    fitting_cases: list[str]
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k != "fitting_cases"}


class MPAEFusionTask(StackedFusionTask):
    """The fused task with a fitted fusion head: feeds each case's encoded clinical inputs to the model."""

    mpae_fit: MPAEFit | None = None
    clinical_inputs: Mapping[str, np.ndarray] = {}

    def forward_extras(self, cases: Sequence[str], device: torch.device) -> dict[str, Any]:
        if not self.num_clinical:
            return {}
        return {"clinical": torch.as_tensor(np.stack([self.clinical_inputs[c] for c in cases])).to(device)}

    def checkpoint_extras(self) -> dict[str, Any]:
        extras = super().checkpoint_extras()
        if self.mpae_fit is not None:
            extras["mpae"] = self.mpae_fit.summary_dict()
        return extras


def _rows(values: ClinicalValues, index: Mapping[str, int], cases: Sequence[str]) -> ClinicalValues:
    take = [index[c] for c in cases]
    return ClinicalValues(values.numeric_names, values.numeric[take],
                          {k: [col[i] for i in take] for k, col in values.categorical.items()})


def train_mpae_fold(request, plans, cls_config, device: torch.device, ctx, log,
                    fold: ClassificationFold) -> dict[str, Any]:
    """Choose and fit fold ``request.fold``'s fusion head and validate the fused model (the caller has checked
    the output folder and the settings: ``finetune``); returns the summary. Runs on the main process only."""
    views, findings, labels, val = fold.views, fold.findings, fold.labels, fold.val
    out = request.output_dir()
    start = time.perf_counter()
    pp = Path(request.preprocessed_dir)
    init_states, splits, train, oof = fitting_rows(request, fold, log, "mpae")
    fold_of = {c: j for j, split in enumerate(splits) for c in split["val"]}
    task = MPAEFusionTask(plans, views, config=request.config, cls_config=cls_config, preprocessed_dir=pp,
                          findings=findings, labels=labels, present=fold.present, train_cases=train, val_cases=val,
                          fold=request.fold, init_states=init_states)
    variables = clinical_from_dicts(read_preprocessed_description(pp).get("clinical"))
    everyone = train + list(val)
    values = None
    if variables:
        _, table = load_findings(pp, plans.findings, everyone)
        values = clinical_values(table, everyone, variables)
    index = {c: i for i, c in enumerate(everyone)}
    y = task.label_matrix(train)
    rows = OutOfFoldTable(train, list(findings), list(views), oof.logits, oof.present, y,
                          np.array([fold_of[c] for c in train]),
                          None if values is None else _rows(values, index, train), variables)
    kinds = [m for m in FUSION_HEADS.values() if variables or not m.clinical]
    scores = {m.name: macro_auroc(y, cross_fit(m, rows)) for m in kinds}
    best = max(kinds, key=lambda m: (np.nan_to_num(scores[m.name], nan=-1.0), -kinds.index(m)))
    fitted = fit_mode(best, rows)
    missing = np.zeros(0)
    if fitted.encoding is not None:
        missing = fitted.encoding.encode(ClinicalValues(values.numeric_names, np.full((1, len(values.numeric_names)),
                                                                                      np.nan),
                                                        {k: [""] for k in values.categorical}))[0]
        encoded = fitted.encoding.encode(values)
        task.clinical_inputs = {c: encoded[index[c]] for c in everyone}
    task.num_clinical = fitted.head.num_clinical
    fit = MPAEFit(
        fold=str(request.fold), findings=list(findings), views=list(views), head_kind=best.name,
        inner_macro_auroc={k: float(v) for k, v in scores.items()}, head=fitted.head.to_dict(),
        clinical=[v.to_dict() for v in variables] if best.clinical else [],
        encoding=fitted.encoding.to_dict() if fitted.encoding is not None else None,
        num_clinical=task.num_clinical, num_fitting_cases=len(train), fitting_cases=list(train),
        fit_seconds=time.perf_counter() - start,
    )
    task.mpae_fit = fit
    model = task.build_model()
    model.set_head(fitted.head, missing)
    message = (f"cls fused fold {request.fold} ({request.variant}, fusion mpae of {'+'.join(views)}): head "
               f"{best.name} chosen inside the fold on out-of-fold predictions of {len(train)} training cases ("
               + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()) + f"), {len(val)} validation cases")
    return publish_fitted_fold(out, request, task, model, fit, MPAE_JSON, "mpae", [message], device, ctx, fold, log)


__all__ = ["MPAE_JSON", "MPAEFit", "MPAEFusionTask", "train_mpae_fold"]
