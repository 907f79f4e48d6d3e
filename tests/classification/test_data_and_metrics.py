"""Inputs, batch datasets, loss weights, thresholds and the per-fold output files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from orthodiff_auto.classification.config import ClassificationConfig
from orthodiff_auto.classification.data import (
    FusedBatches,
    ViewBatches,
    balanced_case_weights,
    build_transforms,
    drop_views,
    left_right_axis,
    mirror_axes,
    positive_weights,
)
from orthodiff_auto.classification.metrics_io import (
    fold_metrics,
    read_validation_predictions,
    select_thresholds,
    thresholds_table,
    write_validation_predictions,
)
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.classification_input import (
    InputLoader,
    RegionVolume,
    ViewInput,
    antialias_sigma,
    centre_from_labels,
    cut_region,
    region_volume,
    rescale_centre,
    resample_to_spacing,
)
from tests.classification.conftest import CASES, NO_COR


def test_cut_region_centres_pads_and_shifts():
    a = np.arange(2 * 5 * 3, dtype=np.float32).reshape(1, 2, 5, 3)
    vol = RegionVolume(a, np.array([0.5, 2.0, 1.0]))
    out = cut_region(vol, (4, 3, 3))
    assert out.shape == (1, 4, 3, 3)
    assert (out[:, 0] == 0).all() and (out[:, 3] == 0).all()  # padded with 0 on both sides
    np.testing.assert_array_equal(out[0, 1:3], a[0, :, 1:4])  # the box around the centre
    shifted = cut_region(vol, (4, 3, 3), shift=(0, 2, 0))
    np.testing.assert_array_equal(shifted[0, 1:3, :2], a[0, :, 3:5])  # moved two voxels along axis 1
    assert (shifted[0, 1:3, 2] == 0).all()  # past the volume's end
    assert not cut_region(vol, (2, 2, 2), shift=(0, 99, 0)).any()  # entirely outside: background only


def test_region_centre_follows_the_labelled_anatomy():
    labels = np.zeros((6, 20, 30), np.uint8)
    labels[2:4, 10:14, 3:9] = 2
    labels[2, 12, 20] = 5  # the ignore label does not count
    centre = centre_from_labels(labels, ignore_label=5)
    np.testing.assert_allclose(centre, [2.5, 11.5, 5.5])
    assert centre_from_labels(np.zeros((2, 2, 2))) is None and centre_from_labels(None) is None
    image = np.zeros((1, 6, 20, 30), np.float32)
    image[0, 2:4, 10:14, 3:9] = 1.0
    spec = ViewInput("sag", (3.0, 2.0, 2.0), (2, 4, 6), antialias=True)
    vol = region_volume(image, (3.0, 1.0, 1.0), spec, centre)  # in-plane downsampled by 2
    assert vol.data.shape == (1, 6, 10, 15)
    out = cut_region(vol, spec.input_size)
    # the labelled block (4x6 voxels at 1 mm -> 2x3 at 2 mm) sits in the middle of the region
    assert out[0, :, 1:3, 1:5].mean() > 0.5 and out[0, :, 0, :].mean() < out[0, :, 1:3, 1:5].mean()
    # a voxel's centre keeps its physical position on the coarser grid
    np.testing.assert_allclose(rescale_centre(np.array([1.5, 3.5, 0.0]), (1, 1, 1), (1, 2, 2)), [1.5, 1.5, -0.25])


def test_resample_to_spacing_antialiases_only_when_downsampling():
    a = np.random.default_rng(0).random((1, 4, 8, 8)).astype(np.float32)
    assert resample_to_spacing(a, (3, 1, 1), (3, 1, 1)) is a
    out = resample_to_spacing(a, (3, 1, 1), (3, 2, 2))
    assert out.shape == (1, 4, 4, 4)
    assert out.mean() == pytest.approx(a.mean(), abs=0.05)
    assert antialias_sigma((3, 1, 1), (3, 2, 4)) == (0.0, 0.5, 1.5)
    assert antialias_sigma((3, 1, 1), (1.5, 1, 1)) == (0.0, 0.0, 0.0)  # upsampling: no filter
    # a one-voxel checkerboard aliases without the filter and is averaged away with it
    checker = (np.indices((4, 16, 16)).sum(0) % 2).astype(np.float32)[None]
    plain = resample_to_spacing(checker, (1, 1, 1), (1, 3, 3))
    smooth = resample_to_spacing(checker, (1, 1, 1), (1, 3, 3), antialias=True)
    assert plain.std() > 0.1 and smooth.std() < 0.01


def test_left_right_axis_and_mirroring():
    # canonical axis 0 = slice normal, then the other physical axes in z, y, x order
    assert left_right_axis("sag") == 0 and left_right_axis("cor") == 2 and left_right_axis("ax") == 2
    assert mirror_axes("cor", "left_right") == (2,)
    assert mirror_axes("cor", "all") == (0, 1, 2) and mirror_axes("cor", "none") == ()


def test_positive_and_sampling_weights():
    y = np.array([[1, 0], [0, 0], [0, 1], [0, 0]])
    np.testing.assert_allclose(positive_weights(y, 50), [3.0, 3.0])
    np.testing.assert_allclose(positive_weights(np.array([[1], [1], [1], [0]]), 50), [1 / 3], rtol=1e-6)
    assert positive_weights(np.array([[0]] * 200), 50)[0] == 50  # clamped (no positives)
    w = balanced_case_weights(y)
    assert w.sum() == pytest.approx(1.0)
    # every finding's positives carry as much sampling weight as its negatives
    for f in range(2):
        assert w[y[:, f] == 1].sum() == pytest.approx(w[y[:, f] == 0].sum(), rel=0.5)
    assert w[0] > w[1]


def test_drop_views_keeps_one_view():
    present = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 1]] * 50, dtype=bool)
    kept = drop_views(present, 0.9, np.random.default_rng(0))
    assert (kept <= present).all() and kept.any(1).all()
    assert (kept[1::3] == present[1::3]).all()  # a single view is never dropped


def test_config_checks_and_from_training():
    with pytest.raises(UserInputError, match="fusion"):
        ClassificationConfig(fusion="max")
    with pytest.raises(UserInputError, match="target_sensitivity"):
        ClassificationConfig(target_sensitivity=1.5)
    with pytest.raises(UserInputError, match="fused_init"):
        ClassificationConfig(fused_init="single")

    class WithFields:
        fusion = "concat"
        target_sensitivity = 0.9
        num_epochs = 3

    c = ClassificationConfig.from_training(WithFields())
    assert c.fusion == "concat" and c.threshold_method == "sensitivity"
    assert ClassificationConfig.from_training(object()).fusion == "gate"


def test_batches_are_a_pure_function_of_seed_rank_iteration(cls_preprocessed):
    plans = Plans.load(cls_preprocessed / "plans.json")
    inputs = {v: ViewInput.from_plan(v, plans.view(v).classification) for v in ("sag", "cor")}
    loader = InputLoader(cls_preprocessed, inputs)
    x = loader.load("sag", CASES[0])
    assert x.shape == (1, *inputs["sag"].input_size) and x.dtype == np.float32
    labels = np.eye(len(CASES), 2, dtype=np.float32)
    transforms = build_transforms(inputs["sag"], 1.0, "left_right", 15.0, (0.85, 1.15))
    a = ViewBatches(loader, "sag", CASES, labels, 3, transforms, 0, 10, seed=7)
    b = ViewBatches(InputLoader(cls_preprocessed, inputs), "sag", CASES, labels, 3, transforms, 4, 10, seed=7)
    for k in (4, 6):
        ba, bb = a[k], b[k - 4]
        torch.testing.assert_close(ba["data"], bb["data"])
        torch.testing.assert_close(ba["target"], bb["target"])
    assert a[4]["data"].shape == (3, 1, *inputs["sag"].input_size)
    assert not torch.equal(a[4]["data"], a[5]["data"])
    assert not torch.equal(a[4]["data"], ViewBatches(loader, "sag", CASES, labels, 3, transforms, 0, 10, seed=7, rank=1)[4]["data"])

    present = np.array([[True, c != NO_COR] for c in CASES])
    fused = FusedBatches(loader, ["sag", "cor"], CASES, present, labels, 4, {"sag": transforms, "cor": None}, 0, 5,
                         seed=3, view_dropout=0.5)
    batch = fused[2]
    torch.testing.assert_close(batch["data_sag"], fused[2]["data_sag"])
    assert batch["present"].dtype == torch.bool and batch["present"].any(1).all()
    absent = ~batch["present"][:, 1]
    assert absent.any()  # this seeded batch drops a coronal scan, so the check below runs
    assert (batch["data_cor"][absent] == 0).all()  # placeholder, never looked at


def test_threshold_selection_hand_values():
    y = np.array([[1, 1], [1, 0], [0, 1], [0, 0], [0, 0]])
    s = np.array([[0.9, 0.2], [0.4, 0.1], [0.5, 0.8], [0.3, 0.3], [0.1, 0.6]])
    # finding 0: thresholds 0.9 -> J 1/2; 0.5 -> 1/2 - 1/3; 0.4 -> 1 - 1/3 = 2/3 (best); 0.3 -> 1 - 2/3
    # finding 1: positives 0.2, 0.8; 0.8 -> J = 1/2 (best, largest on ties)
    np.testing.assert_allclose(select_thresholds(y, s), [0.4, 0.8])
    # target sensitivity 1: the lowest positive score
    np.testing.assert_allclose(select_thresholds(y, s, "sensitivity", 1.0), [0.4, 0.2])
    t = select_thresholds(np.array([[1], [1]]), np.array([[0.2], [0.3]]))
    assert math.isnan(t[0])  # one class only: no threshold
    table = thresholds_table(["a"], t)
    assert table == {"a": None}


def test_fold_outputs_hand_values(tmp_path):
    findings = ["b_finding", "a_finding"]
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.8, 0.3], [0.4, 0.6], [0.35, 0.2], [0.1, 0.5]])
    thresholds = np.array([0.35, 0.5])
    metrics = fold_metrics(y, p, findings, thresholds, sites=["x", "x", "y", "y"])
    b = metrics["per_finding"]["b_finding"]
    # b: positives 0.8, 0.35; negatives 0.4, 0.1 -> 3 of 4 pairs ordered: AUROC 0.75
    assert b["auroc"] == pytest.approx(0.75)
    # AP: ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): (1/1 + 2/3) / 2
    assert b["ap"] == pytest.approx((1 + 2 / 3) / 2)
    # at 0.35: calls 1,1,1,0 -> TP 2, FP 1, TN 1: sens 1, spec 0.5, F1 4/5
    assert (b["sensitivity"], b["specificity"], b["f1"]) == (1.0, 0.5, pytest.approx(0.8))
    a = metrics["per_finding"]["a_finding"]
    # a: positives 0.6, 0.2; negatives 0.3, 0.5 -> pairs (0.6>0.3, 0.6>0.5) : AUROC 0.5
    assert a["auroc"] == pytest.approx(0.5)
    # at 0.5: calls 0,1,0,1 -> TP 1, FN 1, FP 1, TN 1
    assert (a["sensitivity"], a["specificity"], a["f1"]) == (0.5, 0.5, 0.5)
    assert metrics["macro"]["auroc"] == pytest.approx(0.625)
    assert set(metrics["per_site"]) == {"x", "y"}
    assert metrics["per_site"]["x"]["per_finding"]["b_finding"]["threshold"] == 0.35  # overall thresholds
    assert "per_site" not in fold_metrics(y, p, findings, thresholds, sites=["x"] * 4)

    path = tmp_path / "validation_predictions.csv"
    write_validation_predictions(path, ["c1", "c2", "c3", "c4"], findings, p, y, thresholds, {"site": ["x", "x", "y", "y"]})
    table = pd.read_csv(path)
    assert list(table.columns) == ["case_id", "b_finding_probability", "b_finding_predicted", "b_finding_label",
                                   "a_finding_probability", "a_finding_predicted", "a_finding_label", "site"]
    assert list(table["b_finding_predicted"]) == [1, 1, 1, 0]
    cases, p2, y2 = read_validation_predictions(path, findings)
    assert cases == ["c1", "c2", "c3", "c4"]
    np.testing.assert_allclose(p2, p)  # full precision: the stored thresholds reproduce the calls
    np.testing.assert_array_equal(y2, y)
