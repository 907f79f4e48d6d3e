"""``predict_folder --dicom``: a folder of DICOM studies, one case per study, through the same Predictor path as
image files (the same segmentations and findings as the series converted to NIfTI)."""

import numpy as np
import pandas as pd
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.dicom import find_studies, read_series
from orthodiff_auto.data.image_io import read_image, write_image
from tests.data.dicom_studies import write_series


def _write_study(folder, study_uid, views, seed):
    from tests.inference.conftest import gapped_scan

    for n, view in enumerate(views):
        image, _, g = gapped_scan(view, seed + n)
        write_series(folder / f"series_{n}", image, g, study_uid, f"{study_uid}.{n + 1}", f"{view} PD")


@pytest.mark.slow
def test_study_predicted_as_one_case_like_its_series_as_images(trained_model, tmp_path):
    studies, out = tmp_path / "studies", tmp_path / "out"
    _write_study(studies / "patient7", "2.25.7", ("sag", "cor", "ax"), seed=40)  # the model reads sag and cor
    assert main(["predict_folder", str(studies), str(out), "--model", str(trained_model), "--dicom"]) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["patient7_cor.nii.gz", "patient7_sag.nii.gz"]
    # the same series as NIfTI files, predicted the usual way
    images, expected = tmp_path / "images", tmp_path / "expected"
    (study,) = find_studies(studies, ("sag", "cor"))
    for view, series in study.series.items():
        write_image(images / f"patient7_{view}.nii.gz", *read_series(series))
    assert main(["predict_folder", str(images), str(expected), "--model", str(trained_model)]) == 0
    for view in ("sag", "cor"):
        got, got_geometry = read_image(out / f"patient7_{view}.nii.gz", dtype=None)
        want, want_geometry = read_image(expected / f"patient7_{view}.nii.gz", dtype=None)
        np.testing.assert_array_equal(got, want)
        assert got_geometry.same_grid(want_geometry)
        assert len(np.unique(got)) > 1
    got = pd.read_csv(out / "findings.csv", dtype={"case_id": str})
    want = pd.read_csv(expected / "findings.csv", dtype={"case_id": str})
    # the same probabilities, calls and classifier; views are listed in input order (series or file names)
    pd.testing.assert_frame_equal(got.drop(columns="views"), want.drop(columns="views"))
    assert set(got.loc[0, "views"].split("+")) == set(want.loc[0, "views"].split("+")) == {"sag", "cor"}


@pytest.mark.slow
def test_ambiguous_study_exit_2_naming_the_series_then_chosen(trained_model, tmp_path, capsys):
    studies, out = tmp_path / "studies", tmp_path / "out"
    _write_study(studies / "p1", "2.25.9", ("sag", "cor", "sag"), seed=50)
    assert main(["predict_folder", str(studies), str(out), "--model", str(trained_model), "--dicom"]) == 2
    err = capsys.readouterr().err
    assert "2.25.9.1" in err and "2.25.9.3" in err and "--series-uid" in err
    assert not list(out.glob("*.nii.gz"))
    assert main(["predict_folder", str(studies), str(out), "--model", str(trained_model), "--dicom",
                 "--series-uid", "sag=2.25.9.3"]) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["p1_cor.nii.gz", "p1_sag.nii.gz"]


def test_series_uid_without_dicom_exit_2(tmp_path, capsys):
    assert main(["predict_folder", str(tmp_path), str(tmp_path / "out"), "--model", str(tmp_path / "m"),
                 "--series-uid", "sag=1.2"]) == 2
    assert "--dicom" in capsys.readouterr().err
