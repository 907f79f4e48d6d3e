"""``evaluate``: predictions in a folder against reference labels and findings: a dataset's test references
(labelsTs/, findingsTs.csv) or a plain folder of label files (``evaluation.references``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.evaluation.figures import evaluation_figures
from orthodiff_auto.evaluation.references import References, load_references
from orthodiff_auto.evaluation.report_html import (
    AUROC_NOTE, HD95_NOTE, NOT_REPORTED, hd95_summary, number, render_report,
)
from orthodiff_auto.training.classification_metrics import choose_thresholds, evaluate_findings, roc_points
from orthodiff_auto.training.segmentation_metrics import aggregate, evaluate_segmentation
from orthodiff_auto.utils.atomic import atomic_path, write_json_atomic, write_text_atomic
from orthodiff_auto.utils.json_safe import json_safe

THRESHOLDS_JSON = "thresholds.json"
REPORT_HTML = "report.html"
# where the thresholds behind sensitivity/specificity came from (summary["findings"]["threshold_method"])
FROM_THRESHOLDS_JSON = "thresholds.json"
FROM_TEST_SET = "test_set_youden"
NO_THRESHOLDS = "none"


def evaluate_predictions(pred_dir: Path | str, reference: Path | str, out_dir: Path | str | None = None,
                         bootstrap: int = 1000, seed: int = 0, test_set_thresholds: bool = False,
                         dataset_json: Path | str | None = None,
                         findings_csv: Path | str | None = None) -> dict[str, Any]:
    """Score the predictions in ``pred_dir`` against ``reference``: a raw dataset's test references, or a plain
    folder of reference label files (with ``dataset_json`` and ``findings_csv`` when they are not in it;
    ``evaluation.references``). A segmentation matches its reference under our name or nnU-Net's.

    Findings: sensitivity and specificity at the thresholds of ``pred_dir/thresholds.json`` (written by
    predict_folder: chosen on cross-validation); without it only the threshold-free AUROC and AP, unless
    ``test_set_thresholds`` asks for Youden thresholds chosen on this very test set (optimistic, and labelled
    so). UserInputError when no prediction matches any reference."""
    pred_dir, reference = Path(pred_dir), Path(reference)
    if not pred_dir.is_dir():
        raise UserInputError(f"{pred_dir}: prediction folder does not exist")
    refs = load_references(reference, dataset_json, findings_csv)
    table = refs.findings_table
    has_findings = table is not None and (pred_dir / "findings.csv").is_file()
    sites = table["site"] if table is not None and "site" in table else None
    summary: dict[str, Any] = {"prediction_folder": str(pred_dir), "reference": str(reference),
                               "reference_dataset": _dataset_name(refs.root / "dataset.json"),
                               "model": model_of_predictions(pred_dir)}
    if refs.scans:
        summary["segmentation"] = _evaluate_segmentations(pred_dir, refs, sites, bootstrap, seed)
    if has_findings:
        summary["findings"] = _evaluate_findings(pred_dir, table, refs.findings, bootstrap, seed,
                                                 test_set_thresholds)
    matched_scans = summary.get("segmentation", {}).get("n_scans", 0)
    matched_cases = summary.get("findings", {}).get("n_rows_matched", 0)
    if not matched_scans and not matched_cases:
        raise UserInputError(f"{pred_dir}: no prediction matches a reference of {reference} (segmentations are "
                             "matched by the reference's file names, as <case>_<view> or nnU-Net's <case>, "
                             "findings by the case ids of its findings CSV)")
    out_dir = Path(out_dir) if out_dir else pred_dir / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "summary.json", json_safe(summary))
    _write_figures_and_report(summary, out_dir)
    return summary


def model_of_predictions(pred_dir: Path) -> dict[str, Any] | None:
    """What made the predictions, from their prediction_provenance.json (the latest run): model folder, its
    digest, folds, checkpoint, TTA, date, and the dataset the model was trained on (its plans.json); None
    without a readable provenance."""
    try:
        run = json.loads((pred_dir / "prediction_provenance.json").read_text())["runs"][-1]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
        return None
    keys = ("model_folder", "model_sha256", "folds", "checkpoint", "tta", "date")
    model = {k: run.get(k) for k in keys}
    model["trained_on"] = _dataset_name(Path(str(run.get("model_folder", ""))) / "plans.json", "dataset_name")
    return model


def _dataset_name(path: Path, key: str = "name") -> str | None:
    try:
        return str(json.loads(path.read_text(encoding="utf-8-sig"))[key])
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None


def evaluate_and_report(pred_dir: Path | str, reference: Path | str, out_dir: Path | str | None = None,
                        bootstrap: int = 1000, test_set_thresholds: bool = False, log=print,
                        dataset_json: Path | str | None = None, findings_csv: Path | str | None = None
                        ) -> dict[str, Any]:
    """``orthodiff evaluate``: ``evaluate_predictions``, then its table (``report_table``) logged."""
    summary = evaluate_predictions(pred_dir, reference, out_dir, bootstrap=bootstrap,
                                   test_set_thresholds=test_set_thresholds, dataset_json=dataset_json,
                                   findings_csv=findings_csv)
    log(report_table(summary))
    return summary


def _evaluate_segmentations(pred_dir: Path, refs: References, sites, bootstrap: int = 1000,
                            seed: int = 0) -> dict[str, Any]:
    per_case: dict[str, Any] = {}
    missing = []
    for scan in refs.scans:
        name = scan.names[0]  # the reference's own name keys the summary, whatever the prediction is called
        pred_path = refs.prediction_for(scan, pred_dir)
        if pred_path is None:
            missing.append(name)
            continue
        pred, pred_geom = read_image(pred_path, dtype=None)
        ref, ref_geom = read_image(scan.label, dtype=None)
        if not pred_geom.same_grid(ref_geom):
            raise UserInputError(f"{pred_path}: geometry differs from its reference {scan.label}")
        per_case[name] = {
            "case_id": scan.case_id, "view": scan.view, "prediction": pred_path.name,
            "metrics": evaluate_segmentation(pred.astype(np.int64), ref.astype(np.int64), refs.labels,
                                             ref_geom.spacing, refs.ignore_label),
        }
    result: dict[str, Any] = {"n_scans": len(per_case), "missing_predictions": missing,
                              "overall": aggregate([c["metrics"] for c in per_case.values()]) if per_case else {}}
    if per_case and bootstrap > 0:
        result["dice_ci"] = dice_mean_ci([c["metrics"] for c in per_case.values()], bootstrap, seed)
    result["per_view"] = {
        view: aggregate([c["metrics"] for c in per_case.values() if c["view"] == view])
        for view in sorted({c["view"] for c in per_case.values()})
    }
    if sites is not None:
        by_site: dict[str, list] = {}
        for c in per_case.values():
            if c["case_id"] in sites.index:
                by_site.setdefault(str(sites[c["case_id"]]), []).append(c["metrics"])
        result["per_site"] = {site: aggregate(items) for site, items in sorted(by_site.items())}
    result["per_case"] = per_case
    return result


def _evaluate_findings(pred_dir: Path, reference: pd.DataFrame, findings, bootstrap: int, seed: int,
                       test_set_thresholds: bool) -> dict[str, Any]:
    path = pred_dir / "findings.csv"
    table = pd.read_csv(path, dtype={"case_id": str}).set_index("case_id")
    missing_cols = [f for f in findings if f not in table.columns]
    if missing_cols:
        raise UserInputError(f"{path}: missing probability columns {missing_cols}")
    listed = [c for c in reference.index if c in table.index]
    # a row without probabilities: the model could not assess that case (e.g. no scan of its classifier's view)
    assessed = table.loc[listed, list(findings)].notna().all(axis=1) if listed else pd.Series(dtype=bool)
    cases = [c for c in listed if assessed[c]]
    counts = {
        "n_reference": int(len(reference.index)),
        "n_rows_matched": len(listed),
        "n_cases": len(cases),
        "missing_predictions": [c for c in reference.index if c not in table.index],
        "not_assessed": [c for c in listed if not assessed[c]],
    }
    if not cases:  # nothing to score: the counts say why
        return {**counts, "threshold_method": NO_THRESHOLDS, "per_finding": {}, "macro": {}, "roc": {}}
    y = reference.loc[cases, list(findings)].to_numpy(dtype=int)
    scores = table.loc[cases, list(findings)].to_numpy(dtype=float)
    thresholds, method = _thresholds(pred_dir / THRESHOLDS_JSON, findings, y, scores, test_set_thresholds)
    groups = reference.loc[cases, "site"].astype(str).tolist() if "site" in reference.columns else None
    result = evaluate_findings(y, scores, findings, thresholds=thresholds, groups=groups, bootstrap=bootstrap, seed=seed)
    result.update(counts, threshold_method=method)
    result["roc"] = {f: _roc_points(y[:, i], scores[:, i]) for i, f in enumerate(findings)}
    return result


def _thresholds(path: Path, findings, y: np.ndarray, scores: np.ndarray, test_set: bool) -> tuple[np.ndarray, str]:
    """The thresholds behind sensitivity/specificity and where they came from: Youden's on this test set when
    asked for, else ``thresholds.json`` (chosen on cross-validation), else none (NaN: threshold-free metrics)."""
    if test_set:
        return choose_thresholds(y, scores, "youden"), FROM_TEST_SET
    if not path.is_file():
        return np.full(len(findings), np.nan), NO_THRESHOLDS
    try:
        stored = json.loads(path.read_text())
        thresholds = np.array([float(stored[f]) if stored.get(f) is not None else np.nan for f in findings])
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError, ValueError) as e:
        raise UserInputError(f"{path}: not a thresholds file ({type(e).__name__}: {e})") from None
    return thresholds, FROM_THRESHOLDS_JSON


def _roc_points(y: np.ndarray, s: np.ndarray) -> dict[str, list[float]]:
    """The ROC curve (sklearn's, one point per distinct score, so ties are handled as in the AUROC)."""
    fpr, tpr, _ = roc_points(y, s)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def _write_figures_and_report(summary: dict[str, Any], out_dir: Path) -> None:
    """roc_curves.png, dice_boxplot.png and report.html (the same figures embedded, and the tables)."""
    figures = evaluation_figures(summary)
    for name, png in figures.items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_bytes(png)
    note = _THRESHOLD_NOTES.get(summary.get("findings", {}).get("threshold_method"), "")
    write_text_atomic(out_dir / REPORT_HTML, render_report(summary, figures, note))


_THRESHOLD_NOTES = {
    FROM_THRESHOLDS_JSON: "sens/spec at the thresholds of thresholds.json (chosen on cross-validation)",
    FROM_TEST_SET: "sens/spec at thresholds chosen on this test set (Youden; optimistic: --test-set-thresholds)",
    NO_THRESHOLDS: "sens/spec not reported: no thresholds.json in the prediction folder (threshold-free AUROC "
                   "only; --test-set-thresholds picks Youden thresholds on this test set)",
}


def dice_mean_ci(per_case: list[dict[str, dict[str, float]]], n_resamples: int = 1000,
                 seed: int = 0) -> dict[str, list[float]]:
    """Percentile 95% bootstrap interval (resampling scans) of the mean Dice of each structure (scans where it
    is NaN, i.e. absent from both, left out) and of the per-scan mean over structures (key ``"mean"``)."""
    structures = list(dict.fromkeys(s for case in per_case for s in case))
    table = np.array([[case.get(s, {}).get("dice", np.nan) for s in structures] for case in per_case], dtype=float)
    with np.errstate(invalid="ignore"):
        case_means = np.nanmean(np.where(np.isnan(table).all(axis=1, keepdims=True), 0.0, table), axis=1)
    case_means[np.isnan(table).all(axis=1)] = np.nan
    rng = np.random.default_rng(seed)
    out = {}
    for name, values in [*zip(structures, table.T), ("mean", case_means)]:
        values = values[~np.isnan(values)]
        if values.size == 0:
            out[name] = [float("nan"), float("nan")]
            continue
        means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
        out[name] = [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
    return out


def _ci_text(ci) -> str:
    """``low-high``, or a dash when the interval is undefined (as report.html prints it)."""
    if ci is None or NOT_REPORTED in (number(ci[0]), number(ci[1])):
        return NOT_REPORTED
    return f"{number(ci[0], 2)}-{number(ci[1], 2)}"


def report_table(summary: dict[str, Any]) -> str:
    """Dice per structure and AUROC per finding, as printed by the demo, with how many references were scored
    and where the thresholds came from. Undefined values print as report.html prints them (a dash); HD95 is the
    median over the scans where both the prediction and the reference hold the structure, with the count of
    the others (``report_html.hd95_summary``)."""
    lines = []
    seg = summary.get("segmentation")
    if seg and seg.get("overall"):
        cis = seg.get("dice_ci", {})
        lines.append(f"{'structure':<24} {'Dice':>6} {'95% CI':>13} {'HD95 mm':>8}  {'no HD95':>7}")
        for name, m in seg["overall"].items():
            if name == "mean":
                continue
            hd95 = hd95_summary(seg.get("per_case", {}), name)
            lines.append(f"{name:<24} {number(m['dice']['mean']):>6} {_ci_text(cis.get(name)):>13} "
                         f"{number(hd95['median'], 2):>8}  {hd95['n_without']:>7}")
        lines.append(f"{'mean':<24} {number(seg['overall']['mean']['dice']['mean']):>6} "
                     f"{_ci_text(cis.get('mean')):>13}")
        lines.append(HD95_NOTE)
    if seg is not None:
        missing = seg.get("missing_predictions", [])
        lines.append(f"segmentations scored: {seg['n_scans']} of {seg['n_scans'] + len(missing)} reference scans"
                     + (f"; no prediction for {', '.join(missing)}" if missing else ""))
    fnd = summary.get("findings")
    if fnd:
        lines.append("")
        if fnd.get("per_finding"):
            lines += _findings_lines(fnd)
        lines.append(f"findings scored: {fnd['n_cases']} of {fnd['n_reference']} reference cases")
        if fnd.get("not_assessed"):
            lines.append(f"not assessed (no scan the classifier reads): {', '.join(fnd['not_assessed'])}")
        if fnd.get("missing_predictions"):
            lines.append(f"no findings row: {', '.join(fnd['missing_predictions'])}")
    return "\n".join(lines)


def _findings_lines(fnd: dict[str, Any]) -> list[str]:
    with_thresholds = fnd["threshold_method"] != NO_THRESHOLDS
    lines = [f"{'finding':<24} {'AUROC':>6} {'95% CI':>13} {'sens':>5} {'spec':>5}"]
    for name, m in fnd["per_finding"].items():
        ci = _ci_text([m.get("auroc_ci_low"), m.get("auroc_ci_high")])
        rates = (f"{number(m['sensitivity'], 2):>5} {number(m['specificity'], 2):>5}" if with_thresholds
                 else f"{NOT_REPORTED:>5} {NOT_REPORTED:>5}")
        lines.append(f"{name:<24} {number(m['auroc']):>6} {ci:>13} {rates}")
    macro = fnd["macro"]
    macro_ci = [macro["auroc_ci_low"], macro["auroc_ci_high"]] if "auroc_ci_low" in macro else None
    lines.append(f"{'macro':<24} {number(macro['auroc']):>6} {_ci_text(macro_ci):>13}")
    lines.append(_THRESHOLD_NOTES[fnd["threshold_method"]])
    lines.append(AUROC_NOTE)
    return lines
