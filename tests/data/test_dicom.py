"""Study-level DICOM on generated multi-series studies: grouping by StudyInstanceUID, views from orientation,
--series-uid where a view is ambiguous, and convert_dicom into the raw dataset format."""

import json

import numpy as np
import pandas as pd
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.dicom import find_studies, parse_series_choices, read_series, view_from_orientation
from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.errors import UserInputError
from tests.conftest import view_geometry
from tests.data.dicom_studies import write_series

SHAPE, SPACING = (4, 10, 8), (3.0, 0.8, 0.7)


def _volume(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2000, SHAPE).astype(np.float32)


def _study(root, folder: str, study_uid: str, views, seed: int = 0, extra: dict | None = None) -> dict:
    """Series of ``views`` (sub-folders s_<view>) with UIDs <study>.<n>; ``extra``: sub-folder -> (view, uid) of
    further series. Returns {series uid: (view, volume)}."""
    written = {}
    for n, (name, view) in enumerate([(f"s_{v}", v) for v in views] + [(k, v[0]) for k, v in (extra or {}).items()]):
        uid = (extra or {}).get(name, (None, f"{study_uid}.{n + 1}"))[1]
        volume = _volume(seed + n)
        write_series(root / folder / name, volume, view_geometry(view, SHAPE, SPACING, origin=(n, -2.0, 5.0)),
                     study_uid, uid, description=f"{view} T2")
        written[uid] = (view, volume)
    return written


@pytest.mark.parametrize("orientation, view", [
    ((0, 1, 0, 0, 0, -1), "sag"), ((1, 0, 0, 0, 0, -1), "cor"), ((1, 0, 0, 0, 1, 0), "ax"),
    ((0.98, 0.17, 0, 0, 0, -1), "cor"),  # slightly oblique: the closest axis
])
def test_view_from_the_slice_normal(orientation, view):
    assert view_from_orientation(orientation) == view


def test_series_grouped_by_study_each_view_from_its_orientation(tmp_path):
    first = _study(tmp_path, "knee_a", "1.2.826.1", ("sag", "cor", "ax"))
    second = _study(tmp_path, "knee_b", "1.2.826.2", ("ax", "sag"), seed=10)
    write_series(tmp_path / "knee_a" / "loc", _volume(99), view_geometry("ax", SHAPE, SPACING), "1.2.826.1",
                 "1.2.826.1.99", image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    studies = find_studies(tmp_path, ("sag", "cor", "ax"))
    assert [s.case_id for s in studies] == ["knee_a", "knee_b"]
    assert [s.study_uid for s in studies] == ["1.2.826.1", "1.2.826.2"]
    for study, written in zip(studies, (first, second)):
        assert {v: s.series_uid for v, s in study.series.items()} == {view: uid for uid, (view, _) in written.items()}
        for view, series in study.series.items():
            volume, geometry = read_series(series)
            expected_view, expected = written[series.series_uid]
            np.testing.assert_array_equal(volume, expected)
            assert geometry.same_grid(view_geometry(expected_view, SHAPE, SPACING, origin=geometry.origin))
    assert [(s.series_uid, why) for s, why in studies[0].ignored] == [("1.2.826.1.99", "a localizer")]


def test_only_the_dataset_views_and_a_study_split_over_folders_is_named_by_its_uid(tmp_path):
    _study(tmp_path, "part1", "1.2.3", ("sag",))
    _study(tmp_path, "part2", "1.2.3", ("cor",), extra={"s_ax": ("ax", "1.2.3.9")})
    (study,) = find_studies(tmp_path, ("sag", "cor"))
    assert study.case_id == "1.2.3" and sorted(study.series) == ["cor", "sag"]
    assert [s.series_uid for s, _ in study.ignored] == ["1.2.3.9"]


def test_two_series_of_one_view_stop_with_both_named_until_one_is_chosen(tmp_path):
    _study(tmp_path, "s1", "7.7", ("sag", "cor"), extra={"s_sag2": ("sag", "7.7.42")})
    with pytest.raises(UserInputError) as e:
        find_studies(tmp_path, ("sag", "cor"))
    message = str(e.value)
    assert "7.7.1" in message and "7.7.42" in message and "--series-uid" in message
    (study,) = find_studies(tmp_path, ("sag", "cor"), parse_series_choices(["sag=7.7.42"]))
    assert study.series["sag"].series_uid == "7.7.42" and study.series["cor"].series_uid == "7.7.2"
    # a choice may also give a series another view than its orientation says
    (study,) = find_studies(tmp_path, ("sag", "cor", "ax"), parse_series_choices(["sag=7.7.1", "ax=7.7.42"]))
    assert {v: s.series_uid for v, s in study.series.items()} == {"sag": "7.7.1", "cor": "7.7.2", "ax": "7.7.42"}


@pytest.mark.parametrize("arguments", [["sag:1.2"], ["oblique=1.2"], ["sag="], ["sag=1.2", "cor=1.2"]])
def test_malformed_series_choices_are_refused(arguments):
    with pytest.raises(UserInputError, match="--series-uid"):
        parse_series_choices(arguments)


def test_convert_dicom_writes_the_raw_format_and_records_the_sources(tmp_path, capsys):
    studies, raw = tmp_path / "studies", tmp_path / "raw"
    written = _study(studies, "case 1", "5.5", ("sag", "cor", "ax"))
    raw.mkdir()
    json.dump({"name": "D", "labels": {"background": 0, "a": 1}, "views": ["sag", "ax"]},
              open(raw / "dataset.json", "w"))
    assert main(["convert_dicom", str(studies), str(raw)]) == 0
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == ["case_1_ax.nii.gz", "case_1_sag.nii.gz"]
    by_view = {view: volume for view, volume in written.values()}
    for view in ("sag", "ax"):
        image, geometry = read_image(raw / "imagesTr" / f"case_1_{view}.nii.gz")
        np.testing.assert_array_equal(image, by_view[view])
        assert geometry.same_grid(view_geometry(view, SHAPE, SPACING, origin=geometry.origin))
    sources = pd.read_csv(raw / "dicom_series.csv", dtype=str)
    assert sources[["case_id", "view", "series_uid"]].values.tolist() == [["case_1", "ax", "5.5.3"],
                                                                         ["case_1", "sag", "5.5.1"]]
    # a second run refuses to replace the images unless asked
    assert main(["convert_dicom", str(studies), str(raw)]) == 2
    assert "exist already" in capsys.readouterr().err
    assert main(["convert_dicom", str(studies), str(raw), "--subset", "test", "--views", "cor"]) == 0
    assert [p.name for p in (raw / "imagesTs").iterdir()] == ["case_1_cor.nii.gz"]
    assert len(pd.read_csv(raw / "dicom_series.csv")) == 3


def test_convert_dicom_ambiguous_study_exit_2_naming_the_series_and_nothing_written(tmp_path, capsys):
    studies, raw = tmp_path / "studies", tmp_path / "raw"
    _study(studies, "good", "3.1", ("sag",))
    _study(studies, "twice", "3.2", ("ax",), extra={"again": ("ax", "3.2.77")})
    assert main(["convert_dicom", str(studies), str(raw)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3.2.1" in err and "3.2.77" in err and "twice" in err
    assert not raw.exists()
    assert main(["convert_dicom", str(studies), str(raw), "--series-uid", "ax=3.2.77"]) == 0
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == ["good_sag.nii.gz", "twice_ax.nii.gz"]
    assert main(["convert_dicom", str(studies), str(raw), "--series-uid", "ax=9.9.9", "--overwrite"]) == 2
    assert "no series 9.9.9" in capsys.readouterr().err
