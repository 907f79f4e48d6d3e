"""report.html: the evaluation as one self-contained page (tables and figures, every figure an embedded
base64 PNG, no external reference), to open in any browser or attach to an email."""

from __future__ import annotations

import base64
import html
import math
import statistics
from typing import Any, Iterable, Sequence

from orthodiff_auto import __version__

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.6em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; }
td { text-align: right; font-variant-numeric: tabular-nums; } td:first-child, th:first-child { text-align: left; }
th { background: #eee; } tr.summary td { font-weight: bold; background: #f6f6f6; }
p.note { color: #555; font-size: 0.9em; } img { max-width: 100%; }
"""


NOT_REPORTED = "\u2013"  # an undefined value (NaN, no CI, no threshold), on the page and on the command line
AUROC_NOTE = ("AUROC 0.5 is chance (a coin toss ranks a positive above a negative half the time), 1.0 ranks every "
              "positive above every negative; a 95% CI that includes 0.5 does not show better than chance.")
HD95_NOTE = ("HD95: the median over the scans where both the prediction and the reference hold the structure (a "
             "distance is defined there only); 'no HD95' counts the scans where only one of them holds it.")


def hd95_summary(per_case: dict[str, Any], structure: str) -> dict[str, Any]:
    """A finite summary of a structure's HD95 over scans: ``median`` and ``mean`` over the scans where both the
    prediction and the reference hold it (None when there is none), ``n`` of them, and ``n_without``: the scans
    where only one holds it (an infinite distance, which a mean would turn into inf)."""
    values = [c["metrics"].get(structure, {}).get("hd95") for c in per_case.values()]
    values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))
              and v != "nan"]
    finite = [v for v in values if math.isfinite(v)]
    return {"median": statistics.median(finite) if finite else None,
            "mean": statistics.fmean(finite) if finite else None, "n": len(finite),
            "n_without": len(values) - len(finite)}


def number(value: Any, digits: int = 3) -> str:
    """A metric as the report prints it: NaN/None (undefined) as a dash, infinity as inf."""
    if value is None or value == "inf" or value == "-inf":
        return "\u2013" if value is None else value
    value = float(value)
    if value != value:
        return "\u2013"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str] | None, rows: Iterable[Sequence[str]],
           summary_rows: Iterable[Sequence[str]] = ()) -> str:
    head = "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>" if header else ""
    body = ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    body += ['<tr class="summary">' + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
             for row in summary_rows]
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _segmentation_section(seg: dict[str, Any], figures: dict[str, bytes]) -> list[str]:
    parts = ["<h2>Segmentation</h2>"]
    missing = seg.get("missing_predictions", [])
    parts.append(f"<p>{seg['n_scans']} of {seg['n_scans'] + len(missing)} reference scans scored"
                 + (f"; no prediction for {html.escape(', '.join(missing))}" if missing else "") + ".</p>")
    overall = seg.get("overall") or {}
    if overall:
        structures = [s for s in overall if s != "mean"]
        cis = seg.get("dice_ci") or {}
        per_case = seg.get("per_case") or {}

        def row(name: str, hd95: dict[str, Any] | None) -> list[str]:
            dice = overall[name]["dice"]
            ci = cis.get(name)
            return [name, number(dice["mean"]), f"{number(ci[0])}\u2013{number(ci[1])}" if ci else NOT_REPORTED,
                    number(dice["median"]), number(dice["std"]), str(dice["n"]),
                    number(hd95["median"], 2) if hd95 else "", number(hd95["mean"], 2) if hd95 else "",
                    str(hd95["n_without"]) if hd95 else ""]

        parts.append("<h3>Per structure (all scans)</h3>")
        parts.append(_table(
            ["structure", "Dice mean", "Dice 95% CI", "Dice median", "Dice std", "n", "HD95 median (mm)",
             "HD95 mean (mm)", "no HD95"],
            (row(s, hd95_summary(per_case, s)) for s in structures), [row("mean", None)]))
        parts.append('<p class="note">Dice 95% CI: percentile bootstrap over scans (as on the command line); n '
                     f"counts the scans where the structure is in the reference or the prediction. {HD95_NOTE}</p>")
        for key, title in (("per_view", "view"), ("per_site", "site")):
            groups = seg.get(key) or {}
            if groups:
                parts.append(f"<h3>Mean Dice per {title}</h3>")
                parts.append(_table(
                    ["structure"] + list(groups),
                    ([s] + [number(g.get(s, {}).get("dice", {}).get("mean")) for g in groups.values()]
                     for s in structures),
                    [["mean"] + [number(g["mean"]["dice"]["mean"]) for g in groups.values()]]))
    if "dice_boxplot.png" in figures:
        parts.append("<h3>Dice per scan</h3>")
        parts.append(_image(figures["dice_boxplot.png"], "Dice per structure, box plot over scans"))
    return parts


def _findings_section(fnd: dict[str, Any], figures: dict[str, bytes], threshold_note: str) -> list[str]:
    parts = ["<h2>Findings</h2>",
             f"<p>{fnd['n_cases']} of {fnd['n_reference']} reference cases scored.</p>"]
    if fnd.get("not_assessed"):
        parts.append(f"<p>Not assessed (no scan the classifier reads): {html.escape(', '.join(fnd['not_assessed']))}"
                     "</p>")
    if fnd.get("missing_predictions"):
        parts.append(f"<p>No findings row: {html.escape(', '.join(fnd['missing_predictions']))}</p>")
    per = fnd.get("per_finding") or {}
    if per:
        macro = fnd["macro"]
        parts.append("<h3>Per finding</h3>")
        parts.append(_table(
            ["finding", "AUROC", "AUROC 95% CI", "AP", "threshold", "sensitivity", "specificity", "positives",
             "negatives"],
            ([name, number(m["auroc"]), f"{number(m.get('auroc_ci_low'))}\u2013{number(m.get('auroc_ci_high'))}",
              number(m["ap"]), number(m["threshold"]), number(m["sensitivity"]), number(m["specificity"]),
              str(m["n_positive"]), str(m["n_negative"])] for name, m in per.items()),
            [["macro", number(macro["auroc"]),
              f"{number(macro.get('auroc_ci_low'))}\u2013{number(macro.get('auroc_ci_high'))}", number(macro["ap"]),
              "", number(macro["sensitivity"]), number(macro["specificity"]), "", ""]]))
        parts.append(f'<p class="note">{html.escape(threshold_note)} {html.escape(AUROC_NOTE)}</p>')
        groups = fnd.get("groups") or {}
        if groups:
            parts.append("<h3>AUROC per site</h3>")
            parts.append(_table(
                ["finding"] + list(groups),
                ([name] + [number(g["per_finding"][name]["auroc"]) for g in groups.values()] for name in per),
                [["macro"] + [number(g["macro"]["auroc"]) for g in groups.values()],
                 ["cases"] + [str(g["n_cases"]) for g in groups.values()]]))
            parts.append('<p class="note">Sites are scored at the overall thresholds; an AUROC is undefined (\u2013) '
                         "where a site has cases of one class only.</p>")
    if "roc_curves.png" in figures:
        parts.append("<h3>ROC curves</h3>")
        parts.append('<p class="note">One point per distinct score: cases with tied scores form one diagonal '
                     "step, so the area under each curve is the AUROC in the table.</p>")
        parts.append(_image(figures["roc_curves.png"], "ROC curve per finding"))
    return parts


def _header_rows(summary: dict[str, Any]) -> list[list[str]]:
    """What was evaluated: the model (folder, digest, folds, checkpoint, its training dataset), the predictions,
    the reference and its dataset."""
    model = summary.get("model") or {}
    rows = []
    if model:
        folds = model.get("folds")
        rows += [["model", f"{model.get('model_folder')} (sha256 {str(model.get('model_sha256'))[:12]})"],
                 ["trained on", model.get("trained_on") or NOT_REPORTED],
                 ["folds", ", ".join(map(str, folds)) if folds else NOT_REPORTED],
                 ["checkpoint", f"{model.get('checkpoint')}{', with TTA' if model.get('tta') else ''}"],
                 ["predicted", str(model.get("date"))]]
    else:
        rows.append(["model", "not recorded (no prediction_provenance.json in the prediction folder)"])
    rows += [["predictions", str(summary.get("prediction_folder", ""))],
             ["reference", str(summary.get("reference", ""))
              + (f" (dataset {summary['reference_dataset']})" if summary.get("reference_dataset") else "")],
             ["orthodiff_auto", __version__]]
    return rows


def render_report(summary: dict[str, Any], figures: dict[str, bytes], threshold_note: str = "") -> str:
    """The HTML page of an evaluation summary (``evaluate_predictions``' dict) and its figures (file name ->
    PNG bytes, ``figures.evaluation_figures``)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>orthodiff evaluation</title>", f"<style>{_STYLE}</style></head><body>",
             "<h1>orthodiff evaluation</h1>", _table(None, _header_rows(summary))]
    if summary.get("segmentation"):
        parts += _segmentation_section(summary["segmentation"], figures)
    if summary.get("findings"):
        parts += _findings_section(summary["findings"], figures, threshold_note)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
