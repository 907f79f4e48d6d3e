"""``orthodiff generate_synthetic`` and ``orthodiff render_montage`` on the command line."""

from __future__ import annotations

import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.dataset import load_raw_dataset


@pytest.fixture(scope="module")
def cli_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "raw"
    code = main(["generate_synthetic", str(out), "--cases", "2", "--test", "1", "--unlabeled", "1", "--size", "tiny",
                 "--seed", "3", "--sites", "A,siteB", "--prevalence", "acl_tear=1,mcl_tear=1,effusion=1",
                 "--complete"])
    assert code == 0
    return out


def test_generate_synthetic_cli_writes_a_dataset(cli_dataset, capsys):
    ds = load_raw_dataset(cli_dataset)
    assert ds.case_ids("train") == ["knee0001", "knee0002"]
    assert set(ds.findings["site"]) <= {"siteA", "siteB"}
    assert ds.findings["acl_tear"].tolist() == [1, 1] and ds.findings["effusion"].tolist() == [1, 1]
    assert len(ds.select("unlabeled")) == 3 and len(ds.select("test")) == 3  # --complete
    assert set(ds.findings["field_strength"]) <= {"3.0", "1.5"}


@pytest.mark.parametrize("args, message", [
    (["--size", "huge"], "unknown --size 'huge'"),
    (["--cases", "-3"], "--cases must be a non-negative integer"),
    (["--unlabeled", "-1"], "--unlabeled must be a non-negative integer"),
    (["--prevalence", "broken_leg=0.3"], "unknown finding 'broken_leg'"),
    (["--prevalence", "acl_tear=2"], "must lie in [0, 1]"),
    (["--prevalence", "acl_tear"], "expected finding=probability"),
    (["--prevalence", "acl_tear=lots"], "is not a number"),
    (["--sites", "A,Q"], "unknown site 'Q'"),
    (["-np", "0"], "-np must be at least 1"),
])
def test_generate_synthetic_bad_arguments_exit_2(tmp_path, capsys, args, message):
    code = main(["generate_synthetic", str(tmp_path / "out"), "--size", "tiny", "--cases", "1"] + args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.startswith("error: ")


def test_generate_synthetic_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "data.txt").write_text("keep me")
    assert main(["generate_synthetic", str(tmp_path), "--size", "tiny", "--cases", "1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "data.txt").read_text() == "keep me"


def test_render_montage(cli_dataset, tmp_path, capsys):
    out = tmp_path / "montage.png"
    assert main(["render_montage", str(cli_dataset), "knee0001", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 300_000
    assert main(["render_montage", str(cli_dataset), "unl0001", str(tmp_path / "u.png"), "--subset", "unlabeled"]) == 0
    assert (tmp_path / "u.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["nope0001"], "no case 'nope0001'"),
    (["knee0001", "--subset", "test"], "no case 'knee0001' in subset 'test'"),
])
def test_render_montage_unknown_case_exits_2(cli_dataset, tmp_path, capsys, args, message):
    code = main(["render_montage", str(cli_dataset), args[0], str(tmp_path / "m.png")] + args[1:])
    assert code == 2 and message in capsys.readouterr().err



def test_generate_synthetic_cli_standard_size_is_diagnostic_resolution(tmp_path):
    """``--size standard``: about 1 mm in-plane, 3.5-4.5 mm slices, a knee's 140-160 mm field of view and
    110-125 mm coverage; each site its own protocol (the grids of one case per site, without rendering)."""
    import SimpleITK as sitk

    from orthodiff_auto.synthetic import sample_case

    out = tmp_path / "raw"
    assert main(["generate_synthetic", str(out), "--size", "standard", "--cases", "1", "--sites", "A"]) == 0
    image = sitk.ReadImage(str(out / "imagesTr" / "knee0001_sag.nii.gz"))
    assert image.GetSpacing()[2] == 4.0 and 0.85 <= image.GetSpacing()[0] <= 1.0
    for site, thickness in (("siteA", 4.0), ("siteB", 4.5), ("siteC", 3.5)):
        for g in sample_case(0, 0, size="standard", sites=[site]).geometries.values():
            slice_mm, row_mm, column_mm = g.spacing
            assert row_mm == column_mm and 0.85 <= row_mm <= 1.15 and slice_mm == thickness
            assert 140.0 <= row_mm * g.shape[1] <= 160.0 and 108.0 <= slice_mm * g.shape[0] <= 126.0
