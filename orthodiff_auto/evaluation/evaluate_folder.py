"""``evaluate``: predictions in a folder against a dataset's test references (labelsTs/, findingsTs.csv)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orthodiff_auto.data.dataset import scan_raw_dataset
from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.classification_metrics import evaluate_findings
from orthodiff_auto.training.segmentation_metrics import aggregate, evaluate_segmentation
from orthodiff_auto.utils.atomic import atomic_path, write_json_atomic
from orthodiff_auto.utils.json_safe import json_safe

THRESHOLDS_JSON = "thresholds.json"


def evaluate_predictions(pred_dir: Path | str, reference: Path | str, out_dir: Path | str | None = None,
                         bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    pred_dir, reference = Path(pred_dir), Path(reference)
    if not pred_dir.is_dir():
        raise UserInputError(f"{pred_dir}: prediction folder does not exist")
    ds = scan_raw_dataset(reference)
    desc = ds.description
    test_scans = [s for s in ds.select("test") if s.label is not None]
    has_findings = ds.test_findings is not None and (pred_dir / "findings.csv").is_file()
    if not test_scans and not has_findings:
        raise UserInputError(f"{reference}: no test references (labelsTs/ or findingsTs.csv) to evaluate against")
    sites = ds.test_findings["site"] if ds.test_findings is not None and "site" in ds.test_findings else None
    summary: dict[str, Any] = {"prediction_folder": str(pred_dir), "reference": str(reference)}
    if test_scans:
        summary["segmentation"] = _evaluate_segmentations(pred_dir, test_scans, desc, sites)
    if has_findings:
        summary["findings"] = _evaluate_findings(pred_dir, ds.test_findings, desc.findings, bootstrap, seed)
    out_dir = Path(out_dir) if out_dir else pred_dir / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "summary.json", json_safe(summary))
    _plots(summary, out_dir)
    return summary


def evaluate_and_report(pred_dir: Path | str, reference: Path | str, out_dir: Path | str | None = None,
                        bootstrap: int = 1000, log=print) -> dict[str, Any]:
    """``orthodiff evaluate``: ``evaluate_predictions``, then its table (``report_table``) logged."""
    summary = evaluate_predictions(pred_dir, reference, out_dir, bootstrap=bootstrap)
    log(report_table(summary))
    return summary


def _evaluate_segmentations(pred_dir: Path, scans, desc, sites) -> dict[str, Any]:
    labels = desc.foreground_labels
    per_case: dict[str, Any] = {}
    missing = []
    for scan in scans:
        pred_path = pred_dir / scan.image.name
        if not pred_path.is_file():
            missing.append(scan.image.name)
            continue
        pred, pred_geom = read_image(pred_path, dtype=None)
        ref, ref_geom = read_image(scan.label, dtype=None)
        if not pred_geom.same_grid(ref_geom):
            raise UserInputError(f"{pred_path}: geometry differs from its reference {scan.label}")
        per_case[scan.image.name] = {
            "case_id": scan.case_id, "view": scan.view,
            "metrics": evaluate_segmentation(pred.astype(np.int64), ref.astype(np.int64), labels, ref_geom.spacing,
                                             desc.ignore_label),
        }
    result: dict[str, Any] = {"n_scans": len(per_case), "missing_predictions": missing,
                              "overall": aggregate([c["metrics"] for c in per_case.values()]) if per_case else {}}
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


def _evaluate_findings(pred_dir: Path, reference: pd.DataFrame, findings, bootstrap: int, seed: int) -> dict[str, Any]:
    path = pred_dir / "findings.csv"
    table = pd.read_csv(path, dtype={"case_id": str}).set_index("case_id")
    missing_cols = [f for f in findings if f not in table.columns]
    if missing_cols:
        raise UserInputError(f"{path}: missing probability columns {missing_cols}")
    listed = [c for c in reference.index if c in table.index]
    # a row without probabilities: the model could not assess that case (e.g. no scan of its classifier's view)
    assessed = table.loc[listed, list(findings)].notna().all(axis=1) if listed else pd.Series(dtype=bool)
    cases = [c for c in listed if assessed[c]]
    if not cases:
        raise UserInputError(f"{path}: no assessed case in common with the reference findings")
    y = reference.loc[cases, list(findings)].to_numpy(dtype=int)
    scores = table.loc[cases, list(findings)].to_numpy(dtype=float)
    thresholds = None
    thresholds_path = pred_dir / THRESHOLDS_JSON
    if thresholds_path.is_file():
        stored = json.loads(thresholds_path.read_text())
        thresholds = [float(stored[f]) if stored.get(f) is not None else np.nan for f in findings]
    groups = reference.loc[cases, "site"].astype(str).tolist() if "site" in reference.columns else None
    result = evaluate_findings(y, scores, findings, thresholds=thresholds, groups=groups, bootstrap=bootstrap, seed=seed)
    result["missing_predictions"] = [c for c in reference.index if c not in table.index]
    result["not_assessed"] = [c for c in listed if not assessed[c]]
    result["roc"] = {f: _roc_points(y[:, i], scores[:, i]) for i, f in enumerate(findings)}
    return result


def _roc_points(y: np.ndarray, s: np.ndarray) -> dict[str, list[float]]:
    order = np.argsort(-s, kind="stable")
    y = y[order]
    tps = np.concatenate([[0], np.cumsum(y)])
    fps = np.concatenate([[0], np.cumsum(1 - y)])
    pos, neg = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    return {"fpr": (fps / neg).tolist(), "tpr": (tps / pos).tolist()}


def _plots(summary: dict[str, Any], out_dir: Path) -> None:
    import matplotlib  # only when a figure is drawn: importing matplotlib takes about half a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "findings" in summary:
        fig, ax = plt.subplots(figsize=(6, 6))
        for name, pts in summary["findings"]["roc"].items():
            auc = summary["findings"]["per_finding"][name]["auroc"]
            ax.plot(pts["fpr"], pts["tpr"], label=f"{name} ({auc:.2f})" if auc == auc else name)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.legend(fontsize=7, loc="lower right")
        _save(fig, out_dir / "roc_curves.png")
    seg = summary.get("segmentation")
    if seg and seg["per_case"]:
        names = list(next(iter(seg["per_case"].values()))["metrics"])
        values = [[c["metrics"][n]["dice"] for c in seg["per_case"].values() if c["metrics"][n]["dice"] == c["metrics"][n]["dice"]]
                  for n in names]
        fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.7), 4))
        ax.boxplot(values, showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("Dice")
        ax.set_ylim(0, 1)
        _save(fig, out_dir / "dice_boxplot.png")


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt  # only when a figure is drawn: importing matplotlib takes about half a second

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def report_table(summary: dict[str, Any]) -> str:
    """Dice per structure and AUROC per finding, as printed by the demo."""
    lines = []
    seg = summary.get("segmentation")
    if seg and seg.get("overall"):
        lines.append(f"{'structure':<24} {'Dice':>6} {'HD95 mm':>8}")
        for name, m in seg["overall"].items():
            if name == "mean":
                continue
            lines.append(f"{name:<24} {m['dice']['mean']:>6.3f} {m['hd95']['median']:>8.2f}")
        lines.append(f"{'mean':<24} {seg['overall']['mean']['dice']['mean']:>6.3f}")
    fnd = summary.get("findings")
    if fnd:
        lines.append("")
        lines.append(f"{'finding':<24} {'AUROC':>6} {'95% CI':>13} {'sens':>5} {'spec':>5}")
        for name, m in fnd["per_finding"].items():
            ci = f"{m.get('auroc_ci_low', float('nan')):.2f}-{m.get('auroc_ci_high', float('nan')):.2f}"
            lines.append(f"{name:<24} {m['auroc']:>6.3f} {ci:>13} {m['sensitivity']:>5.2f} {m['specificity']:>5.2f}")
        lines.append(f"{'macro':<24} {fnd['macro']['auroc']:>6.3f}")
        if fnd.get("not_assessed"):
            lines.append(f"not assessed (no scan the classifier reads): {', '.join(fnd['not_assessed'])}")
    return "\n".join(lines)
