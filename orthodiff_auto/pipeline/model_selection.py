"""``find_best_configuration``: pool the folds' validation results, choose per task, fill the model folder.

Segmentation (nnU-Net's ``find_best_configuration``): per view, among the finished runs of every configuration
(3d_fullres as ``scratch``/``pretrained``, the others as ``<configuration>_<scratch|pretrained>``, e.g.
``2d_scratch``, ``3d_cascade_fullres_pretrained``), the one with the highest pooled out-of-fold mean Dice: the
validation cases of all requested folds pooled, each case's mean Dice over its structures (a structure absent
from both reference and prediction left out, as ``segmentation_metrics.aggregate`` does), averaged over the
cases; the percentile 95% bootstrap interval over cases is recorded beside it, and the per-fold means as before.
A cascade's second stage (its summary.json names a ``previous_stage``) competes only when that run has finished
every requested fold too; chosen, it takes its previous stage into the model folder.

Ensembles of two configurations (nnU-Net's): every pair of a view's candidates whose folds all kept their
validation probabilities (``train_fold --npz``, set by ``auto`` when a view trains several runs;
``segmentation.probabilities``) is a candidate too, scored by the pooled Dice of the average of the two members'
probabilities on each validation case, on the view's preprocessed grid against the preprocessed reference labels
(the same pooling and bootstrap interval). The best single run (chosen as above) is scored the same way from its
own probabilities; the best pair replaces it only when its Dice on that grid is higher. Chosen, both members go
into the model folder and prediction averages their probabilities. An anatomy reader chosen for the findings
keeps the segmentation it was fitted on: where the view's chosen segmentation is another one, that run goes into
the model folder too (``reader_segmentations``) and prediction feeds it to the reader.

Classification: for every combination of views a case can arrive with (each non-empty subset of the plans'
views), among the configurations that can read it (single-view models of a view in the combination;
multi-view models reading the combination's views, the others masked: their validation predictions per view
subset), the one with the highest macro AUROC of the validation predictions pooled over the folds (every case
is predicted once, by the fold that did not train on it), on the validation cases that have those views; the
95% bootstrap interval of the winner's macro AUROC is recorded beside it. Only configurations trained on all
labels (no label-fraction runs) and on every requested fold compete.

The winner's pooled score is optimistic: it won on the very predictions it is scored on. With the splits known
(``fold_of``), each combination also records ``nested_macro_auroc``: for every fold, the configuration with the
best pooled macro AUROC over the *other* folds' cases is chosen (``chosen_per_fold``) and its predictions of that
fold's cases are kept; the macro AUROC of those pooled predictions is an honest estimate of choosing among the
configurations (single views and every fusion mode) this way, since no fold's labels take part in its own choice.

Per finding (``choose_per_finding``), the readers differ: the anatomy reader may detect effusion and an image
reader another finding. For each combination of views and each finding, among the same competitors on the same
cases, the one with the highest pooled out-of-fold AUROC on that finding reads it when it beats the macro
winner by more than resampling noise: the paired bootstrap (1000 case resamples, the same for both) of its AUROC
minus the macro winner's has its 95% interval above zero. Otherwise the macro winner reads it. Its pooled AUROC
and 95% bootstrap interval, every competitor's AUROC and (with the splits) a nested estimate of choosing per
finding are recorded beside it (model.json's ``findings_by_views``; the chosen readers' checkpoints under
``readers``).
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from orthodiff_auto.classification.metrics_io import (
    PREDICTIONS_CSV,
    read_validation_predictions,
    subset_predictions_path,
)
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.evaluation.evaluate_folder import dice_mean_ci
from orthodiff_auto.inference.model_dir import ModelDescription, TaskChoice, best_checkpoint_path
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.plans.subplans import DEFAULT_CONFIGURATION
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.segmentation.probabilities import VALIDATION_PROBABILITIES, probabilities_path, read_probabilities
from orthodiff_auto.training.classification_metrics import (
    auroc,
    auroc_bootstrap,
    auroc_of_each,
    auroc_scores,
    macro_auroc_ci,
    percentile_ci,
)
from orthodiff_auto.training.segmentation_metrics import aggregate, dice_per_class
from orthodiff_auto.utils.atomic import atomic_path

DEFAULT_FOLDS = (0, 1, 2, 3, 4)


def _complete_runs(task_dir: Path, folds: Sequence[int], required_file: str) -> dict[tuple[str, str], list[Path]]:
    """{(name, variant): [fold dirs]} for runs that finished every requested fold."""
    runs: dict[tuple[str, str], list[Path]] = {}
    if not task_dir.is_dir():
        return runs
    for name_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
        for variant_dir in sorted(p for p in name_dir.iterdir() if p.is_dir()):
            if "_frac" in variant_dir.name:
                continue
            fold_dirs = [variant_dir / f"fold_{f}" for f in folds]
            if all((d / required_file).is_file() and (d / "checkpoint_final.pt").is_file() for d in fold_dirs):
                runs[(name_dir.name, variant_dir.name)] = fold_dirs
    return runs


def _finished_folds_hint(preprocessed_dir: Path, model_dir: Path, results: Path) -> str:
    """The most folds one configuration has finished, as the ``--folds`` that makes a model of them (a user who
    trained fold 0 by hand is told how to use it), or a hint to train first."""
    done: dict[Path, list[int]] = {}
    for task in ("seg", "cls"):
        for d in sorted((results / task).glob("*/*/fold_*")):
            fold = d.name.removeprefix("fold_")
            if (fold.isdigit() and "_frac" not in d.parent.name and (d / "summary.json").is_file()
                    and (d / "checkpoint_final.pt").is_file()):
                done.setdefault(d.parent, []).append(int(fold))
    if not done:
        return f"; train folds first (orthodiff train_fold {preprocessed_dir} seg VIEW 0, or orthodiff auto)"
    run, folds = max(done.items(), key=lambda kv: len(kv[1]))
    return (f"; {run} has finished folds {sorted(folds)}: orthodiff find_best_configuration {preprocessed_dir} "
            f"--out {model_dir} --folds {' '.join(map(str, sorted(folds)))}")


def _case_dice(per_case: dict[str, Any]) -> list[dict[str, dict[str, float]]]:
    """Each validation case's Dice per structure from a summary.json's ``per_case`` (null, i.e. NaN: the
    structure is absent from both reference and prediction)."""
    return [{structure: {"dice": float("nan") if m.get("dice") is None else float(m["dice"])}
             for structure, m in (entry.get("metrics") or {}).items()} for entry in per_case.values()]


def pooled_dice(per_case: Sequence[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The pooled out-of-fold figures of ``_case_dice`` rows of every fold: ``mean_dice`` (the mean over cases of
    each case's mean over structures), ``ci`` (its percentile 95% bootstrap interval over cases), ``n_cases``
    (the cases with a defined mean) and ``per_structure`` (each structure's mean over the cases that have it)."""
    agg = aggregate(per_case) if per_case else {}
    mean = agg.get("mean", {}).get("dice", {})
    return {"mean_dice": float(mean.get("mean", float("nan"))), "ci": dice_mean_ci(list(per_case))["mean"]
            if per_case else [float("nan"), float("nan")], "n_cases": int(mean.get("n", 0)),
            "per_structure": {k: float(v["dice"]["mean"]) for k, v in agg.items() if k != "mean" and "dice" in v}}


def segmentation_candidates(results: Path, folds: Sequence[int], log=print) -> dict[str, dict[str, Any]]:
    """{view: {variant: record}} of the segmentation runs that finished every fold in ``folds``: the record's
    ``configuration`` (summary.json's; "3d_fullres" for runs that name none), a cascade's ``previous_stage``
    ({"configuration", "variant"}), the pooled figures of ``pooled_dice``, the per-fold means (``per_fold``) and
    their mean (``mean_dice_of_folds``), and ``fold_dirs``. A cascade whose previous stage has not finished
    every fold is left out (logged)."""
    runs = _complete_runs(results / "seg", folds, "summary.json")
    summaries = {key: [json.loads((d / "summary.json").read_text()) for d in fold_dirs]
                 for key, fold_dirs in runs.items()}
    previous_of = {key: s[0].get("previous_stage") for key, s in summaries.items()}
    configuration_of = {key: str(s[0].get("configuration") or DEFAULT_CONFIGURATION) for key, s in summaries.items()}

    def missing_stage(key: tuple[str, str], seen: tuple = ()) -> str | None:
        """The variant of the first stage before ``key`` that has not finished every fold (None: all have)."""
        previous = previous_of[key]
        if previous is None:
            return None
        stage = (key[0], str(previous["variant"]))
        if stage not in runs or stage in seen:
            return stage[1]
        return missing_stage(stage, (*seen, key))

    out: dict[str, dict[str, Any]] = {}
    for (view, variant), fold_dirs in runs.items():
        missing = missing_stage((view, variant))
        if missing is not None:
            log(f"segmentation {view}: {variant} skipped: its previous stage {missing} has not finished folds "
                f"{list(folds)}")
            continue
        per_fold = []
        for s in summaries[(view, variant)]:
            mean = s.get("mean") or {}
            if "mean" in mean and mean["mean"]["dice"]["mean"] is not None:
                per_fold.append(float(mean["mean"]["dice"]["mean"]))
        pooled = [case for s in summaries[(view, variant)] for case in _case_dice(s.get("per_case") or {})]
        record: dict[str, Any] = {"configuration": configuration_of[(view, variant)]}
        if previous_of[(view, variant)] is not None:
            previous = str(previous_of[(view, variant)]["variant"])
            record["previous_stage"] = {"configuration": configuration_of[(view, previous)], "variant": previous}
        record.update(pooled_dice(pooled))
        record.update(per_fold=per_fold, mean_dice_of_folds=float(np.mean(per_fold)) if per_fold else float("nan"),
                      probabilities=all(probabilities_path(d / VALIDATION_PROBABILITIES, case).is_file()
                                        for d, s in zip(fold_dirs, summaries[(view, variant)])
                                        for case in s.get("per_case") or {}),
                      fold_dirs=[str(d) for d in fold_dirs])
        out.setdefault(view, {})[variant] = record
    return out


def grid_case_dice(probabilities: np.ndarray, reference: np.ndarray, structures: dict[str, int],
                   ignore_label: int | None = None) -> dict[str, dict[str, float]]:
    """One case's Dice per structure (name -> class index) of the most probable class of ``probabilities``
    (C, *grid) against ``reference`` (class indices on the same grid; voxels of ``ignore_label`` count for
    neither), as ``_case_dice`` rows (NaN: absent from both)."""
    if probabilities.shape[1:] != reference.shape:
        raise ValueError(f"probabilities of shape {list(probabilities.shape[1:])}, the reference labels "
                         f"{list(reference.shape)}")
    ignore = None if ignore_label is None else reference == ignore_label
    dice = dice_per_class(np.argmax(probabilities, axis=0), reference, list(structures.values()), ignore)
    return {name: {"dice": dice[index]} for name, index in structures.items()}


def ensemble_candidates(preprocessed_dir: Path, view: str, records: dict[str, dict[str, Any]],
                        members: Sequence[str]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """({"A+B": record} of every pair of ``members`` (variants of ``records`` whose folds kept their validation
    probabilities), {variant: the same figures of each member alone}): ``pooled_dice`` of each validation case's
    Dice on the view's preprocessed grid, the pair's from the mean of the two members' probabilities, against
    the preprocessed reference labels. A pair's record names its ``members`` and their ``configurations``."""
    plans = Plans.load(preprocessed_dir / "plans.json")
    values = list(plans.label_values)
    structures = {name: values.index(v) for name, v in plans.labels.items() if v != 0 and v != plans.ignore_label}
    reference = PreprocessedDataset(preprocessed_dir, view)
    summaries = {m: [json.loads((Path(d) / "summary.json").read_text()) for d in records[m]["fold_dirs"]]
                 for m in members}
    pairs = list(itertools.combinations(members, 2))
    single_rows: dict[str, list] = {m: [] for m in members}
    pair_rows: dict[tuple[str, str], list] = {pair: [] for pair in pairs}
    for k in range(len(records[members[0]]["fold_dirs"])):
        cases = list(summaries[members[0]][k].get("per_case") or {})
        for m in members[1:]:
            if sorted(summaries[m][k].get("per_case") or {}) != sorted(cases):
                raise UserInputError(f"{records[m]['fold_dirs'][k]}: other validation cases than "
                                     f"{records[members[0]]['fold_dirs'][k]} (the splits changed since?): train the "
                                     "fold again")
        for case in cases:
            seg = np.asarray(reference.load(case)[1][...])  # the labels alone (the image stays compressed)
            probs = {m: read_probabilities(Path(records[m]["fold_dirs"][k]) / VALIDATION_PROBABILITIES, case)
                     for m in members}
            try:
                for m in members:
                    single_rows[m].append(grid_case_dice(probs[m], seg[0], structures, plans.ignore_label))
                for a, b in pairs:
                    pair_rows[(a, b)].append(grid_case_dice((probs[a] + probs[b]) / 2, seg[0], structures,
                                                            plans.ignore_label))
            except ValueError as e:
                raise UserInputError(f"{view} case {case}: validation {e} (preprocessed again since? train the "
                                     "folds again)") from None
    out = {}
    for (a, b), rows in pair_rows.items():
        out[f"{a}+{b}"] = {"members": [a, b], "configurations": [records[a]["configuration"],
                                                                  records[b]["configuration"]], **pooled_dice(rows)}
    return out, {m: pooled_dice(rows) for m, rows in single_rows.items()}


def _pooled_predictions(fold_dirs: Sequence[Path | str], findings: Sequence[str],
                        views: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(case ids, probabilities, labels) of the folds' validation predictions, pooled; ``views``: those of a
    multi-view model reading only these views (None when a fold lacks them)."""
    ids, probs, labels = [], [], []
    for d in fold_dirs:
        path = Path(d) / PREDICTIONS_CSV if views is None else subset_predictions_path(d, views)
        if not path.is_file():
            return None
        c, p, y = read_validation_predictions(path, findings)
        ids += c
        probs.append(p)
        labels.append(y)
    return ids, np.concatenate(probs), np.concatenate(labels)


def _run_views(fold_dir: Path, name: str) -> list[str]:
    summary = fold_dir / "summary.json"
    if summary.is_file():
        views = json.loads(summary.read_text()).get("views")
        if views:
            return list(views)
    return [name]


def classification_candidates(results: Path, folds: Sequence[int], findings: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (name, variant), fold_dirs in _complete_runs(results / "cls", folds, PREDICTIONS_CSV).items():
        _, p, y = _pooled_predictions(fold_dirs, findings)
        macro, per_finding = auroc_scores(y, p, findings)
        out.setdefault(name, {})[variant] = {
            "macro_auroc": macro, "per_finding_auroc": per_finding, "n_cases": int(len(y)),
            "views": _run_views(fold_dirs[0], name), "fold_dirs": [str(d) for d in fold_dirs],
        }
    return out


def _reading(candidate: dict[str, Any], subset: Sequence[str], findings: Sequence[str]):
    """The pooled predictions of ``candidate`` for cases arriving with the views in ``subset`` (None when it
    reads none of them)."""
    views = candidate["views"]
    read = [v for v in views if v in subset]
    if not read:
        return None
    if len(views) > 1 and len(read) < len(views):
        return _pooled_predictions(candidate["fold_dirs"], findings, read)
    return _pooled_predictions(candidate["fold_dirs"], findings)


def nested_selection(scored: dict[str, tuple[list[str], np.ndarray, np.ndarray]], fold_of: dict[str, str],
                     findings: Sequence[str]) -> dict[str, Any]:
    """``scored``: label -> (case ids, probabilities, labels) on the same cases. For each fold, the label with the
    best macro AUROC on the other folds' cases (ties as ``_best``) predicts the fold's cases; returns the pooled
    macro AUROC of those predictions and the label chosen per fold."""
    first_ids = next(iter(scored.values()))[0]
    folds = sorted({fold_of.get(c, "") for c in first_ids} - {""})
    rows_of = {label: {c: i for i, c in enumerate(ids)} for label, (ids, _, _) in scored.items()}
    probs, labels, chosen = [], [], {}
    for k in folds:
        held = [c for c in first_ids if fold_of.get(c) == k]
        rest = [c for c in first_ids if fold_of.get(c) not in (k, None)]
        inner = {}
        for label, (ids, p, y) in scored.items():
            idx = [rows_of[label][c] for c in rest]
            inner[label] = {"macro_auroc": auroc_scores(y[idx], p[idx], findings)[0] if idx else float("nan")}
        best = _best(inner, "macro_auroc") or next(iter(scored))
        chosen[k] = best
        ids, p, y = scored[best]
        idx = [rows_of[best][c] for c in held]
        probs.append(p[idx])
        labels.append(y[idx])
    if not probs:
        return {"nested_macro_auroc": float("nan"), "chosen_per_fold": {}}
    return {"nested_macro_auroc": auroc_scores(np.concatenate(labels), np.concatenate(probs), findings)[0],
            "chosen_per_fold": chosen}


def choose_per_view_combination(candidates: dict[str, dict[str, Any]], views: Sequence[str],
                                findings: Sequence[str], fold_of: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """{"sag+cor": {"label", "macro_auroc", "ci", "n_cases", "compared", "per_finding"}} for every non-empty
    subset of ``views``: the configuration with the best pooled macro AUROC on the validation cases every
    competitor predicted (cases that have those views), and each finding's reader among the same competitors on
    the same cases (``choose_per_finding``); with ``fold_of`` (case -> fold) also ``nested_macro_auroc`` and
    ``chosen_per_fold`` (``nested_selection``)."""
    flat = {f"{name}/{variant}": c for name, vs in candidates.items() for variant, c in vs.items()}
    out: dict[str, dict[str, Any]] = {}
    for n in range(len(views), 0, -1):
        for subset in itertools.combinations(views, n):
            readings = {label: r for label, c in flat.items() if (r := _reading(c, subset, findings)) is not None}
            if not readings:
                continue
            common = set.intersection(*(set(ids) for ids, _, _ in readings.values()))
            scores = {}
            for label, (ids, p, y) in readings.items():
                rows = [i for i, c in enumerate(ids) if c in common]
                scores[label] = {"macro_auroc": auroc_scores(y[rows], p[rows], findings)[0], "rows": rows}
            best = _best(scores, "macro_auroc")
            if best is None:
                continue
            ids, p, y = readings[best]
            rows = scores[best]["rows"]
            low, high = macro_auroc_ci(y[rows], p[rows])
            out["+".join(subset)] = {"label": best, "macro_auroc": scores[best]["macro_auroc"], "ci": [low, high],
                                     "n_cases": len(rows),
                                     "compared": {k: v["macro_auroc"] for k, v in scores.items()}}
            same = {label: ([readings[label][0][i] for i in s["rows"]], readings[label][1][s["rows"]],
                            readings[label][2][s["rows"]]) for label, s in scores.items()}
            if fold_of:
                out["+".join(subset)].update(nested_selection(same, fold_of, findings))
            record = out["+".join(subset)]
            per_finding = choose_per_finding(same, best, findings, fold_of, record.get("chosen_per_fold"))
            record.update(per_finding=per_finding, **_combined(per_finding))
    return out


def _combined(per_finding: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The macro AUROC of each finding read by its chosen reader (``combined_macro_auroc``) and of the nested
    per-finding choice (``combined_nested_macro_auroc``, with the splits): the mean over the findings where the
    AUROC is defined."""
    def mean(key):
        values = [row[key] for row in per_finding.values() if row[key] == row[key]]
        return float(np.mean(values)) if values else float("nan")
    out = {"combined_macro_auroc": mean("auroc")}
    if per_finding and all("nested_auroc" in row for row in per_finding.values()):
        out["combined_nested_macro_auroc"] = mean("nested_auroc")
    return out


def _aligned(scored: dict[str, tuple[list[str], np.ndarray, np.ndarray]]):
    """(case ids sorted, {label: probabilities}, labels) of readings of the same cases, rows in one order (a paired
    bootstrap needs the same case in the same row of every reader)."""
    ids = sorted(next(iter(scored.values()))[0])
    probs, labels = {}, None
    for label, (c, p, y) in scored.items():
        row = {case: i for i, case in enumerate(c)}
        idx = [row[case] for case in ids]
        probs[label] = p[idx]
        labels = y[idx] if labels is None else labels
    return ids, probs, labels


def finding_reader(probs: dict[str, np.ndarray], y: np.ndarray, default: str, n_resamples: int = 1000,
                   seed: int = 0, with_ci: bool = True) -> dict[str, Any]:
    """The reader of one finding among ``probs`` (label -> the finding's pooled out-of-fold probabilities of the
    same cases, same order; ``y``: their labels), by the rule below, with its figures.

    Rule: the macro winner (``default``) reads the finding unless the reader with the highest pooled AUROC on
    it beats the default by more than resampling noise: the paired bootstrap of the AUROC difference (the same
    case resamples for both) has its 95% interval above zero. Choosing the best of several readers per finding
    picks up noise (the maximum of K noisy AUROCs is optimistic); the paired interval keeps the default unless
    the gain is clear. Returns ``{"reader", "auroc", "ci", "n_cases", "default", "compared": {label: AUROC}}``,
    plus ``"challenger"`` and ``"gain_ci"`` when another reader had the higher AUROC (``with_ci`` False: no
    ``"ci"``, for the nested choice, which needs the reader alone)."""
    labels = list(probs)
    aurocs = dict(zip(labels, map(float, auroc_of_each(y, np.stack([probs[label] for label in labels])))))
    challenger = _best({label: {"auroc": a} for label, a in aurocs.items()}, "auroc")
    record: dict[str, Any] = {"default": default}
    chosen = default
    if challenger is not None and challenger != default and not aurocs[challenger] <= aurocs[default]:
        gain = (auroc_bootstrap(y, probs[challenger], n_resamples, seed)
                - auroc_bootstrap(y, probs[default], n_resamples, seed))
        low, high = percentile_ci(gain)
        record.update(challenger=challenger, gain_ci=[low, high])
        if low > 0:
            chosen = challenger
    record.update(reader=chosen, auroc=aurocs[chosen], n_cases=int(len(y)), compared=aurocs)
    if with_ci:
        record["ci"] = list(percentile_ci(auroc_bootstrap(y, probs[chosen], n_resamples, seed))) if len(y) else \
            [float("nan")] * 2
    return record


def choose_per_finding(scored: dict[str, tuple[list[str], np.ndarray, np.ndarray]], default: str,
                       findings: Sequence[str], fold_of: dict[str, str] | None = None,
                       macro_per_fold: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """{finding: ``finding_reader``'s record} for readings of the same cases (label -> (case ids, probabilities,
    labels)), ``default`` being the macro winner. With ``fold_of`` (case -> fold) each record also has
    ``nested_auroc`` and ``chosen_per_fold``: for every fold, the macro winner over the other folds' cases and
    then this rule on those cases choose the reader that predicts the fold's cases; the AUROC of those pooled
    predictions estimates choosing per finding without any fold's labels in its own choice. ``macro_per_fold``:
    those macro winners when ``nested_selection`` has chosen them already."""
    ids, probs, y = _aligned(scored)
    out = {f: finding_reader({label: p[:, i] for label, p in probs.items()}, y[:, i], default)
           for i, f in enumerate(findings)}
    if not fold_of:
        return out
    if macro_per_fold is None:
        macro_per_fold = nested_selection(scored, fold_of, findings)["chosen_per_fold"]
    fold = np.array([fold_of.get(c, "") for c in ids])
    for i, f in enumerate(findings):
        nested = np.zeros(len(ids))
        chosen = {}
        for k, macro in macro_per_fold.items():
            held, rest = fold == k, (fold != k) & (fold != "")
            chosen[k] = finding_reader({label: p[rest, i] for label, p in probs.items()}, y[rest, i], macro,
                                       with_ci=False)["reader"]
            nested[held] = probs[chosen[k]][held, i]
        kept = np.isin(fold, list(macro_per_fold))
        out[f].update(nested_auroc=auroc(y[kept, i], nested[kept]), chosen_per_fold=chosen)
    return out


def _best(variants: dict[str, dict[str, Any]], key: str) -> str | None:
    scored = [(v[key], name) for name, v in variants.items() if v[key] == v[key]]
    if not scored:
        return None
    # ties go to the simpler configuration (from scratch), then alphabetically for a stable choice
    return max(scored, key=lambda x: (x[0], "scratch" in x[1], [-ord(c) for c in x[1]]))[1]


def find_best_configuration(preprocessed_dir: Path | str, model_dir: Path | str, results: Path | str | None = None,
                            folds: Sequence[int] = DEFAULT_FOLDS, log=print) -> ModelDescription:
    preprocessed_dir, model_dir = Path(preprocessed_dir), Path(model_dir)
    results = Path(results) if results else preprocessed_dir.parent / "results"
    description_path = preprocessed_dir / "dataset.json"
    if not description_path.is_file():
        raise UserInputError(f"{description_path}: missing — not a preprocessed folder")
    dataset = json.loads(description_path.read_text())
    findings = list(dataset.get("findings") or [])
    seg = segmentation_candidates(results, folds, log)
    cls = classification_candidates(results, folds, findings) if findings else {}
    if not seg and not cls:  # a dataset without segmentation labels has classifiers only
        raise UserInputError(f"{results}: no segmentation or classification configuration has finished folds "
                             f"{list(folds)}" + _finished_folds_hint(preprocessed_dir, model_dir, results))

    staging = model_dir.with_name(model_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(preprocessed_dir / "plans.json", staging / "plans.json")
    seg_choice: dict[str, TaskChoice] = {}

    def seg_stage(view: str, variant: str, sub: str) -> TaskChoice:
        """The choice of run ``variant`` with its checkpoints copied under ``sub`` (a cascade's previous stage
        under ``seg/<view>/<its variant>``)."""
        record = seg[view][variant]
        previous = record.get("previous_stage")
        return TaskChoice(view, variant, tuple(_copy_folds(record["fold_dirs"], staging, sub, with_best=True)),
                          {k: v for k, v in record.items() if k != "fold_dirs"}, record["configuration"],
                          seg_stage(view, previous["variant"], f"seg/{view}/{previous['variant']}") if previous
                          else None)

    ensembles: dict[str, dict[str, dict[str, Any]]] = {}
    for view, variants in sorted(seg.items()):
        best = _best(variants, "mean_dice")
        if best is None:
            continue
        chosen_pair, note = None, None
        kept = [v for v, record in variants.items() if record["probabilities"]]
        if best in kept and len(kept) > 1:
            ensembles[view], grid = ensemble_candidates(preprocessed_dir, view, variants, kept)
            for variant, figures in grid.items():
                variants[variant]["grid"] = figures
            top = _best(ensembles[view], "mean_dice")
            if top is not None and ensembles[view][top]["mean_dice"] > grid[best]["mean_dice"]:
                chosen_pair = top
        elif len(variants) > 1:
            note = (f"  no ensembles of two compared: {', '.join(v for v in variants if v not in kept)} kept no "
                    "validation probabilities (train_fold --npz)")
        if chosen_pair is None:
            seg_choice[view] = seg_stage(view, best, f"seg/{view}")
        else:
            pair = ensembles[view][chosen_pair]
            seg_choice[view] = TaskChoice(view, chosen_pair, (), dict(pair), members=tuple(
                seg_stage(view, member, f"seg/{view}/{member}") for member in pair["members"]))
        log(f"segmentation {view}: {_described(seg_choice[view])}, chosen by pooled CV mean Dice over the validation "
            f"cases of folds {list(folds)}:")
        for variant, v in variants.items():
            low, high = v["ci"]
            log(f" {'*' if variant == seg_choice[view].variant else ' '} {variant} ({v['configuration']}): mean Dice "
                f"{v['mean_dice']:.3f} (95% CI {low:.2f}-{high:.2f}, {v['n_cases']} cases; mean of the fold means "
                f"{v['mean_dice_of_folds']:.3f})")
        if note is not None:
            log(note)
        if ensembles.get(view):
            log(f"  ensembles of two (mean Dice of the averaged probabilities on the view's grid; {best} alone there: "
                f"{variants[best]['grid']['mean_dice']:.3f}):")
            for name, v in ensembles[view].items():
                low, high = v["ci"]
                log(f" {'*' if name == chosen_pair else ' '} {name}: mean Dice {v['mean_dice']:.3f} "
                    f"(95% CI {low:.2f}-{high:.2f}, {v['n_cases']} cases)")
    cls_choice, by_views = None, {}
    flat = {f"{name}/{variant}": v for name, vs in cls.items() for variant, v in vs.items()}
    plan_views = [v for v in json.loads((preprocessed_dir / "plans.json").read_text())["views"]]
    copied: dict[str, tuple[str, ...]] = {}
    splits_path = preprocessed_dir / "splits.json"
    fold_of = {c: str(k) for k, split in enumerate(json.loads(splits_path.read_text())) for c in split["val"]} \
        if splits_path.is_file() else None
    def choice_of(label: str, selection: dict[str, Any] | None = None) -> TaskChoice:
        name, variant = label.split("/", 1)
        if label not in copied:
            copied[label] = tuple(_copy_folds(flat[label]["fold_dirs"], staging, f"cls/{name}/{variant}"))
        cv = {k: v for k, v in flat[label].items() if k != "fold_dirs"}
        if selection is not None:
            cv.update(selection=selection)
        return TaskChoice(name, variant, copied[label], cv)

    findings_by_views: dict[str, dict[str, dict[str, Any]]] = {}
    readers: dict[str, TaskChoice] = {}
    for key, choice in choose_per_view_combination(cls, plan_views, findings, fold_of).items():
        label = choice["label"]
        per_finding = choice["per_finding"]
        by_views[key] = choice_of(label, {k: v for k, v in choice.items() if k not in ("label", "per_finding")})
        findings_by_views[key] = per_finding
        for row in per_finding.values():
            readers.setdefault(row["reader"], choice_of(row["reader"]))
        low, high = choice["ci"]
        nested = f"; choosing inside each fold: {choice['nested_macro_auroc']:.3f}" if "nested_macro_auroc" in choice \
            else ""
        log(f"classification for cases with {key}: {label} (pooled CV macro AUROC {choice['macro_auroc']:.3f}, "
            f"95% CI {low:.2f}-{high:.2f}, {choice['n_cases']} cases{nested}; "
            + ", ".join(f"{k} {v:.3f}" for k, v in choice["compared"].items()) + ")")
        if any(row["reader"] != label for row in per_finding.values()):
            nested = f" (choosing inside each fold: {choice['combined_nested_macro_auroc']:.3f})" if (
                "combined_nested_macro_auroc" in choice) else ""
            log(f"  each finding from its reader below: macro AUROC {choice['combined_macro_auroc']:.3f}{nested}")
        for finding, row in per_finding.items():
            log("  " + _finding_line(finding, row))
    if by_views:
        cls_choice = by_views.get("+".join(plan_views)) or next(iter(by_views.values()))
    reader_segmentations = {}
    for label in sorted({c.label for c in by_views.values()} | set(readers)):
        read = _segmentation_read(flat[label]["fold_dirs"], log)
        for view, variant in read.items():
            chosen = seg_choice.get(view)
            if chosen is not None and chosen.variant == variant:
                continue
            if variant not in seg.get(view, {}):
                log(f"classification {label}: fitted on the {view} segmentation {variant}, which has not finished "
                    f"folds {list(folds)}: prediction feeds it the view's chosen segmentation")
                continue
            reader_segmentations.setdefault(label, {})[view] = seg_stage(view, variant, f"seg/{view}/{variant}")
            log(f"classification {label}: reads the {view} segmentation it was fitted on, {variant}"
                + (f" (the view's chosen one is {chosen.variant})" if chosen is not None else ""))
    strip = lambda d: {k: {vk: vv for vk, vv in v.items() if vk != "fold_dirs"} for k, v in d.items()}  # noqa: E731
    description = ModelDescription(
        dataset=dataset, segmentation=seg_choice, classification=cls_choice, classification_by_views=by_views,
        findings_by_views=findings_by_views, readers=readers, reader_segmentations=reader_segmentations,
        candidates={"folds": list(folds), "segmentation": {v: strip(d) for v, d in seg.items()},
                    "segmentation_ensembles": ensembles,
                    "classification": {n: strip(d) for n, d in cls.items()}},
    )
    description.save(staging)
    # swap the finished folder in at once: a crash never leaves a half-filled model folder
    if model_dir.exists():
        old = model_dir.with_name(model_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        model_dir.rename(old)
        staging.rename(model_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(model_dir)
    return description


def _described(choice: TaskChoice) -> str:
    """A segmentation choice for the log: its run and configuration, a cascade's stages, an ensemble's members."""
    if choice.members:
        return "ensemble of " + " and ".join(_described(m) for m in choice.members)
    return " after ".join(f"{c.variant} ({c.configuration})" for c in reversed(choice.stages()))


def _segmentation_read(fold_dirs: Sequence[str], log) -> dict[str, str]:
    """{view: segmentation run variant} an anatomy reader's folds read (their summary.json's
    ``segmentation_read``); empty for other classifiers, and for a view whose folds read different runs (logged)."""
    read: dict[str, set[str]] = {}
    for d in fold_dirs:
        summary = Path(d) / "summary.json"
        table = (json.loads(summary.read_text()).get("segmentation_read") or {}) if summary.is_file() else {}
        for view, run in table.items():
            read.setdefault(view, set()).add(Path(run).parent.name)
    for view, variants in list(read.items()):
        if len(variants) > 1:
            log(f"{fold_dirs[0]}: its folds read different {view} segmentations ({', '.join(sorted(variants))}): "
                "prediction feeds it the view's chosen segmentation")
            del read[view]
    return {view: variants.pop() for view, variants in read.items()}


def _finding_line(finding: str, row: dict[str, Any]) -> str:
    """One finding's choice for the log: its reader, pooled AUROC with CI, and why (kept or replaced default)."""
    low, high = row["ci"]
    line = f"{finding}: {row['reader']} (pooled CV AUROC {row['auroc']:.3f}, 95% CI {low:.2f}-{high:.2f}"
    if "nested_auroc" in row:
        line += f"; choosing inside each fold: {row['nested_auroc']:.3f}"
    line += ")"
    if "challenger" in row:
        gain_low, gain_high = row["gain_ci"]
        other = row["challenger"] if row["reader"] == row["default"] else row["default"]
        verb = "replaces" if row["reader"] != row["default"] else "kept over"
        line += (f"; {verb} {other} ({row['compared'][other]:.3f}): paired 95% CI of the gain "
                 f"{gain_low:+.2f} to {gain_high:+.2f}")
    return line


def _copy_folds(fold_dirs: Sequence[str], staging: Path, sub: str, with_best: bool = False) -> list[str]:
    """Each fold's checkpoint_final.pt as ``<sub>/fold_<k>.pt`` (the paths model.json lists); ``with_best``: its
    checkpoint_best.pt too, where training wrote one, as ``fold_<k>_best.pt`` (``predict_folder --checkpoint
    best``)."""
    rel = []
    for d in fold_dirs:
        d = Path(d)
        target = staging / sub / f"{d.name}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copy2(d / "checkpoint_final.pt", tmp)
        if with_best and (d / "checkpoint_best.pt").is_file():
            with atomic_path(best_checkpoint_path(target)) as tmp:
                shutil.copy2(d / "checkpoint_best.pt", tmp)
        rel.append(f"{sub}/{d.name}.pt")
    return rel
