"""nnU-Net's configurations in training: 3d_lowres on its own folder, the cascade's second stage on the first
stage's out-of-fold predictions, 2d on single slices; the cascade's transforms."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from orthodiff_auto.cli import main
from orthodiff_auto.plans.planner import CPU_PRESET, plan_segmentation
from orthodiff_auto.plans.schema import Budget, ConfigurationPlan, Plans
from orthodiff_auto.preprocessing.stages import run_fingerprint, run_plan, run_preprocess, validated_dataset
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.segmentation.cascade import (PREDICTED_NEXT_STAGE, MoveSegChannelToData, RandomBinaryOperator,
                                                 RemoveRandomComponent, cascade_input, write_next_stage)
from orthodiff_auto.segmentation.probabilities import PROBABILITY_FLOOR, VALIDATION_PROBABILITIES
from tests.conftest import sphere_scan, view_geometry, write_sphere_dataset

CASES = [f"k{i:02d}" for i in range(8)]


def test_previous_stage_moves_into_one_hot_data_channels():
    rng = np.random.default_rng(0)
    previous = rng.integers(0, 4, size=(2, 5, 6, 7))
    seg = np.stack([rng.integers(0, 4, size=(2, 5, 6, 7)), previous], axis=1).astype(np.float32)
    out = MoveSegChannelToData(num_classes=4)(data=np.zeros((2, 1, 5, 6, 7), np.float32), seg=seg)
    assert out["data"].shape == (2, 4, 5, 6, 7) and out["seg"].shape == (2, 1, 5, 6, 7)
    np.testing.assert_array_equal(out["seg"][:, 0], seg[:, 0])  # the labels stay
    for c in range(1, 4):  # channel c of the data is "the previous stage said class c"
        np.testing.assert_array_equal(out["data"][:, c], (previous == c).astype(np.float32))
    np.testing.assert_array_equal(cascade_input(np.zeros((1, 5, 6, 7)), previous[0], 4)[1:], out["data"][0, 1:])


def test_degradations_keep_channels_one_hot_and_remove_only_small_components():
    np.random.seed(0)
    data = np.zeros((1, 3, 12, 12, 12), np.float32)
    data[0, 1, 2:10, 2:10, 2:10] = 1  # a large component of class 1
    data[0, 2, 0:2, 0:2, 0:2] = 1  # a small one of class 2
    changed = RandomBinaryOperator([1, 2], p_per_sample=1.0, radius_range=(1, 3))(data=data.copy())["data"]
    assert changed[0, 1:].sum(0).max() <= 1  # a voxel is never two classes
    assert not np.array_equal(changed, data)
    removed = RemoveRandomComponent([1, 2], p_per_sample=1.0, max_fraction=0.15)(data=data.copy())["data"]
    assert removed[0, 2].sum() == 0  # 8 voxels of 1728: removed
    np.testing.assert_array_equal(removed[0, 1], data[0, 1])  # 512 voxels, 30%: kept


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    """A tiny labelled dataset planned with a 3d_lowres (half the resolution) and its cascade by hand (nnU-Net's
    rule does not create them for images this small)."""
    base = tmp_path_factory.mktemp("configurations")
    rng = np.random.default_rng(0)

    def scan(i, view):
        g = view_geometry(view, shape=(8, 32, 32), spacing=(3.0, 1.0, 1.0))
        return (*sphere_scan(g.shape, rng), g)

    raw = write_sphere_dataset(base / "raw", CASES, ("sag",), {"background": 0, "ball": 1, "box": 2},
                               {"f1": lambda i: i % 2}, scan)
    out = base / "pp"
    ds = validated_dataset(raw)
    run_fingerprint(ds, out, num_workers=1, progress=False)
    run_plan(out, Budget("cpu", 0.5))
    plans = Plans.load(out / "plans.json")
    vp = plans.view("sag")
    low = tuple(2 * s for s in vp.target_spacing)
    shape = tuple(max(1, round(m / 2)) for m in vp.median_shape_after_resampling)
    low_seg = plan_segmentation(low, shape, plans.num_classes, len(CASES), plans.budget, CPU_PRESET)
    configurations = dict(vp.configurations)
    configurations["3d_lowres"] = ConfigurationPlan(low, shape, low_seg, "sag_3d_lowres")
    configurations["3d_cascade_fullres"] = ConfigurationPlan(vp.target_spacing, vp.median_shape_after_resampling,
                                                             vp.segmentation, "sag", "3d_lowres")
    plans.replace_view(replace(vp, configurations=configurations)).save(out / "plans.json")
    run_preprocess(ds, out, num_workers=1, progress=False)
    return out


def _train(pp, results, configuration, fold=0, *extra):
    return main(["train_fold", str(pp), "seg", "sag", str(fold), "-c", configuration, "--config", "smoke",
                 "--results", str(results), *extra])


@pytest.mark.slow
def test_cascade_trains_on_the_first_stage_out_of_fold_predictions(preprocessed, tmp_path, capsys):
    results = tmp_path / "results"
    assert _train(preprocessed, results, "3d_lowres", 0, "--npz") == 0
    lowres = results / "seg" / "sag" / "3d_lowres_scratch"
    summary = (lowres / "fold_0" / "summary.json").read_text()
    assert '"configuration": "3d_lowres"' in summary
    fullres = PreprocessedDataset(preprocessed, "sag")
    written = sorted(p.stem for p in (lowres / PREDICTED_NEXT_STAGE).glob("*.npz"))
    import json
    validation = list(json.loads(summary)["per_case"])
    assert written == sorted(validation) and written  # the fold's validation cases, no training case
    for case in written:  # on the second stage's grid, not the first's
        with np.load(lowres / PREDICTED_NEXT_STAGE / f"{case}.npz") as z:
            assert z["seg"].shape == tuple(fullres.properties(case).shape_after_resampling)
    assert PreprocessedDataset(preprocessed, "sag_3d_lowres").properties(written[0]).shape_after_resampling != \
        fullres.properties(written[0]).shape_after_resampling
    # --npz: each validation case's probabilities brought to the view's grid as its labels are (float16)
    kept = lowres / "fold_0" / VALIDATION_PROBABILITIES
    assert sorted(p.stem for p in kept.glob("*.npz")) == written
    for case in written:
        with np.load(kept / f"{case}.npz") as z:
            p = z["probabilities"]
        assert p.dtype == np.float16 and p.shape == (3, *fullres.properties(case).shape_after_resampling)
        total = p.astype(np.float32).sum(0)  # a softmax, the values below the floor stored as 0
        assert ((p == 0) | (p >= PROBABILITY_FLOOR)).all() and (total <= 1.005).all() and (total > 0.97).all()
        with np.load(lowres / PREDICTED_NEXT_STAGE / f"{case}.npz") as z:  # the argmax: the labels it sends on
            assert np.mean(p.argmax(0) == z["seg"]) > 0.99

    capsys.readouterr()
    assert _train(preprocessed, results, "3d_cascade_fullres") == 2  # the other folds' cases have none yet
    err = capsys.readouterr().err
    assert "out-of-fold" in err and "-c 3d_lowres" in err

    for case in CASES:  # stand-ins for the other four folds: the reference labels
        if case not in written:
            write_next_stage(lowres / PREDICTED_NEXT_STAGE, case, np.asarray(fullres.load(case)[1][0]))
    assert _train(preprocessed, results, "3d_cascade_fullres") == 0
    fold = results / "seg" / "sag" / "3d_cascade_fullres_scratch" / "fold_0"
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ckpt["extras"]["in_channels"] == 3  # the image and one channel per foreground class
    stem = [v for k, v in ckpt["model"].items() if k.endswith("weight") and v.ndim == 5][0]
    assert stem.shape[1] == 3
    assert json.loads((fold / "summary.json").read_text())["previous_stage"] == {
        "configuration": "3d_lowres", "variant": "3d_lowres_scratch"}


@pytest.mark.slow
def test_2d_trains_on_single_slices(preprocessed, tmp_path):
    results = tmp_path / "results"
    assert _train(preprocessed, results, "2d") == 0
    ckpt = torch.load(results / "seg" / "sag" / "2d_scratch" / "fold_0" / "checkpoint_final.pt", weights_only=True)
    assert ckpt["extras"]["patch_size"][0] == 1
    convs = [v for k, v in ckpt["model"].items() if k.endswith("weight") and v.ndim == 5]
    assert convs and all(w.shape[2] == 1 for w in convs)  # no kernel spans two slices: a 2D U-Net per slice
