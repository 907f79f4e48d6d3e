"""``train_fold ... cls fused FOLD --set fusion=stacked``: a gate fitted on out-of-fold branch predictions.

The trained gate (``fusion=gate``) learns its weights on the fold's training cases, which its branches (the
fold's single-view classifiers) were trained on: it favours the view that fitted the training cases best,
not the one that generalises. Stacking (cross-fitting) fixes that without training anything new:

- every training case of fold ``k`` is a validation case of exactly one other fold ``j``, and fold ``j``'s
  single-view classifiers never saw it; the per-case ``validation_predictions.csv`` each single-view fold
  writes therefore holds out-of-fold (OOF) predictions for all of fold ``k``'s training cases;
- fold ``k``'s gate is fitted on those OOF branch logits (full batch, L-BFGS): per finding ``f``, weights
  ``softmax(g[f, :])`` over the views each case has (absent views masked, the weights renormalised over the
  present ones), fused logit ``sum_v w[f, v] * logit_v`` as in the trained gate. Loss: the branches' BCE
  (same per-finding positive weights) plus ``stacked_l2 / n_cases`` times the squares of the centred gate
  logits (a Gaussian prior pulling towards equal weights). No calibration of the fused logit (per-finding
  scale and bias were tried: they cannot change a fold's ranking, and fitted per fold on ~50 cases they made
  the folds' scores less comparable, costing 0.013 pooled macro AUROC on the synthetic benchmark; a bias
  alone changed nothing), so the fused logits stay convex combinations of the branch logits, on their scale;
- the branches are fold ``k``'s single-view classifiers, unchanged. Fold ``k``'s validation cases are used
  neither as fitting rows nor by the branches; they only validate the fused model, as for every other model.

The rows are fold ``k``'s training cases only. The classifiers that predicted them (folds ``j != k``) were
trained on the other folds' cases, fold ``k``'s validation cases among them (cross-fitting, not nested cross-
validation): the ``F * V`` fitted numbers depend on fold ``k``'s validation cases only through how well those
classifiers generalise, never through a prediction of a fold ``k`` validation case.

When a needed single-view fold is missing the run stops with a ``UserInputError`` naming the folds and views
to train (no silent fall-back to the trained gate: a ``stacked`` folder must hold a stacked gate, since model
selection compares the folders by name). Outputs are the fused model's (``validation.validate_classification_fold``:
checkpoint, predictions CSV, thresholds, metrics, gate weights, summary.json) plus ``stacked_gate.json``
(``StackedGateFit``: the fitted numbers, every fitting case with the fold whose classifier predicted it, the
OOF AUROC per view and of the fitted combination); ``FindingsEnsemble`` loads the checkpoint like any fused one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.fold import ClassificationFold, single_view_states
from orthodiff_auto.classification.fold_outputs import fold_logger
from orthodiff_auto.classification.metrics_io import PREDICTIONS_CSV, read_validation_predictions
from orthodiff_auto.classification.mpae import fit_fusion_head
from orthodiff_auto.classification.task import FusedClassificationTask
from orthodiff_auto.classification.validation import validate_classification_fold
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.classification_metrics import auroc, macro_auroc
from orthodiff_auto.training.distributed import barrier
from orthodiff_auto.training.fold import SPLITS_JSON
from orthodiff_auto.training.loop import CHECKPOINT_FORMAT

STACKED_JSON = "stacked_gate.json"
#: probabilities read back from a CSV are clipped to [EPS, 1 - EPS] before taking their logit (|logit| <= 27.6)
EPS = 1e-12


@dataclass(frozen=True)
class GateParameters:
    """A fitted stacked gate: ``gate_logits`` (F, V) (centred per finding) and the final objective."""

    gate_logits: np.ndarray
    loss: float
    iterations: int

    def weights(self) -> np.ndarray:
        """(F, V) weights with every view present (rows sum to one)."""
        g = self.gate_logits - self.gate_logits.max(-1, keepdims=True)
        e = np.exp(g)
        return e / e.sum(-1, keepdims=True)


def fused_logits(view_logits: torch.Tensor, present: torch.Tensor, gate_logits: torch.Tensor) -> torch.Tensor:
    """(N, F) gate logits of (N, F, V) branch logits; absent views masked (as ``FusedClassifier``)."""
    gate = gate_logits[None].expand(view_logits.shape[0], -1, -1)
    gate = gate.masked_fill(~present[:, None, :], float("-inf"))
    weights = torch.nan_to_num(torch.softmax(gate, dim=-1), nan=0.0)
    return (weights * view_logits).sum(-1)


def fit_stacked_gate(view_logits: np.ndarray, present: np.ndarray, labels: np.ndarray,
                     pos_weight: Sequence[float] | None = None, l2: float = 0.5, max_iter: int = 500) -> GateParameters:
    """Fit the gate on (N, F, V) out-of-fold branch logits (values of absent views ignored),
    (N, V) presence and (N, F) 0/1 labels: full-batch L-BFGS in float64, every finding at once (the objective
    is a sum of independent per-finding terms). Cases without any view are left out. The gate is the fusion
    head of ``mpae.fit_fusion_head`` without a case-dependent gate, cross-finding stacking or clinical inputs,
    with the classifiers' positive weights (default 1) and tighter tolerances."""
    labels = np.asarray(labels)
    if pos_weight is None:
        pos_weight = np.ones(labels.shape[-1] if labels.ndim == 2 else 1)
    head = fit_fusion_head(view_logits, present, labels, None, case_gate=False, cross_finding=False,
                           pos_weight=pos_weight, l2=l2, max_iter=max_iter, tolerances=(1e-10, 1e-14))
    return GateParameters(head.gate_bias, head.loss, head.iterations)


@dataclass(frozen=True)
class OutOfFoldLogits:
    """Branch logits of the fitting cases from classifiers that never trained on them."""

    cases: list[str]
    logits: np.ndarray  # (N, F, V), 0 where absent
    present: np.ndarray  # (N, V) bool
    source_fold: dict[str, dict[str, str]]  # view -> case -> fold whose single-view classifier predicted it


@dataclass(frozen=True)
class StackedGateFit:
    """What ``stacked_gate.json`` holds (and, without the case lists, summary.json and the checkpoint)."""

    fold: str
    findings: list[str]
    views: list[str]
    weights: dict[str, dict[str, float]]  # finding -> view -> weight with every view present
    stacked_l2: float
    objective: float
    iterations: int
    num_fitting_cases: int
    fitting_cases: list[str]
    source_folds: dict[str, dict[str, list[str]]]  # view -> fold -> the fitting cases its classifier predicted
    oof_auroc: dict[str, dict[str, float]]  # view (and "stacked") -> finding (and "macro") -> AUROC on the rows
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_dict(self) -> dict[str, Any]:
        """Without the case lists: how many fitting cases each source fold gave per view."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("fitting_cases", "source_folds")}
        d["source_folds"] = {v: {j: len(c) for j, c in folds.items()} for v, folds in self.source_folds.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StackedGateFit":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


class StackedFusionTask(FusedClassificationTask):
    """The fused task with a gate fitted out of fold (nothing is trained): adds the fit to the checkpoint."""

    stacked_fit: StackedGateFit | None = None

    def checkpoint_extras(self) -> dict[str, Any]:
        extras = super().checkpoint_extras()
        if self.stacked_fit is not None:
            extras["stacked_gate"] = self.stacked_fit.summary_dict()
        return extras


def _probability_logits(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _train_commands(request, view: str, folds: Sequence[str]) -> list[str]:
    extra = f" --pretrained {request.pretrained}" if request.pretrained else ""
    extra += f" --label-fraction {request.label_fraction:g}" if request.label_fraction < 1 else ""
    extra += f" --label-fraction-seed {request.label_fraction_seed}" if request.label_fraction_seed else ""
    extra += f" --results {request.results_dir}" if request.results_dir else ""
    return [f"orthodiff train_fold {request.preprocessed_dir} cls {view} {j}{extra}" for j in folds]


def collect_out_of_fold(request, views: Sequence[str], findings: Sequence[str], cases: Sequence[str],
                        present: Mapping[str, Sequence[bool]], splits: Sequence[Mapping[str, Sequence[str]]],
                        log=print, missing_branches: Sequence[str] = (), fusion: str = "stacked") -> OutOfFoldLogits:
    """OOF branch logits of ``cases`` (the fold's training cases) per view, from the validation predictions of
    the single-view folds (same variant) whose validation split holds each case. Refuses (UserInputError) when
    a needed fold is missing, lacks a case, was trained on a case it should predict, or has other findings;
    the message lists what to train (with ``missing_branches``: this fold's own missing single-view models)."""
    fold_of: dict[str, str] = {}
    for j, split in enumerate(splits):
        for c in split["val"]:
            fold_of[c] = str(j)
    cases = list(cases)
    pres = np.stack([np.asarray(present[c], dtype=bool) for c in cases]) if cases else np.zeros((0, len(views)), bool)
    logits = np.zeros((len(cases), len(findings), len(views)), dtype=np.float64)
    row = {c: i for i, c in enumerate(cases)}
    source: dict[str, dict[str, str]] = {v: {} for v in views}
    to_train: dict[str, set[str]] = {v: set() for v in views}
    for view in missing_branches:
        to_train[view].add(str(request.fold))
    problems: list[str] = []
    for vi, view in enumerate(views):
        needed: dict[str, list[str]] = {}
        for c in (c for c, p in zip(cases, pres[:, vi]) if p):
            j = fold_of.get(c)
            if j is None or j == str(request.fold):
                raise UserInputError(f"{request.preprocessed_dir / 'splits.json'}: training case {c} of fold "
                                     f"{request.fold} is in no other fold's validation cases; splits changed?")
            needed.setdefault(j, []).append(c)
        for j, wanted in sorted(needed.items()):
            folder = replace(request, view=view, fold=int(j)).output_dir()
            csv, ckpt_path = folder / PREDICTIONS_CSV, folder / "checkpoint_final.pt"
            if not (csv.is_file() and ckpt_path.is_file()):
                to_train[view].add(j)
                continue
            extras = load_checkpoint(ckpt_path).get("extras", {})
            if list(extras.get("findings", [])) != list(findings):
                problems.append(f"{ckpt_path}: trained for findings {extras.get('findings')}, the dataset declares "
                                f"{list(findings)}; retrain it")
                continue
            leaked = sorted(set(extras.get("split", {}).get("train", [])) & set(wanted))
            if leaked:
                problems.append(f"{ckpt_path}: trained on cases it should predict out of fold ({leaked[:5]}); the "
                                "splits changed since — retrain it")
                continue
            ids, probs, _ = read_validation_predictions(csv, findings)
            index = {c: i for i, c in enumerate(ids)}
            lacking = [c for c in wanted if c not in index]
            if lacking:
                problems.append(f"{csv}: no prediction for {len(lacking)} of its validation cases ({lacking[:5]}); "
                                "retrain that fold")
                continue
            take = np.array([index[c] for c in wanted])
            logits[[row[c] for c in wanted], :, vi] = _probability_logits(probs[take])
            source[view].update({c: j for c in wanted})
            log(f"{fusion}: {view} out-of-fold predictions of {len(wanted)} cases from {csv}")
    untrained = {v: sorted(js) for v, js in to_train.items() if js}
    if untrained:
        lines = [f"  {cmd}" for v, js in untrained.items() for cmd in _train_commands(request, v, js)]
        problems.insert(0, f"fusion={fusion} fits fold {request.fold}'s {'gate' if fusion == 'stacked' else 'head'} "
                           "on the other folds' out-of-fold "
                           f"single-view predictions and uses fold {request.fold}'s single-view classifiers as "
                           "branches; not trained yet: "
                           + "; ".join(f"{v} fold{'s' if len(js) > 1 else ''} {', '.join(js)}" for v, js in untrained.items())
                           + ". Train them first (with the --config and --set of the other single-view "
                           "folds):\n" + "\n".join(lines))
    if problems:
        raise UserInputError("\n".join(problems))
    return OutOfFoldLogits(cases, logits, pres, source)


def _auroc_table(logits: np.ndarray, present: np.ndarray, labels: np.ndarray, findings: Sequence[str],
                 views: Sequence[str], stacked: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for name, scores, rows in [(v, logits[:, :, i], present[:, i]) for i, v in enumerate(views)] + [
            ("stacked", stacked, present.any(1))]:
        table = {f: auroc(labels[rows, k], scores[rows, k]) if rows.any() else math.nan for k, f in enumerate(findings)}
        table["macro"] = macro_auroc(labels[rows], scores[rows]) if rows.any() else math.nan
        out[name] = {k: (None if v != v else float(v)) for k, v in table.items()}
    return out


def refuse_unfit_settings(cls_config) -> None:
    """A fusion fitted on the fine-tuned single-view classifiers' out-of-fold predictions (stacked, mpae) uses
    those classifiers as branches: other classifier features or branch starts are refused."""
    fusion = cls_config.fusion
    if cls_config.classifier_features != "finetune":
        raise UserInputError(f"fusion={fusion} combines the fine-tuned single-view classifiers; it does not apply "
                             f"to classifier_features={cls_config.classifier_features}")
    if cls_config.fused_init != "auto":
        raise UserInputError(f"fusion={fusion} uses the fold's single-view classifiers as branches; "
                             f"fused_init={cls_config.fused_init} does not apply")


def fitted_checkpoint(request, task, model) -> dict[str, Any]:
    """``checkpoint_final.pt``'s payload of a fused model fitted, not trained (epoch 0, no history)."""
    return {"format": CHECKPOINT_FORMAT, "task": task.name, "model": model.state_dict(), "epoch": 0, "history": {},
            "best_metric": None, "smoothed_metric": None, "config": request.config.to_dict(),
            "extras": task.checkpoint_extras()}


def publish_fitted_fold(out: Path, request, task, model, fit, fit_json: str, summary_key: str,
                        messages: list[str], device: torch.device, ctx, fold: ClassificationFold, log) -> dict:
    """What a fusion fitted out of fold (stacked, mpae) writes once fitted: its fit (``fit_json``), the log
    lines, the model, the fold's validation and summary.json (with the fit's summary under ``summary_key``)."""
    checkpoint = fitted_checkpoint(request, task, model)
    summary = validate_classification_fold(task, model.to(device), {}, device, out, request, fold, fit.fit_seconds,
                                           fold_logger(out, log), checkpoint=checkpoint,
                                           fit=(fit_json, summary_key, fit), log_lines=messages)
    barrier(ctx)
    return summary


def fitting_rows(request, fold: ClassificationFold, log, fusion: str):
    """(this fold's single-view model states, the splits, the fold's training cases, their OOF branch logits):
    what a fusion fitted out of fold (stacked, mpae) starts from; refuses as ``collect_out_of_fold``."""
    init_states = single_view_states(request, fold.views, fold.findings, fold.val_ids, log)
    splits = json.loads((Path(request.preprocessed_dir) / SPLITS_JSON).read_text())
    train = sorted(fold.train)
    oof = collect_out_of_fold(request, fold.views, fold.findings, train, fold.present, splits, log,
                              missing_branches=[v for v in fold.views if v not in init_states], fusion=fusion)
    return init_states, splits, train, oof


def train_stacked_fold(request, plans, cls_config, device: torch.device, ctx, log,
                       fold: ClassificationFold) -> dict[str, Any]:
    """Fit fold ``request.fold``'s stacked gate and validate the fused model (the caller has checked the
    output folder and the settings: ``finetune``); returns the summary. Runs on the main process only (there
    is nothing to distribute)."""
    views, findings, labels, val, present = fold.views, fold.findings, fold.labels, fold.val, fold.present
    out = request.output_dir()
    start = time.perf_counter()
    init_states, splits, train, oof = fitting_rows(request, fold, log, "stacked")
    task = StackedFusionTask(plans, views, config=request.config, cls_config=cls_config,
                             preprocessed_dir=Path(request.preprocessed_dir), findings=findings, labels=labels,
                             present=present, train_cases=train, val_cases=val, fold=request.fold,
                             init_states=init_states)
    y = task.label_matrix(train)
    params = fit_stacked_gate(oof.logits, oof.present, y, task.pos_weight, cls_config.stacked_l2)
    with torch.no_grad():
        stacked = fused_logits(torch.from_numpy(oof.logits), torch.from_numpy(oof.present),
                               torch.from_numpy(params.gate_logits)).numpy()
    weights = params.weights()
    sources: dict[str, dict[str, list[str]]] = {}
    for view, by_case in oof.source_fold.items():
        for c, j in by_case.items():
            sources.setdefault(view, {}).setdefault(j, []).append(c)
    fit = StackedGateFit(
        fold=str(request.fold), findings=list(findings), views=list(views),
        weights={f: {v: float(weights[i, j]) for j, v in enumerate(views)} for i, f in enumerate(findings)},
        stacked_l2=float(cls_config.stacked_l2), objective=params.loss, iterations=params.iterations,
        num_fitting_cases=len(train), fitting_cases=list(train),
        source_folds={v: {j: sorted(c) for j, c in sorted(d.items())} for v, d in sources.items()},
        oof_auroc=_auroc_table(oof.logits, oof.present, y, findings, views, stacked),
        fit_seconds=time.perf_counter() - start,
    )
    task.stacked_fit = fit
    model = task.build_model()
    with torch.no_grad():
        model.gate_logits.copy_(torch.from_numpy(params.gate_logits))
    per = fit.oof_auroc
    messages = [
        f"cls fused fold {request.fold} ({request.variant}, fusion stacked of {'+'.join(views)}): gate fitted "
        f"on out-of-fold predictions of {len(train)} training cases ({params.iterations} L-BFGS iterations, "
        f"objective {params.loss:.4f}), {len(val)} validation cases",
        "out-of-fold AUROC on the fitting cases (macro): "
        + ", ".join(f"{k} {per[k]['macro']:.3f}" if per[k]["macro"] is not None else f"{k} n/a" for k in per),
    ]
    return publish_fitted_fold(out, request, task, model, fit, STACKED_JSON, "stacked_gate", messages, device, ctx,
                               fold, log)


__all__ = ["STACKED_JSON", "GateParameters", "OutOfFoldLogits", "StackedGateFit", "StackedFusionTask",
           "collect_out_of_fold", "fit_stacked_gate", "fitted_checkpoint", "fitting_rows", "fused_logits",
           "publish_fitted_fold", "refuse_unfit_settings", "train_stacked_fold"]
