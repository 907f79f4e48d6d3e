"""Every validation error the issue lists, each with the file it names and its message."""

import json

import numpy as np
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import ImageGeometry, read_image, write_image
from orthodiff_auto.data.validation import validate_dataset
from tests.conftest import VIEW_DIRECTIONS, view_geometry


def _rewrite(path, fn_array=None, geometry=None, dtype=None):
    a, g = read_image(path, dtype=None)
    if fn_array is not None:
        a = fn_array(a)
    if dtype is not None:
        a = a.astype(dtype)
    write_image(path, a, geometry or ImageGeometry(a.shape, g.spacing, g.origin, g.direction))


def unreadable(root):
    (root / "imagesTr/c001_sag.nii.gz").write_bytes(b"garbage")
    return "imagesTr/c001_sag.nii.gz", "cannot read image"


def not_3d(root):
    import SimpleITK as sitk
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.float32)), str(root / "imagesTr/c001_cor.nii.gz"))
    return "imagesTr/c001_cor.nii.gz", "expected a 3D image"


def size_mismatch(root):
    _rewrite(root / "labelsTr/c002_ax.nii.gz", lambda a: a[:-1])
    return "labelsTr/c002_ax.nii.gz", "shape"


def spacing_mismatch(root):
    _rewrite(root / "labelsTr/c002_ax.nii.gz", geometry=view_geometry("ax", spacing=(3.0, 0.6, 0.5)))
    return "labelsTr/c002_ax.nii.gz", "spacing"


def origin_mismatch(root):
    _rewrite(root / "labelsTr/c003_ax.nii.gz", geometry=view_geometry("ax", origin=(5.0, 0.0, 0.0)))
    return "labelsTr/c003_ax.nii.gz", "origin"


def direction_mismatch(root):
    d = np.asarray(VIEW_DIRECTIONS["ax"]).reshape(3, 3) @ np.array([[1, 0, 0], [0, 0.8, -0.6], [0, 0.6, 0.8]])
    g = view_geometry("ax")
    _rewrite(root / "labelsTr/c003_ax.nii.gz", geometry=ImageGeometry(g.shape, g.spacing, g.origin, tuple(d.ravel())))
    return "labelsTr/c003_ax.nii.gz", "direction"


def undeclared_label(root):
    _rewrite(root / "labelsTr/c004_sag.nii.gz", lambda a: np.where(a == 2, 7, a))
    return "labelsTr/c004_sag.nii.gz", r"label values \[7\] are not declared"


def non_integer_label(root):
    _rewrite(root / "labelsTr/c004_sag.nii.gz", lambda a: a.astype(np.float32) * 0.5)
    return "labelsTr/c004_sag.nii.gz", "non-integer"


# SimpleITK's NIfTI reader turns NaN/Inf into 0 by itself; formats such as MHA keep them, so the
# non-finite tests use a dataset whose file_ending is .mha.
def nan_voxels(root):
    _rewrite(root / "imagesTr/c002_cor.mha", lambda a: np.where(np.arange(a.size).reshape(a.shape) < 3, np.nan, a))
    return "imagesTr/c002_cor.mha", "3 NaN/Inf voxels"


def inf_voxels(root):
    _rewrite(root / "imagesTr/c002_cor.mha", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.inf, a))
    return "imagesTr/c002_cor.mha", "1 NaN/Inf voxels"


def malformed_case_id(root):
    (root / "imagesTr/c001_sag.nii.gz").rename(root / "imagesTr/c 001_sag.nii.gz")
    return "imagesTr/c 001_sag.nii.gz", "malformed case id"


def duplicate_case_id(root):
    (root / "unlabeled").mkdir()
    g = view_geometry("sag")
    write_image(root / "unlabeled/c001_sag.nii.gz", np.ones(g.shape, np.float32), g)
    return "unlabeled/c001_sag.nii.gz", "duplicate case id 'c001': already used in train"


def duplicate_case_row(root):
    with open(root / "findings.csv", "a") as f:
        f.write("c001,1,1,site0\n")
    return "findings.csv", r"duplicate case ids \['c001'\]"


def view_disagrees_with_header(root):
    # a coronal acquisition saved under a sagittal name
    _rewrite(root / "imagesTr/c003_sag.nii.gz", geometry=view_geometry("cor"))
    _rewrite(root / "labelsTr/c003_sag.nii.gz", geometry=view_geometry("cor"))
    return "imagesTr/c003_sag.nii.gz", "header orientation says 'cor'"


def findings_missing_case(root):
    lines = (root / "findings.csv").read_text().splitlines()
    (root / "findings.csv").write_text("\n".join(ln for ln in lines if not ln.startswith("c002")) + "\n")
    return "findings.csv", r"no row for cases \['c002'\]"


def findings_extra_case(root):
    with open(root / "findings.csv", "a") as f:
        f.write("c999,0,0,site0\n")
    return "findings.csv", r"rows for cases without images \['c999'\]"


def findings_unknown_column(root):
    lines = (root / "findings.csv").read_text().splitlines()
    (root / "findings.csv").write_text("\n".join(ln + ",0" if i else ln + ",bogus" for i, ln in enumerate(lines)) + "\n")
    return "findings.csv", r"unknown columns \['bogus'\]"


def findings_missing_column(root):
    lines = (root / "findings.csv").read_text().splitlines()
    (root / "findings.csv").write_text("\n".join(",".join(ln.split(",")[:2] + ln.split(",")[3:]) for ln in lines) + "\n")
    return "findings.csv", r"missing finding columns \['effusion'\]"


def findings_bad_value(root):
    text = (root / "findings.csv").read_text().replace("c003,0", "c003,2")
    (root / "findings.csv").write_text(text)
    return "findings.csv", "must be 0 or 1"


def findings_file_missing(root):
    (root / "findings.csv").unlink()
    return "findings.csv", "missing"


def unknown_view(root):
    (root / "imagesTr/c001_sag.nii.gz").rename(root / "imagesTr/c001_obl.nii.gz")
    (root / "labelsTr/c001_sag.nii.gz").unlink()
    return "imagesTr/c001_obl.nii.gz", "unknown view 'obl'"


def label_without_image(root):
    (root / "imagesTr/c001_ax.nii.gz").unlink()
    return "labelsTr/c001_ax.nii.gz", "label without an image"


def empty_dataset(root):
    for p in list((root / "imagesTr").iterdir()) + list((root / "labelsTr").iterdir()):
        p.unlink()
    (root / "findings.csv").unlink()
    return "imagesTr", "empty dataset"


def missing_dataset_json(root):
    (root / "dataset.json").unlink()
    return "dataset.json", "missing"


CORRUPTIONS = [unreadable, not_3d, size_mismatch, spacing_mismatch, origin_mismatch, direction_mismatch,
               undeclared_label, non_integer_label, nan_voxels, inf_voxels, malformed_case_id, duplicate_case_id,
               duplicate_case_row, view_disagrees_with_header, findings_missing_case, findings_extra_case,
               findings_unknown_column, findings_missing_column, findings_bad_value, findings_file_missing,
               unknown_view, label_without_image, empty_dataset, missing_dataset_json]


def test_valid_dataset_passes_with_summary(make_native_dataset, capsys):
    root = make_native_dataset(test_cases=("t001",), unlabeled_cases=("u001", "u002"))
    report = validate_dataset(root)
    assert report.ok, report.problems_text()
    assert main(["validate_dataset", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 4 cases" in out and "unlabeled: 2 cases" in out and "test: 1 cases" in out
    assert "tear 50%" in out and "3.00x0.50x0.50" in out
    assert "sagittal" in out and "site0 (2)" in out


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_each_problem_is_reported_with_its_file(make_native_dataset, corrupt, capsys):
    root = make_native_dataset(file_ending=".mha" if corrupt in (nan_voxels, inf_voxels) else ".nii.gz")
    relpath, message = corrupt(root)
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    report = validate_dataset(root)
    assert not report.ok
    matching = [p for p in report.problems if str(p.path).endswith(relpath)]
    assert matching, f"no problem names {relpath}: {report.problems}"
    import re
    assert any(re.search(message, p.message) for p in matching), matching
    # the command: exit 2, the file and its problem on stderr, nothing changed on disk
    assert main(["validate_dataset", str(root)]) == 2
    err = capsys.readouterr().err
    assert relpath.split("/")[-1] in err
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_all_problems_reported_at_once(make_native_dataset):
    root = make_native_dataset()
    corruptions = [unreadable, undeclared_label, view_disagrees_with_header, findings_bad_value, label_without_image]
    expected = [c(root)[0] for c in corruptions]
    report = validate_dataset(root)
    for rel in expected:
        assert any(str(p.path).endswith(rel) for p in report.problems), rel


def test_missing_folder_is_exit_2(tmp_path, capsys):
    assert main(["validate_dataset", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_nnunet_dataset_validates(tmp_path):
    from tests.data.test_dataset import _nnunet_dataset

    report = validate_dataset(_nnunet_dataset(tmp_path / "nn"))
    assert report.ok, report.problems_text()
    assert "nnunetv2 format" in report.summary_text()
