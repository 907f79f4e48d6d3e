"""predict_folder and the Predictor API: geometry, ensembling and skipping with a model folder of small
random-weight fold checkpoints; what the output holds with a trained model (tests/inference/conftest.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_geometry, read_image, write_image
from orthodiff_auto.inference.model_dir import ModelDescription
from orthodiff_auto.inference.folder import predict_folder
from orthodiff_auto.inference.predictor import Predictor, SegmentationEnsemble
from tests.conftest import sphere_scan, view_geometry


def _scan(folder: Path, name: str, view: str, shape=(7, 30, 26), origin=(3.0, -2.0, 5.5), seed=0):
    g = view_geometry(view, shape=shape, spacing=(3.3, 0.9, 1.1), origin=origin)
    image, _ = sphere_scan(shape, np.random.default_rng(seed))
    write_image(folder / name, image, g)
    return g


def test_output_geometry_equals_input_exactly(model_dir, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    g = _scan(inp, "p1_sag.nii.gz", "sag")
    # a plain file: view comes from the header (coronal here), case = file stem
    g2 = _scan(inp, "plain.nii.gz", "cor", shape=(5, 28, 33))
    assert main(["predict_folder", str(inp), str(out), "--model", str(model_dir)]) == 0
    for name, geom in (("p1_sag.nii.gz", g), ("plain.nii.gz", g2)):
        got = read_geometry(out / name)
        assert got.shape == geom.shape and got.spacing == pytest.approx(geom.spacing)
        assert got.origin == pytest.approx(geom.origin) and got.direction == pytest.approx(geom.direction)
        labels, _ = read_image(out / name, dtype=None)
        assert set(np.unique(labels)) <= {0, 1, 2}


def test_array_and_file_predictions_agree(model_dir, tmp_path):
    g = _scan(tmp_path, "x_cor.nii.gz", "cor", seed=3)
    predictor = Predictor(model_dir)
    from_file = predictor.predict_files("x", {"cor": tmp_path / "x_cor.nii.gz"}).segmentations["cor"]
    image, geometry = read_image(tmp_path / "x_cor.nii.gz")
    from_array = predictor.predict_case("x", {"cor": (image, geometry)}).segmentations["cor"]
    np.testing.assert_array_equal(from_file, from_array)
    assert from_array.shape == g.shape


def test_ensemble_averages_fold_probabilities(model_dir, tmp_path):
    description = ModelDescription.load(model_dir)
    paths = [model_dir / c for c in description.segmentation["sag"].checkpoints]
    device = torch.device("cpu")
    both = SegmentationEnsemble.load("sag", paths, device)
    singles = [SegmentationEnsemble.load("sag", [p], device) for p in paths]
    data = np.random.default_rng(1).normal(size=(1, 8, 40, 40)).astype(np.float32)
    p_both = both.probabilities(data, device, 0.5, None)
    p_each = [s.probabilities(data, device, 0.5, None) for s in singles]
    np.testing.assert_allclose(p_both, (p_each[0] + p_each[1]) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(p_each[0], p_each[1])
    # --folds picks a subset
    only0 = Predictor(model_dir, folds=[0])
    np.testing.assert_allclose(only0.segmenters["sag"].probabilities(data, device, 0.5, None), p_each[0], atol=1e-6)


def test_rerun_skips_finished_cases(model_dir, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    _scan(inp, "a_sag.nii.gz", "sag")
    _scan(inp, "b_cor.nii.gz", "cor")
    assert main(["predict_folder", str(inp), str(out), "--model", str(model_dir)]) == 0
    stamp = (out / "a_sag.nii.gz").stat().st_mtime_ns
    (out / "b_cor.nii.gz").unlink()
    assert main(["predict_folder", str(inp), str(out), "--model", str(model_dir)]) == 0
    assert "1 predicted, 1 already done, 0 failed" in capsys.readouterr().out
    assert (out / "a_sag.nii.gz").stat().st_mtime_ns == stamp and (out / "b_cor.nii.gz").is_file()


def test_corrupt_file_reported_others_written(model_dir, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    _scan(inp, "good_sag.nii.gz", "sag")
    (inp / "bad_cor.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    assert main(["predict_folder", str(inp), str(out), "--model", str(model_dir)]) == 1
    captured = capsys.readouterr()
    assert "bad_cor.nii.gz" in captured.err
    assert (out / "good_sag.nii.gz").is_file() and not (out / "bad_cor.nii.gz").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and "tmp" in p.name]


def test_a_case_failing_in_the_reader_thread_fails_alone_in_input_order(model_dir, tmp_path, monkeypatch):
    # cases are read and preprocessed one ahead in a thread and written one behind in another: a preprocessing
    # error still fails only its case, and the cases are reported in the input order
    inp, out = tmp_path / "in", tmp_path / "out"
    for i, name in enumerate(("a", "b", "c", "d")):
        _scan(inp, f"{name}_sag.nii.gz", "sag", seed=i)
    prepare = Predictor.prepare_case

    def failing_for_b(self, scans):
        if next(iter(scans.values()))[0].sum() == read_image(inp / "b_sag.nii.gz")[0].sum():
            raise ValueError("cannot preprocess b")
        return prepare(self, scans)

    monkeypatch.setattr(Predictor, "prepare_case", failing_for_b)
    lines = []
    report = predict_folder(inp, out, model_dir, log=lines.append)
    assert report.predicted == ["a", "c", "d"] and list(report.failed) == ["b"]
    cases = [line.split()[1].rstrip(":") for line in lines if line.startswith(("predicted", "FAILED"))]
    assert cases == ["a", "b", "c", "d"]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["a_sag.nii.gz", "c_sag.nii.gz", "d_sag.nii.gz"]


def test_the_export_is_nnunets_resampled_logits_for_one_fold(model_dir):
    # one fold: the label map comes from resampling its logits (nnU-Net's export), not its probabilities
    from orthodiff_auto.classification.inference import PreparedScan
    from orthodiff_auto.preprocessing.case import place_in_original
    from orthodiff_auto.preprocessing.resampling import resample_image
    from orthodiff_auto.segmentation.prediction import predict_logits

    description = ModelDescription.load(model_dir)
    device = torch.device("cpu")
    ensemble = SegmentationEnsemble.load("sag", [model_dir / description.segmentation["sag"].checkpoints[0]], device)
    image, _ = sphere_scan((7, 30, 26), np.random.default_rng(5))
    scan = PreparedScan.from_scan(image, view_geometry("sag", shape=(7, 30, 26), spacing=(3.3, 0.9, 1.1)),
                                  ensemble.plans.view("sag"))
    props, plan = scan.properties, ensemble.plans.view("sag").resampling
    logits = predict_logits(ensemble.models[0], scan.data, ensemble.patch_size, ensemble.plans.num_classes, device)
    back = resample_image(logits.numpy(), props.shape_after_cropping, props.spacing_after_resampling, props.spacing,
                          plan, order=plan.probabilities_order)
    expected = place_in_original(np.argmax(back, axis=0).astype(np.uint8), props)
    label_map, on_grid, _ = ensemble.segment_prepared(scan, device)
    np.testing.assert_array_equal(label_map, expected)  # label values 0, 1, 2 are the class indices here
    np.testing.assert_array_equal(on_grid, logits.argmax(0).numpy())


def test_not_a_model_folder_exit_2(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert main(["predict_folder", str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(tmp_path)]) == 2
    assert "model.json" in capsys.readouterr().err


# ---------------------------------------------------------------- with a trained model (tests/inference/conftest.py)

def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


@pytest.mark.slow
def test_trained_model_finds_ball_and_box_and_writes_the_declared_gapped_values(trained_model, tmp_path):
    from tests.inference.conftest import LABELS, gapped_scan

    inp, out = tmp_path / "in", tmp_path / "out"
    references = {}
    for view, seed in (("sag", 101), ("cor", 202)):  # new scans: other noise, shape and origin than in training
        image, label, g = gapped_scan(view, seed, shape=(7, 26, 22), origin=(4.0, -3.0, 2.5))
        write_image(inp / f"new_{view}.nii.gz", image, g)
        references[view] = label
    assert main(["predict_folder", str(inp), str(out), "--model", str(trained_model)]) == 0
    for view, reference in references.items():
        predicted, _ = read_image(out / f"new_{view}.nii.gz", dtype=None)
        assert set(np.unique(predicted)) == {0, 1, 5}  # the declared values, never the channel index 2
        for name in ("ball", "box"):
            value = LABELS[name]
            assert _dice(predicted == value, reference == value) > 0.7, (view, name)


@pytest.mark.slow
def test_unreadable_view_fails_alone_and_the_case_goes_on_with_the_others(trained_model, tmp_path, capsys):
    from tests.inference.conftest import gapped_scan

    inp, out = tmp_path / "in", tmp_path / "out"
    image, _, g = gapped_scan("cor", 7)
    write_image(inp / "p_cor.nii.gz", image, g)
    (inp / "p_sag.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    assert main(["predict_folder", str(inp), str(out), "--model", str(trained_model)]) == 1
    captured = capsys.readouterr()
    assert "p_sag.nii.gz" in captured.err and "1 predicted" in captured.out
    assert (out / "p_cor.nii.gz").is_file() and not (out / "p_sag.nii.gz").exists()
    findings = pd.read_csv(out / "findings.csv", dtype={"case_id": str}).set_index("case_id")
    assert findings.loc["p", "views"] == "cor"
    assert findings.loc["p", ["f1", "f2"]].notna().all()


@pytest.mark.slow
def test_torchrun_two_processes_uneven_cases_merge_only_this_runs_parts(trained_model, tmp_path):
    from tests.inference.conftest import gapped_scan

    out = tmp_path / "out"
    # an earlier run into the same folder, on another input: its case must not reach the new findings.csv
    earlier = tmp_path / "earlier"
    for view in ("sag", "cor"):
        image, _, g = gapped_scan(view, 3)
        write_image(earlier / f"gone_{view}.nii.gz", image, g)
    assert main(["predict_folder", str(earlier), str(out), "--model", str(trained_model)]) == 0
    # a part left by another model, and one in the layout of older versions
    (out / ".findings" / "0123456789abcdef").mkdir(parents=True)
    stale = "case_id,views,f1,f1_call,f1_spread,f2,f2_call,f2_spread\n{},sag,0.123456,0,0,0.123456,0,0\n"
    (out / ".findings" / "0123456789abcdef" / "a.csv").write_text(stale.format("a"))
    (out / ".findings" / "old.csv").write_text(stale.format("old"))
    inp = tmp_path / "in"
    for i, case in enumerate("abc"):  # 3 cases on 2 processes: rank 0 takes a and c, rank 1 takes b
        for view in ("sag", "cor"):
            image, _, g = gapped_scan(view, 20 + i)
            write_image(inp / f"{case}_{view}.nii.gz", image, g)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "orthodiff_auto", "predict_folder", str(inp), str(out), "--model", str(trained_model),
         "--device", "cpu"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(line.split()[1].rstrip(":") for line in r.stdout.splitlines() if line.startswith("predicted ")) == ["a", "b", "c"]
    findings = pd.read_csv(out / "findings.csv", dtype={"case_id": str})
    assert findings["case_id"].tolist() == ["a", "b", "c"]
    assert not (findings[["f1", "f2"]] == 0.123456).any().any() and findings[["f1", "f2"]].notna().all().all()
    for case in "abc":
        assert (out / f"{case}_sag.nii.gz").is_file() and (out / f"{case}_cor.nii.gz").is_file()
