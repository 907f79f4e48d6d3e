"""report.html: self-contained (every figure embedded, no external reference), its tables hold summary.json's
numbers, and its ROC curves are drawn from points whose area is the reported AUROC (ties counted 1/2)."""

import base64
import json
import locale
from html.parser import HTMLParser

import numpy as np
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.evaluation.report_html import NOT_REPORTED, number
from tests.evaluation.test_evaluate_folder import _dataset, write_predictions


class _Page(HTMLParser):
    """Images, every attribute that can point elsewhere, and the tables as lists of rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.images, self.references, self.tags, self.tables = [], [], [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("href", "src", "data", "poster", "srcset"):
            if key in attrs and tag != "img":
                self.references.append((tag, key, attrs[key]))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _table_with(page: _Page, header: str) -> dict[str, list[str]]:
    """The table whose header row starts with ``header``, as {first cell: row}."""
    table = next(t for t in page.tables if t and t[0] and t[0][0] == header)
    return {row[0]: row for row in table[1:]}


@pytest.fixture
def evaluated(tmp_path):
    g, refs = _dataset(tmp_path / "raw")
    pred_dir = tmp_path / "pred"
    # tear: three cases tied at 0.4 (two negatives, one positive) -> AUROC (1/2 + 1/2 + 1 + 1) / 4 = 0.75
    write_predictions(pred_dir, g, refs, (0.4, 0.4, 0.4, 0.8))
    assert main(["evaluate", str(pred_dir), str(tmp_path / "raw"), "--bootstrap", "50"]) == 0
    out = pred_dir / "evaluation"
    page = _Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    return json.loads((out / "summary.json").read_text()), page


def test_every_figure_is_embedded_and_nothing_points_outside(evaluated):
    _, page = evaluated
    assert len(page.images) == 2  # ROC curves and Dice box plots
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert page.references == []
    assert not {"link", "script", "iframe", "object", "embed"} & set(page.tags)


def test_tables_hold_the_summary_numbers(evaluated):
    summary, page = evaluated
    structures = _table_with(page, "structure")
    seg = summary["segmentation"]["overall"]
    assert structures["a"][1] == number(seg["a"]["dice"]["mean"]) == "0.857"
    assert structures["b"][6] == number(seg["b"]["hd95"]["median"], 2)
    assert structures["mean"][1] == number(seg["mean"]["dice"]["mean"])
    findings = _table_with(page, "finding")
    per = summary["findings"]["per_finding"]
    for name in ("tear", "fluid"):
        assert findings[name][1] == number(per[name]["auroc"])
        assert findings[name][5:7] == [number(per[name]["sensitivity"]), number(per[name]["specificity"])]
    assert findings["tear"][1] == "0.750"
    assert findings["macro"][1] == number(summary["findings"]["macro"]["auroc"])
    # per site: the segmentation's Dice and the findings' AUROC (site A holds only negatives of tear: undefined)
    site_tables = [t for t in page.tables if t and t[0][1:] == ["A", "B"]]
    assert len(site_tables) == 2
    auroc_by_site = {row[0]: row[1:] for row in site_tables[1][1:]}
    assert auroc_by_site["tear"][0] == "\u2013"
    assert auroc_by_site["fluid"] == [number(summary["findings"]["groups"][s]["per_finding"]["fluid"]["auroc"])
                                      for s in ("A", "B")]


def test_roc_points_group_ties_so_their_area_is_the_auroc(evaluated):
    summary, _ = evaluated
    for name, points in summary["findings"]["roc"].items():
        fpr, tpr = np.array(points["fpr"]), np.array(points["tpr"])
        area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        assert area == pytest.approx(summary["findings"]["per_finding"][name]["auroc"])
    # the three tied cases are one step: (0, 0), the 0.8 case, then all three at once
    assert summary["findings"]["roc"]["tear"] == {"fpr": [0.0, 0.0, 1.0], "tpr": [0.0, 0.5, 1.0]}


def test_report_is_utf8_under_an_ascii_locale(tmp_path):
    # ITK's DICOM writer, for one, leaves a process in the C locale, whose default text encoding is ASCII
    g, refs = _dataset(tmp_path / "raw")
    write_predictions(tmp_path / "pred", g, refs, (0.4, 0.4, 0.4, 0.8))
    saved = locale.setlocale(locale.LC_ALL)
    try:
        locale.setlocale(locale.LC_ALL, "C")
        assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "raw"), "--bootstrap", "0"]) == 0
    finally:
        locale.setlocale(locale.LC_ALL, saved)
    assert "\u2013" in (tmp_path / "pred" / "evaluation" / "report.html").read_bytes().decode("utf-8")


def _evaluate(tmp_path, capsys, provenance: bool = True, miss_b_in: str | None = None):
    """evaluate on the _dataset fixture; ``miss_b_in``: a case whose prediction lacks structure b (HD95 inf)."""
    g, refs = _dataset(tmp_path / "raw")
    pred_dir = tmp_path / "pred"
    write_predictions(pred_dir, g, refs, (0.1, 0.4, 0.35, 0.8))
    if miss_b_in is not None:
        from orthodiff_auto.data.image_io import read_image, write_image

        pred, _ = read_image(pred_dir / f"{miss_b_in}_ax.nii.gz", dtype=None)
        pred[pred == 2] = 0
        write_image(pred_dir / f"{miss_b_in}_ax.nii.gz", pred, g)
    if provenance:
        model = tmp_path / "model"
        model.mkdir()
        (model / "plans.json").write_text(json.dumps({"dataset_name": "KneeTrain"}))
        (pred_dir / "prediction_provenance.json").write_text(json.dumps({"runs": [
            {"model_folder": str(model), "model_sha256": "ab" * 32, "folds": [0, 2], "checkpoint": "best",
             "tta": True, "date": "2026-12-07T04:00:00+00:00"}]}))
    capsys.readouterr()
    assert main(["evaluate", str(pred_dir), str(tmp_path / "raw"), "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    page = _Page()
    page.feed((pred_dir / "evaluation" / "report.html").read_text(encoding="utf-8"))
    return json.loads((pred_dir / "evaluation" / "summary.json").read_text()), page, printed


def test_the_page_names_the_model_its_folds_and_the_datasets(tmp_path, capsys):
    _, page, _ = _evaluate(tmp_path, capsys)
    header = {row[0]: row[1] for row in page.tables[0]}
    assert header["model"] == f"{tmp_path / 'model'} (sha256 {'ab' * 6})"
    assert header["trained on"] == "KneeTrain" and header["folds"] == "0, 2"
    assert header["checkpoint"] == "best, with TTA"
    assert header["reference"] == f"{tmp_path / 'raw'} (dataset E)"


def test_without_provenance_the_page_says_the_model_is_not_recorded(tmp_path, capsys):
    _, page, _ = _evaluate(tmp_path, capsys, provenance=False)
    assert {row[0]: row[1] for row in page.tables[0]}["model"].startswith("not recorded")


def test_the_page_says_what_chance_is(tmp_path, capsys):
    _, _, printed = _evaluate(tmp_path, capsys)
    raw = (tmp_path / "pred" / "evaluation" / "report.html").read_text(encoding="utf-8")
    assert "AUROC 0.5 is chance" in raw and "AUROC 0.5 is chance" in printed


def test_a_missed_structure_gives_finite_hd95_summaries_on_page_and_command_line(tmp_path, capsys):
    summary, page, printed = _evaluate(tmp_path, capsys, miss_b_in="t1")
    assert summary["segmentation"]["overall"]["b"]["hd95"]["mean"] == "inf"  # what a plain mean would print
    structures = _table_with(page, "structure")
    assert structures["b"][6:9] == ["0.00", "0.00", "1"]  # median and mean of the 3 scans with b; 1 without
    assert "inf" not in " ".join(" ".join(r) for t in page.tables for r in t)
    b_line = next(line for line in printed.splitlines() if line.startswith("b "))
    assert b_line.split()[-2:] == ["0.00", "1"] and "inf" not in printed


def test_the_page_holds_the_command_lines_dice_cis(tmp_path, capsys):
    summary, page, printed = _evaluate(tmp_path, capsys)
    structures = _table_with(page, "structure")
    for name in ("a", "b", "mean"):
        low, high = summary["segmentation"]["dice_ci"][name]
        assert structures[name][2] == f"{number(low)}\u2013{number(high)}"
        line = next(line for line in printed.splitlines() if line.split()[0] == name)
        assert f"{number(low, 2)}-{number(high, 2)}" in line


def test_undefined_values_print_as_on_the_page(tmp_path, capsys):
    g, refs = _dataset(tmp_path / "raw")
    pred_dir = tmp_path / "pred"
    write_predictions(pred_dir, g, refs, (0.1, 0.4, 0.35, 0.8))
    (pred_dir / "thresholds.json").unlink()
    assert main(["evaluate", str(pred_dir), str(tmp_path / "raw"), "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    assert "nan" not in printed.lower()
    macro = next(line for line in printed.splitlines() if line.startswith("macro"))
    assert macro.split()[-1] == NOT_REPORTED  # no bootstrap: no CI, a dash as on the page
