import json

import numpy as np
import pytest

from orthodiff_auto.data.dataset import load_raw_dataset, parse_scan_name, read_description
from orthodiff_auto.data.image_io import write_image
from orthodiff_auto.errors import DatasetError
from tests.conftest import sphere_scan, view_geometry


def test_native_dataset_indexed(make_native_dataset):
    root = make_native_dataset(test_cases=("t001",), unlabeled_cases=("u001",))
    ds = load_raw_dataset(root)
    assert ds.description.labels == {"background": 0, "bone": 1, "cartilage": 2}
    assert ds.description.findings == ("tear", "effusion")
    assert ds.case_ids("train") == ["c001", "c002", "c003", "c004"]
    assert len(ds.select("train", "sag", labelled=True)) == 4
    assert ds.case_ids("test") == ["t001"] and ds.case_ids("unlabeled") == ["u001"]
    assert all(s.label is None for s in ds.select("unlabeled"))
    assert ds.views_present() == ["sag", "cor", "ax"]


def test_findings_columns_follow_dataset_json_not_csv(make_native_dataset):
    root = make_native_dataset()
    # Reverse the CSV's column order; the table must still come in dataset.json's order.
    lines = (root / "findings.csv").read_text().splitlines()
    rows = [ln.split(",") for ln in lines]
    (root / "findings.csv").write_text("\n".join(",".join([r[0], r[2], r[1], r[3]]) for r in rows) + "\n")
    ds = load_raw_dataset(root)
    assert list(ds.findings.columns[:2]) == ["tear", "effusion"]
    assert ds.findings.loc["c002", "tear"] == 1 and ds.findings.loc["c002", "effusion"] == 0
    assert list(ds.findings["site"]) == ["site0", "site1", "site0", "site1"]


@pytest.mark.parametrize(
    "name, expected",
    [("knee_01_sag.nii.gz", ("knee_01", "sag")), ("A-1.2_ax.nii.gz", ("A-1.2", "ax")), ("x_weird.nii.gz", ("x", "weird"))],
)
def test_parse_scan_name(name, expected):
    assert parse_scan_name(name, ".nii.gz") == expected


@pytest.mark.parametrize("name", ["nounderscore.nii.gz", "_sag.nii.gz", "bad case_sag.nii.gz", "c1_sag.nii"])
def test_parse_scan_name_rejects(name):
    with pytest.raises(ValueError):
        parse_scan_name(name, ".nii.gz")


def _nnunet_dataset(root, direction_view="cor"):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    json.dump({"channel_names": {"0": "MRI"}, "labels": {"background": 0, "meniscus": 1, "ignore": 3},
               "numTraining": 2, "file_ending": ".nii.gz"}, open(root / "dataset.json", "w"))
    rng = np.random.default_rng(1)
    for case in ("case_000", "case_001"):
        g = view_geometry(direction_view)
        image, label = sphere_scan(g.shape, rng, n_labels=1)
        write_image(root / "imagesTr" / f"{case}_0000.nii.gz", image, g)
        write_image(root / "labelsTr" / f"{case}.nii.gz", label, g)
    return root


def test_nnunet_v2_format_is_single_view_segmentation_dataset(tmp_path):
    ds = load_raw_dataset(_nnunet_dataset(tmp_path / "nn", "cor"))
    d = ds.description
    assert d.source_format == "nnunetv2" and d.findings == () and d.ignore_label == 3
    assert d.labels == {"background": 0, "meniscus": 1}
    assert [(s.case_id, s.view) for s in ds.scans] == [("case_000", "cor"), ("case_001", "cor")]
    assert all(s.label is not None and s.label.name == f"{s.case_id}.nii.gz" for s in ds.scans)
    assert ds.findings is None


def test_nnunet_multichannel_refused(tmp_path):
    root = _nnunet_dataset(tmp_path / "nn")
    g = view_geometry("cor")
    write_image(root / "imagesTr" / "case_000_0001.nii.gz", np.zeros(g.shape, np.float32), g)
    with pytest.raises(DatasetError, match="case_000_0001.nii.gz.*single-channel"):
        load_raw_dataset(root)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"views": ["sag", "oblique"], "labels": {"background": 0}}', "unknown views"),
        ('{"labels": {"background": 0, "a": -1}}', "non-negative integer"),
        ('{"labels": {"a": 1}}', "background"),
        ('{"labels": {"background": 0, "a": 1, "b": 1}}', "share a value"),
        ('{"labels": {"background": 0, "a": 1}, "ignore_label": 1}', "also a class value"),
        ('{"labels": {"background": 0, "a": [1, 2]}}', "region-based"),
        ('{"labels": {"background": 0}, "findings": ["x", "x"]}', "duplicates"),
    ],
)
def test_bad_dataset_json(tmp_path, content, message):
    (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(DatasetError, match=message) as e:
        read_description(tmp_path)
    assert "dataset.json" in str(e.value)
