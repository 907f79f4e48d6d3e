"""An output folder belongs to one model; nothing to predict is refused before a folder is made; the log says
what each case got (issue 27, items 2, 3 and 8; random-weight model of conftest.model_dir: sag and cor
segmentation, no classifier)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import write_image
from orthodiff_auto.inference.provenance import PROVENANCE_JSON, model_folder_digest
from orthodiff_auto.training.checkpoint import save_checkpoint
from tests.conftest import sphere_scan, view_geometry


def _scan(folder: Path, name: str, view: str = "sag", seed: int = 0) -> None:
    g = view_geometry(view, shape=(7, 30, 26), spacing=(3.3, 0.9, 1.1))
    write_image(folder / name, sphere_scan(g.shape, np.random.default_rng(seed))[0], g)


def _predict(inp: Path, out: Path, model: Path, *options: str) -> int:
    return main(["predict_folder", str(inp), str(out), "--model", str(model), *options])


def _other_model(model_dir: Path, where: Path) -> Path:
    """The same model folder with other weights in one fold: another model by its digest."""
    shutil.copytree(model_dir, where)
    path = where / "seg" / "sag" / "fold_0.pt"
    payload = torch.load(path, weights_only=True)
    first = next(k for k, v in payload["model"].items() if v.is_floating_point())
    payload["model"][first] = payload["model"][first] + 0.5
    save_checkpoint(path, payload)
    return where


def test_a_second_model_is_refused_and_the_first_models_outputs_stay(model_dir, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    _scan(inp, "a_sag.nii.gz")
    assert _predict(inp, out, model_dir) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    other = _other_model(model_dir, tmp_path / "other")
    capsys.readouterr()
    assert _predict(inp, out, other) == 2
    err = capsys.readouterr().err
    assert f"{out}: holds the predictions of another model ({model_dir.resolve()}" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing written, nothing mixed


def test_overwrite_replaces_every_output_of_the_other_model(model_dir, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    _scan(inp, "a_sag.nii.gz")
    _scan(inp, "b_cor.nii.gz", view="cor")
    assert _predict(inp, out, model_dir, "--qc", "--save-probabilities") == 0
    (out / "evaluation").mkdir()
    (out / "evaluation" / "report.html").write_text("<html>the first model's scores</html>")
    (out / "notes.txt").write_text("the user's own file")
    (inp / "b_cor.nii.gz").unlink()  # the second run predicts a only: b's outputs are the first model's
    other = _other_model(model_dir, tmp_path / "other")
    assert _predict(inp, out, other, "--overwrite") == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.name.startswith("."))
    assert names == ["a_sag.nii.gz", "notes.txt", PROVENANCE_JSON]
    runs = json.loads((out / PROVENANCE_JSON).read_text())["runs"]
    assert [r["model_sha256"] for r in runs] == [model_folder_digest(other)[0]]
    assert "removed" in capsys.readouterr().out


def test_the_same_model_again_resumes_as_before(model_dir, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    _scan(inp, "a_sag.nii.gz")
    assert _predict(inp, out, model_dir) == 0
    copy = tmp_path / "copy"  # the same content in another folder is the same model
    shutil.copytree(model_dir, copy)
    assert _predict(inp, out, copy) == 0
    assert "0 predicted, 1 already done, 0 failed" in capsys.readouterr().out


def test_nothing_to_predict_is_exit_2_with_a_hint_and_no_folder(model_dir, tmp_path, capsys):
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    (empty / "notes.txt").write_text("no scans here")
    assert _predict(empty, out, model_dir) == 2
    err = capsys.readouterr().err
    assert f"{empty}: nothing to predict" in err and "<case>_<view>.nii.gz" in err and "--dicom" in err
    assert not out.exists()


def test_a_dataset_root_is_refused_naming_its_scan_folder(model_dir, make_native_dataset, tmp_path, capsys):
    raw = make_native_dataset(views=("sag",), test_cases=("t1",))
    out = tmp_path / "out"
    assert _predict(raw, out, model_dir) == 2
    err = capsys.readouterr().err
    assert "is a dataset root" in err and str(raw / "imagesTs") in err
    assert not out.exists()
    (raw / "dataset.json").unlink()  # its scan folders say it as well
    assert _predict(raw, out, model_dir) == 2
    assert "is a dataset root (it holds imagesTs)" in capsys.readouterr().err and not out.exists()


def test_a_failed_start_leaves_no_folder(model_dir, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out" / "nested"
    _scan(inp, "a_sag.nii.gz")
    assert _predict(inp, out, tmp_path / "no_model") == 2
    assert not out.exists() and not out.parent.exists()


def test_the_log_says_what_each_case_got_from_a_partial_model(model_dir, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    for view in ("sag", "cor", "ax"):
        _scan(inp, f"k1_{view}.nii.gz", view=view)
    assert _predict(inp, out, model_dir) == 0
    printed = capsys.readouterr().out
    assert "model: segments sag, cor; no findings classifier (no findings.csv is written)" in printed
    assert ("predicted k1: segmented sag, cor; not segmented ax (the model has no segmentation of this view); "
            "no findings (the model has no classifier)") in printed
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["k1_cor.nii.gz", "k1_sag.nii.gz"]
    assert not (out / "findings.csv").exists()


def test_a_start_that_fails_inside_the_folder_removes_the_folder_it_made(model_dir, tmp_path, monkeypatch):
    import errno

    from orthodiff_auto.inference import folder

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "prediction_provenance.json")

    monkeypatch.setattr(folder, "record_prediction_run", full_disk)
    inp, out = tmp_path / "in", tmp_path / "out"
    _scan(inp, "a_sag.nii.gz")
    assert _predict(inp, out, model_dir) == 2
    assert not out.exists()
    out.mkdir()  # a folder that was there before is left as it was
    (out / "notes.txt").write_text("mine")
    assert _predict(inp, out, model_dir) == 2
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["notes.txt"]
