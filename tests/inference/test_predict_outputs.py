"""predict_folder's outputs for reuse and tracing: probabilities, the checkpoint and sliding-window step asked
for, the progress shown, the provenance file, nnU-Net's input naming (random-weight model, conftest.model_dir)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_geometry, read_image, write_image
from orthodiff_auto.inference.model_dir import ModelDescription
from orthodiff_auto.inference.predictor import Predictor
from orthodiff_auto.inference.probabilities import read_probabilities
from orthodiff_auto.inference.provenance import PROVENANCE_JSON, model_folder_digest
from orthodiff_auto.pipeline import model_selection
from orthodiff_auto.segmentation import prediction
from tests.conftest import sphere_scan, view_geometry


def _scan(folder: Path, name: str, view: str = "sag", shape=(7, 30, 26), seed=0):
    g = view_geometry(view, shape=shape, spacing=(3.3, 0.9, 1.1), origin=(3.0, -2.0, 5.5))
    image, _ = sphere_scan(shape, np.random.default_rng(seed))
    write_image(folder / name, image, g)
    return g


def _predict(inp: Path, out: Path, model: Path, *options: str) -> int:
    return main(["predict_folder", str(inp), str(out), "--model", str(model), *options])


# ---------------------------------------------------------------- --save-probabilities

def test_probabilities_are_in_the_input_geometry_and_give_the_segmentation(model_dir, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    g = _scan(inp, "p1_sag.nii.gz")
    assert _predict(inp, out, model_dir, "--save-probabilities") == 0
    probs, meta = read_probabilities(out / "p1_sag.json")
    assert probs.dtype == np.float16 and probs.shape == (3, *g.shape)
    np.testing.assert_allclose(probs.astype(np.float32).sum(axis=0), 1.0, atol=5e-3)
    labels, _ = read_image(out / "p1_sag.nii.gz", dtype=None)
    values = [c["label_value"] for c in meta["channels"]]
    agree = np.asarray(values)[np.argmax(probs, axis=0)] == labels
    assert agree.mean() > 0.999  # float16 rounding may flip a near-tie
    assert [c["label_name"] for c in meta["channels"]] == ["background", "a", "b"] and values == [0, 1, 2]
    assert meta["axes"] == ["channel", "z", "y", "x"] and meta["segmentation"] == "p1_sag.nii.gz"
    # a channel becomes an image on the input's grid with SimpleITK's own setters, as the description says
    reference = sitk.ReadImage(str(inp / "p1_sag.nii.gz"))
    channel = sitk.GetImageFromArray(probs[1].astype(np.float32))
    channel.SetSpacing(meta["spacing"])
    channel.SetOrigin(meta["origin"])
    channel.SetDirection(meta["direction"])
    assert channel.GetSize() == reference.GetSize()
    assert np.allclose(channel.GetSpacing(), reference.GetSpacing())
    assert np.allclose(channel.GetOrigin(), reference.GetOrigin())
    assert np.allclose(channel.GetDirection(), reference.GetDirection())


def test_probabilities_count_as_outputs_of_a_case(model_dir, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    _scan(inp, "a_sag.nii.gz")
    assert _predict(inp, out, model_dir) == 0
    assert not (out / "a_sag.npz").exists()
    # asked for later, the probabilities are missing: the case is predicted again
    assert _predict(inp, out, model_dir, "--save-probabilities") == 0
    assert "1 predicted, 0 already done" in capsys.readouterr().out
    assert (out / "a_sag.npz").is_file() and (out / "a_sag.json").is_file()
    assert _predict(inp, out, model_dir, "--save-probabilities") == 0
    assert "0 predicted, 1 already done" in capsys.readouterr().out


# ---------------------------------------------------------------- --checkpoint

def test_checkpoint_best_missing_is_refused_naming_the_file(model_dir, tmp_path, capsys):
    inp = tmp_path / "in"
    _scan(inp, "a_sag.nii.gz")
    assert _predict(inp, tmp_path / "out", model_dir, "--checkpoint", "best") == 2
    err = capsys.readouterr().err
    assert "fold_0_best.pt" in err and "no best checkpoint" in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_checkpoint_best_reads_the_best_files(model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    for view in ("sag", "cor"):  # both folds' best = fold 0's final weights
        for fold in (0, 1):
            shutil.copy(model / f"seg/{view}/fold_0.pt", model / f"seg/{view}/fold_{fold}_best.pt")
    data = np.random.default_rng(1).normal(size=(1, 8, 40, 40)).astype(np.float32)

    def probabilities(predictor):
        return predictor.segmenters["sag"].probabilities(data, predictor.device, 0.5, None)

    best = probabilities(Predictor(model, device="cpu", checkpoint="best"))
    np.testing.assert_allclose(best, probabilities(Predictor(model, device="cpu", folds=[0])), atol=1e-6)
    assert not np.allclose(best, probabilities(Predictor(model, device="cpu")), atol=1e-4)


def test_model_selection_copies_the_best_checkpoint_beside_the_final_one(tmp_path):
    for fold, with_best in ((0, True), (1, False)):
        d = tmp_path / "results" / f"fold_{fold}"
        d.mkdir(parents=True)
        (d / "checkpoint_final.pt").write_bytes(b"final")
        if with_best:
            (d / "checkpoint_best.pt").write_bytes(b"best")
    dirs = [str(tmp_path / "results" / f"fold_{k}") for k in (0, 1)]
    listed = model_selection._copy_folds(dirs, tmp_path / "model", "seg/sag", with_best=True)
    assert listed == ["seg/sag/fold_0.pt", "seg/sag/fold_1.pt"]  # model.json lists the final ones
    assert (tmp_path / "model/seg/sag/fold_0_best.pt").read_bytes() == b"best"
    assert not (tmp_path / "model/seg/sag/fold_1_best.pt").exists()  # training wrote none: nothing to copy
    model_selection._copy_folds(dirs, tmp_path / "cls_model", "cls/sag/scratch")
    assert not list((tmp_path / "cls_model").rglob("*_best.pt"))


# ---------------------------------------------------------------- --step-size

def test_step_size_reaches_the_sliding_window(model_dir, tmp_path, monkeypatch):
    seen = []
    original = prediction.sliding_window_predict
    monkeypatch.setattr(prediction, "sliding_window_predict",
                        lambda *a, **k: seen.append(k["overlap"]) or original(*a, **k))
    inp = tmp_path / "in"
    _scan(inp, "a_sag.nii.gz")
    assert _predict(inp, tmp_path / "out", model_dir, "--step-size", "0.25") == 0
    assert seen and all(o == pytest.approx(0.75) for o in seen)


@pytest.mark.parametrize("step", ["0", "1.5", "-0.5"])
def test_step_size_outside_0_1_is_refused(model_dir, tmp_path, capsys, step):
    inp = tmp_path / "in"
    _scan(inp, "a_sag.nii.gz")
    assert _predict(inp, tmp_path / "out", model_dir, "--step-size", step) == 2
    assert "step size" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- progress over cases

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_per_case_and_a_bar_only_on_a_terminal(model_dir, tmp_path, capsys, monkeypatch):
    inp = tmp_path / "in"
    _scan(inp, "a_sag.nii.gz")
    _scan(inp, "b_cor.nii.gz", view="cor")
    assert _predict(inp, tmp_path / "out1", model_dir) == 0
    captured = capsys.readouterr()
    assert "predicted a: segmented sag; no findings (the model has no classifier) [1/2]" in captured.out
    assert "predicted b: segmented cor; no findings (the model has no classifier) [2/2]" in captured.out
    assert "cases:" not in captured.err  # not a terminal: no bar
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert _predict(inp, tmp_path / "out2", model_dir) == 0
    assert "cases: 100%" in terminal.getvalue() and "2/2" in terminal.getvalue()
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert _predict(inp, tmp_path / "out3", model_dir, "--no-progress-bar") == 0
    assert "cases:" not in terminal.getvalue()


# ---------------------------------------------------------------- prediction_provenance.json

def test_provenance_names_the_model_its_hash_and_the_settings(model_dir, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _scan(inp, "a_sag.nii.gz")
    assert _predict(inp, out, model_dir, "--step-size", "0.4", "--folds", "1", "--device", "cpu") == 0
    record = json.loads((out / PROVENANCE_JSON).read_text())["runs"][-1]
    digest, files = model_folder_digest(model_dir)
    assert record["model_folder"] == str(model_dir.resolve()) and record["model_sha256"] == digest
    assert set(record["model_files"]) == {"model.json", "plans.json", "seg/sag/fold_0.pt", "seg/sag/fold_1.pt",
                                          "seg/cor/fold_0.pt", "seg/cor/fold_1.pt"}
    assert record["folds"] == [1] and record["checkpoint"] == "final" and record["tta"] is False
    assert record["step_size"] == pytest.approx(0.4) and record["device"] == "cpu"
    import torch

    from orthodiff_auto import __version__
    assert record["orthodiff_auto_version"] == __version__ and record["torch_version"] == torch.__version__
    assert record["date"].endswith("+00:00")
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    # a rerun adds its own record (its skipped cases keep the first run's outputs), all folds by default
    assert _predict(inp, out, model_dir, "--tta") == 0
    runs = json.loads((out / PROVENANCE_JSON).read_text())["runs"]
    assert len(runs) == 2 and runs[1]["folds"] == [0, 1] and runs[1]["tta"] is True


def test_model_hash_changes_with_any_file(model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    before, _ = model_folder_digest(model)
    assert model_folder_digest(model)[0] == before  # a pure function of the content
    description = ModelDescription.load(model)
    description.save(model)  # same content rewritten: same hash
    assert model_folder_digest(model)[0] == before
    (model / "seg/sag/fold_1.pt").rename(model / "seg/sag/fold_2.pt")
    assert model_folder_digest(model)[0] != before


# ---------------------------------------------------------------- nnU-Net naming

def test_nnunet_channel_suffix_is_accepted_and_dropped_from_the_outputs(model_dir, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    g = _scan(inp, "n1_0000.nii.gz", view="cor")  # case n1, view from the header
    _scan(inp, "n2_sag_0000.nii.gz")  # case n2, view from the name
    _scan(inp, "n3_0001.nii.gz")  # a second channel: our models read one
    assert _predict(inp, out, model_dir) == 1
    captured = capsys.readouterr()
    assert "n3_0001.nii.gz" in captured.err and "channel 0001" in captured.err
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["n1.nii.gz", "n2_sag.nii.gz"]
    assert read_geometry(out / "n1.nii.gz").shape == g.shape
    assert "predicted n1: segmented cor" in captured.out and "predicted n2: segmented sag" in captured.out
