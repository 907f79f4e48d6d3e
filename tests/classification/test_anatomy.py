"""Anatomy-guided features: what they measure, the fitted model, and a fold end to end from its segmentation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from orthodiff_auto.classification.anatomy import (
    PER_STRUCTURE,
    AnatomyFeatureModel,
    anatomy_features,
    basic_feature_names,
    feature_names,
    fit_logistic,
    screened_columns,
)
from orthodiff_auto.classification.anatomy_features import where_feature_names
from orthodiff_auto.classification.inference import FindingsEnsemble, PreparedScan
from orthodiff_auto.classification.metrics_io import subset_predictions_path
from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.training.checkpoint import load_checkpoint


def feature(values: np.ndarray, label: int, name: str, label_values=(1, 2)) -> float:
    return float(values[feature_names(label_values).index(f"label{label}_{name}")])


def band_scene(torn: bool, bright_beside: bool = False):
    """A dark band (label 1) next to a block (label 2) in noise; ``torn`` cuts the band with bright fluid."""
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 0.3, size=(6, 30, 30)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[2:4, 5:25, 10:12] = 1
    labels[1:5, 5:12, 18:26] = 2
    image[labels == 1] = -1.0
    if torn:
        labels[2:4, 14:16, 10:12] = 0
        image[2:4, 14:16, 10:12] = 4.0
    if bright_beside:
        image[2:4, 20, 13] = 5.0
    return image, labels


def test_features_see_an_interrupted_structure_and_fluid_in_the_gap():
    spacing = (3.0, 1.0, 1.0)
    intact = anatomy_features(*band_scene(False), spacing, (1, 2))
    torn = anatomy_features(*band_scene(True), spacing, (1, 2))
    assert len(intact) == len(feature_names((1, 2))) == 2 * len(PER_STRUCTURE) + 6
    where = anatomy_features(*band_scene(False), spacing, (1, 2), feature_set="where")
    assert len(where) == len(feature_names((1, 2), "where")) == len(intact) + len(where_feature_names((1, 2)))
    np.testing.assert_array_equal(where[:len(intact)], intact)
    assert feature(intact, 1, "components") == 1 and feature(torn, 1, "components") == 2
    assert feature(torn, 1, "outside_largest") > 0.3 and feature(intact, 1, "outside_largest") == 0
    assert feature(torn, 1, "shell1_max") > 3.5 > feature(intact, 1, "shell1_max")
    assert feature(torn, 1, "shell1_bright") > feature(intact, 1, "shell1_bright")
    assert feature(torn, 2, "components") == feature(intact, 2, "components") == 1  # the block is unchanged
    beside = anatomy_features(*band_scene(False, bright_beside=True), spacing, (1, 2))
    assert feature(beside, 1, "shell3_max") > 4 and feature(beside, 1, "shell1_max") < 3.5
    assert feature(intact, 1, "extent_1") == pytest.approx(20.0)  # 20 voxels of 1 mm


def test_features_are_the_same_for_a_mirrored_joint_and_zero_for_a_missing_structure():
    """The whole-structure features; the where-in-the-structure ones need the side read from the anatomy
    (test_anatomy_where_features)."""
    image, labels = band_scene(True)
    a = anatomy_features(image, labels, (3.0, 1.0, 1.0), (1, 2, 7), feature_set="where")
    b = anatomy_features(image[:, :, ::-1], labels[:, :, ::-1], (3.0, 1.0, 1.0), (1, 2, 7), feature_set="where")
    basic = len(basic_feature_names((1, 2, 7)))
    np.testing.assert_allclose(a[:basic], b[:basic], atol=1e-9)
    assert not feature(a, 7, "log_volume", (1, 2, 7)) and not feature(a, 7, "offset_0", (1, 2, 7))


def test_logistic_model_learns_a_separating_feature_and_round_trips():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = np.stack([(x[:, 2] > 0).astype(int), np.zeros(60, int)], axis=1)  # finding 2 never positive
    model = fit_logistic(x, y, ("sag",), [0.1, 1.0])
    test = rng.normal(size=(40, 5))
    logits = model.decision(test)
    assert ((logits[:, 0] > 0) == (test[:, 2] > 0)).mean() > 0.9
    assert np.all(logits[:, 1] < -4)  # constant: the training prevalence (clipped at 1e-3)
    assert np.isnan(model.strength[1]) and model.strength[0] in (0.1, 1.0)
    full = AnatomyFeatureModel(["sag"], [1], {("sag",): model})
    again = AnatomyFeatureModel.from_checkpoint({"anatomy": full.describe()}, full.state_dict(), "here")
    np.testing.assert_allclose(again.logits({"sag": test[0]}), full.logits({"sag": test[0]}))
    with pytest.raises(Exception, match="reads sag"):
        full.logits({"cor": test[0]})


def test_logistic_fit_does_not_depend_on_numpy_global_random_state():
    """liblinear's dual solver visits coordinates in a random order: the fit must be seeded, or a resumed run
    (or any two runs) fit different weights."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 40))  # fewer cases than features: the dual solver
    y = np.stack([(x[:, 0] + 0.5 * rng.normal(size=20) > 0).astype(int)], axis=1)
    fits = []
    for state in (1, 2):
        np.random.seed(state)
        fits.append(fit_logistic(x, y, ("sag",), [0.01, 1.0, 100.0]).decision(x))
    np.testing.assert_array_equal(fits[0], fits[1])


def test_screening_ranks_columns_by_their_roc_auc_with_ties_counted_half():
    """screened_columns scores each column with auroc_of_each (columns as readers): sklearn's AUROC per column."""
    from sklearn.metrics import roc_auc_score

    from orthodiff_auto.training.classification_metrics import auroc_of_each

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 50)
    x = np.stack([rng.normal(size=50), np.round(rng.normal(size=50)), y + rng.normal(size=50), -y.astype(float)], 1)
    np.testing.assert_allclose(auroc_of_each(y, x.T), [roc_auc_score(y, x[:, j]) for j in range(4)])
    assert screened_columns(x, y, 2).tolist() == [2, 3]  # the two columns that carry y (one inverted)


def test_screening_finds_the_one_feature_among_hundreds_and_predicts_better_for_it():
    """A finding carried by one structure's feature among 400: every-feature L2 regression spreads its weight
    over the noise; screened, each finding reads its few strongest columns (an inverted one too) and generalises."""
    rng = np.random.default_rng(7)
    n_train, n_test, dim = 60, 400, 400
    x = rng.normal(size=(n_train + n_test, dim))
    signal = np.stack([x[:, 17], -x[:, 333]], 1) + 0.5 * rng.normal(size=(n_train + n_test, 2))
    y = (signal > 0).astype(int)
    train, test = slice(0, n_train), slice(n_train, None)
    assert screened_columns(x[train], y[train, 0], 5).tolist() == sorted(screened_columns(x[train], y[train, 0], 5))
    assert 17 in screened_columns(x[train], y[train, 0], 5) and 333 in screened_columns(x[train], y[train, 1], 5)
    assert screened_columns(x[train], y[train, 0], 0).tolist() == list(range(dim))
    assert screened_columns(x[train], y[train, 0], dim + 3).tolist() == list(range(dim))
    from sklearn.metrics import roc_auc_score

    auroc = {}
    for screen in (0, 5):
        model = fit_logistic(x[train], y[train], ("sag",), [0.01, 0.1, 1.0], screen=screen)
        assert ((model.coef != 0).sum(1) <= (5 if screen else dim)).all()
        logits = model.decision(x[test])
        auroc[screen] = [roc_auc_score(y[test, f], logits[:, f]) for f in range(2)]
    assert min(auroc[5]) > 0.75 and min(auroc[5]) > max(auroc[0]) + 0.15, auroc
    np.testing.assert_array_equal(fit_logistic(x[train], y[train], ("sag",), [0.1], screen=dim).coef,
                                  fit_logistic(x[train], y[train], ("sag",), [0.1]).coef)


def test_each_finding_reads_the_family_of_columns_that_predicts_it_in_inner_cross_validation():
    """Families (the "sectors" set: the columns without sectors, or all): a finding carried by a coarse column
    keeps to the coarse family, where hundreds of noisy fine columns cannot crowd it out of the screen; a
    finding only a fine column carries takes the family of every column."""
    rng = np.random.default_rng(11)
    n, coarse_dim, fine_dim = 400, 30, 600
    x = rng.normal(size=(n, coarse_dim + fine_dim))
    signal = np.stack([x[:, 3], x[:, coarse_dim + 77]], 1) + 0.8 * rng.normal(size=(n, 2))
    y = (signal > 0).astype(int)
    train, test = slice(0, 60), slice(60, None)
    families = [np.arange(coarse_dim), np.arange(coarse_dim + fine_dim)]
    model = fit_logistic(x[train], y[train], ("sag",), [0.1, 1.0], screen=5, families=families)
    assert not model.coef[0, coarse_dim:].any() and model.coef[0, 3] != 0  # the coarse family only
    assert model.coef[1, coarse_dim + 77] != 0  # the fine column: the family of every column
    from sklearn.metrics import roc_auc_score

    logits = model.decision(x[test])
    assert min(roc_auc_score(y[test, f], logits[:, f]) for f in range(2)) > 0.75


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny synthetic knee dataset, preprocessed, with fold 0 segmented in every view (smoke config)."""
    base = tmp_path_factory.mktemp("anatomy")
    raw, pp, results = base / "raw", base / "pp", base / "results"
    assert main(["generate_synthetic", str(raw), "--cases", "10", "--size", "tiny", "--seed", "5"]) == 0
    assert main(["plan_and_preprocess", str(raw), "--out", str(pp), "--budget", "cpu", "-np", "1"]) == 0
    for view in ("sag", "cor", "ax"):
        assert main(["train_fold", str(pp), "seg", view, "0", "--config", "smoke", "--results", str(results),
                     "--set", "num_workers=0"]) == 0
    return raw, pp, results


@pytest.mark.slow
def test_fused_anatomy_fold_reads_the_fold_segmentation_and_predicts_like_validation(tiny_run):
    raw, pp, results = tiny_run
    assert main(["train_fold", str(pp), "cls", "fused", "0", "--config", "smoke", "--results", str(results),
                 "--set", "classifier_features=anatomy"]) == 0
    fold = results / "cls" / "fused" / "anatomy" / "fold_0"
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["classifier_features"] == "anatomy" and summary["views"] == ["sag", "cor", "ax"]
    assert set(summary["segmentation_read"]) == {"sag", "cor", "ax"}
    # one model per combination of views; validation predictions of each proper subset for model selection
    assert len(summary["regularisation"]) == 7
    for subset in (["sag"], ["cor", "ax"]):
        assert subset_predictions_path(fold, subset).is_file()
    ckpt = load_checkpoint(fold / "checkpoint_final.pt")
    assert ckpt["extras"]["kind"] == "anatomy" and len(ckpt["extras"]["anatomy"]["feature_names"]) > 0

    # prediction: the same segmentation model on the same scan gives the validation probability
    table = pd.read_csv(fold / "validation_predictions.csv", dtype={"case_id": str})
    case = table["case_id"][0]
    ensemble = FindingsEnsemble.load([fold / "checkpoint_final.pt"])
    plans = Plans.load(pp / "plans.json")
    from orthodiff_auto.inference.predictor import SegmentationEnsemble
    import torch

    prepared = {}
    for view in ("sag", "cor", "ax"):
        seg = SegmentationEnsemble.load(view, [results / "seg" / view / "scratch" / "fold_0" / "checkpoint_final.pt"],
                                        torch.device("cpu"))
        scan = PreparedScan.from_scan(*read_image(raw / "imagesTr" / f"{case}_{view}.nii.gz"), plans.view(view))
        _, labels, _ = seg.segment_prepared(scan, torch.device("cpu"), overlap=0.5)
        prepared[view] = PreparedScan(scan.data, scan.spacing, scan.properties, labels)
    found = ensemble.predict_prepared(prepared)
    for name in ensemble.findings:
        assert found[name]["probability"] == pytest.approx(table[f"{name}_probability"][0], abs=1e-6)
    only_sag = ensemble.predict_prepared({"sag": prepared["sag"]})  # its own model, not an imputed one
    assert set(only_sag) == set(ensemble.findings)


@pytest.mark.slow
def test_anatomy_needs_the_fold_segmentation(tiny_run, tmp_path, capsys):
    _, pp, _ = tiny_run
    assert main(["train_fold", str(pp), "cls", "sag", "1", "--config", "smoke", "--results", str(tmp_path),
                 "--set", "classifier_features=anatomy"]) == 2
    err = capsys.readouterr().err
    assert "segmentation of sag" in err and "fold_1" in err
