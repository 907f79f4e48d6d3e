"""report.html: self-contained (every figure embedded, no external reference), its tables hold summary.json's
numbers, and its ROC curves are drawn from points whose area is the reported AUROC (ties counted 1/2)."""

import base64
import json
import locale
from html.parser import HTMLParser

import numpy as np
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.evaluation.report_html import number
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
    assert structures["b"][4] == number(seg["b"]["hd95"]["mean"], 2)
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
