"""Multi-label classification metrics against hand-computed values and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from orthodiff_auto.training import classification_metrics as cm
from orthodiff_auto.training.classification_metrics import (
    auroc,
    average_precision,
    binary_metrics_at_threshold,
    choose_thresholds,
    evaluate_findings,
    roc_points,
    threshold_for_sensitivity,
    youden_threshold,
)


def _random_findings(n=80, seed=0):
    """Three findings: informative, uninformative, and all-negative (one class)."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 3), int)
    y[:, 0] = rng.random(n) < 0.4
    y[:, 1] = rng.random(n) < 0.5
    s = rng.random((n, 3))
    s[:, 0] = 0.7 * s[:, 0] + 0.3 * y[:, 0]  # informative but overlapping
    return y, s


# ---------------------------------------------------------------- ranking metrics

@pytest.mark.parametrize(
    "y, s, expected_auc, expected_ap",
    [
        # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8 beats both -> 3/4; ranking 1,0,1,0 -> AP (1 + 2/3) / 2
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75, 5 / 6),
        # a tied positive/negative pair counts 1/2 -> 3.5/4; AP: thresholds 0.9 (P=1, R=1/2), 0.5 (P=2/3, R=1)
        ([1, 0, 0, 1], [0.5, 0.5, 0.2, 0.9], 0.875, 0.5 * 1 + 0.5 * 2 / 3),
        # AP: 0.9 (P=0), 0.5 tie group (P=1/3, R=1/2), 0.2 (P=1/2, R=1) -> 1/6 + 1/4
        # AUROC: only the tied pair scores (1/2) of 4 pairs
        ([0, 1, 0, 1], [0.9, 0.5, 0.5, 0.2], 0.125, 5 / 12),
        ([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], 1.0, 1.0),
        ([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], 0.0, 0.5 * 1 / 3 + 0.5 * 2 / 4),
    ],
)
def test_ranking_metrics_hand_computed(y, s, expected_auc, expected_ap):
    assert auroc(y, s) == pytest.approx(expected_auc)
    assert average_precision(y, s) == pytest.approx(expected_ap)


def test_bootstrap_rowwise_metrics_match_sklearn_with_ties():
    # The bootstrap computes AUROC and AP itself, vectorised over resamples: it must equal sklearn's, which the
    # point estimates use, on tied scores too.
    rng = np.random.default_rng(1)
    compared = 0
    for _ in range(100):
        n = int(rng.integers(2, 50))
        y = rng.random((3, n)) < rng.uniform(0.1, 0.9)
        s = np.round(rng.random((3, n)), int(rng.integers(1, 3)))  # coarse rounding: many ties
        rows_auc, rows_ap = cm._ranking_metrics_rows(y, s)
        for row in range(3):
            if y[row].all() or not y[row].any():
                assert math.isnan(rows_auc[row]) and math.isnan(rows_ap[row])
                continue  # one class: sklearn refuses
            assert rows_auc[row] == pytest.approx(roc_auc_score(y[row], s[row]))
            assert rows_ap[row] == pytest.approx(average_precision_score(y[row], s[row]))
            compared += 1
    assert compared >= 240


def test_roc_points_hand_computed_with_a_tie():
    # Scores 0.9 (pos), 0.5 (pos and neg, tied), 0.2 (neg): one point per distinct score, the tie a diagonal
    # step from (0, 1/2) to (1/2, 1); the area under the points is the AUROC, 0.875.
    fpr, tpr, thresholds = roc_points([1, 0, 0, 1], [0.5, 0.5, 0.2, 0.9])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.5, 0.2])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc([1, 0, 0, 1], [0.5, 0.5, 0.2, 0.9])) == 0.875
    assert all(a.size == 0 for a in roc_points([1, 1], [0.2, 0.3]))


@pytest.mark.parametrize("y", [[0, 0, 0], [1, 1, 1], []])
def test_ranking_metrics_nan_for_one_class(y):
    s = np.linspace(0, 1, len(y))
    assert math.isnan(auroc(y, s)) and math.isnan(average_precision(y, s))


@pytest.mark.parametrize("y, s", [([0, 2, 1], [0.1, 0.2, 0.3]), ([0, 1], [0.1, np.nan]), ([0, 1], [0.1])])
def test_bad_inputs_raise(y, s):
    with pytest.raises(ValueError):
        auroc(y, s)


# ---------------------------------------------------------------- thresholds

@pytest.mark.parametrize(
    "y, s, expected",
    [
        # J per threshold: 0.6: 1/3, 0.5: 0, 0.4: 1/3, 0.3: 2/3, 0.2: 1/3, 0.1: 0
        ([0, 0, 1, 1, 0, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 0.3),
        # J = 1/2 at both 0.4 and 0.2: the larger threshold wins
        ([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], 0.4),
        ([0, 0, 1, 1], [0.2, 0.2, 0.7, 0.7], 0.7),
        # J = 1/3 at 0.6, 0.4 and 0.2; as floats tpr - fpr is 1/3, 2/3 - 1/3 and 1 - 2/3, which differ in the
        # last bit (a float argmax picks 0.2): J is compared exactly, so the largest threshold wins
        ([1, 0, 1, 0, 1, 0], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], 0.6),
        # every ranking inverted: J < 0 except at the lowest score (everything positive, J = 0); never +inf
        ([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], 0.1),
    ],
)
def test_youden_threshold(y, s, expected):
    assert youden_threshold(y, s) == expected


def test_youden_nan_for_one_class():
    assert math.isnan(youden_threshold([1, 1], [0.2, 0.3]))


@pytest.mark.parametrize(
    "target, expected",
    [(1.0, 0.2), (0.8, 0.3), (0.61, 0.3), (0.6, 0.6), (0.5, 0.6), (0.2, 0.9), (0.01, 0.9)],
)
def test_threshold_for_sensitivity_hand_computed(target, expected):
    # positive scores 0.9, 0.7, 0.6, 0.3, 0.2 (5 positives); target 0.8 needs 4 of them -> 4th highest = 0.3
    y = [1, 1, 1, 1, 1, 0, 0, 0]
    s = [0.9, 0.7, 0.6, 0.3, 0.2, 0.8, 0.4, 0.1]
    assert threshold_for_sensitivity(y, s, target) == expected


def test_threshold_for_sensitivity_is_the_largest_reaching_the_target():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n = int(rng.integers(5, 60))
        y = rng.random(n) < 0.5
        y[0] = True
        s = np.round(rng.random(n), 2)
        target = float(rng.uniform(0.05, 1.0))
        t = threshold_for_sensitivity(y, s, target)
        assert binary_metrics_at_threshold(y, s, t)["sensitivity"] >= target
        higher = s[y & (s > t)]
        if higher.size:  # the next larger candidate misses the target
            assert binary_metrics_at_threshold(y, s, higher.min())["sensitivity"] < target


def test_threshold_for_sensitivity_edge_cases():
    assert math.isnan(threshold_for_sensitivity([0, 0], [0.1, 0.2], 0.9))
    for target in (0.0, 1.5):
        with pytest.raises(ValueError):
            threshold_for_sensitivity([0, 1], [0.1, 0.2], target)


def test_binary_metrics_hand_computed():
    y = [1, 1, 0, 0, 1, 0]
    s = [0.9, 0.4, 0.6, 0.1, 0.5, 0.5]
    # threshold 0.5 (ties are positive): predictions 1,0,1,0,1,1 -> tp 2, fn 1, fp 2, tn 1
    m = binary_metrics_at_threshold(y, s, 0.5)
    assert m == pytest.approx({"sensitivity": 2 / 3, "specificity": 1 / 3, "precision": 2 / 4,
                               "f1": 4 / 7, "accuracy": 3 / 6})


def test_binary_metrics_undefined_ratios_are_nan():
    m = binary_metrics_at_threshold([0, 0, 0], [0.1, 0.2, 0.3], 0.5)  # no positives, none predicted
    assert math.isnan(m["sensitivity"]) and math.isnan(m["precision"]) and math.isnan(m["f1"])
    assert m["specificity"] == 1.0 and m["accuracy"] == 1.0
    assert all(math.isnan(v) for v in binary_metrics_at_threshold([0, 1], [0.1, 0.2], float("nan")).values())


def test_choose_thresholds_per_column():
    y, s = _random_findings()
    youden = choose_thresholds(y, s)
    assert youden.shape == (3,)
    assert youden[0] == youden_threshold(y[:, 0], s[:, 0]) and youden[1] == youden_threshold(y[:, 1], s[:, 1])
    assert math.isnan(youden[2])
    sens = choose_thresholds(y, s, "sensitivity", target_sensitivity=0.9)
    np.testing.assert_array_equal(sens[:2], [threshold_for_sensitivity(y[:, f], s[:, f], 0.9) for f in range(2)])
    with pytest.raises(ValueError):
        choose_thresholds(y, s, "sensitivity")
    with pytest.raises(ValueError):
        choose_thresholds(y, s, "f1")


# ---------------------------------------------------------------- evaluate_findings

def test_evaluate_findings_per_finding_and_macro():
    y, s = _random_findings()
    r = evaluate_findings(y, s, ["tear", "noise", "absent"])
    assert r["n_cases"] == 80 and r["threshold_method"] == "youden" and "groups" not in r
    tear = r["per_finding"]["tear"]
    assert tear["auroc"] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    assert tear["ap"] == pytest.approx(average_precision_score(y[:, 0], s[:, 0]))
    assert tear["threshold"] == youden_threshold(y[:, 0], s[:, 0])
    for k, v in binary_metrics_at_threshold(y[:, 0], s[:, 0], tear["threshold"]).items():
        assert tear[k] == v
    assert tear["n_positive"] == y[:, 0].sum() and tear["n_negative"] == 80 - y[:, 0].sum()
    absent = r["per_finding"]["absent"]
    assert math.isnan(absent["auroc"]) and math.isnan(absent["ap"]) and math.isnan(absent["threshold"])
    # macro averages skip the NaN of the one-class finding
    noise = r["per_finding"]["noise"]
    assert r["macro"]["auroc"] == pytest.approx((tear["auroc"] + noise["auroc"]) / 2)
    assert r["macro"]["f1"] == pytest.approx((tear["f1"] + noise["f1"]) / 2)


def test_evaluate_findings_uses_given_thresholds():
    y, s = _random_findings()
    r = evaluate_findings(y, s, ["a", "b", "c"], thresholds=[0.5, 0.7, 0.2])
    assert r["threshold_method"] == "given"
    assert r["per_finding"]["b"]["threshold"] == 0.7
    assert r["per_finding"]["b"]["sensitivity"] == binary_metrics_at_threshold(y[:, 1], s[:, 1], 0.7)["sensitivity"]
    assert r["per_finding"]["c"]["specificity"] == pytest.approx(np.mean(s[:, 2] < 0.2))


def test_evaluate_findings_per_group_uses_overall_thresholds():
    y, s = _random_findings(n=90)
    groups = np.array(["siteB", "siteA", "siteC"] * 30)
    r = evaluate_findings(y, s, ["a", "b", "c"], groups=groups)
    assert list(r["groups"]) == ["siteA", "siteB", "siteC"]
    overall_thresholds = [r["per_finding"][f]["threshold"] for f in "ab"]
    for g in ("siteA", "siteB", "siteC"):
        sel = groups == g
        block = r["groups"][g]
        assert block["n_cases"] == 30
        expected = evaluate_findings(y[sel], s[sel], ["a", "b", "c"], thresholds=overall_thresholds + [np.nan])
        assert block["per_finding"]["a"] == pytest.approx(expected["per_finding"]["a"])
        assert block["macro"]["auroc"] == pytest.approx(expected["macro"]["auroc"])
        assert block["per_finding"]["a"]["auroc"] == pytest.approx(roc_auc_score(y[sel, 0], s[sel, 0]))


def test_bootstrap_ci_contains_estimate_and_is_seeded(monkeypatch):
    y, s = _random_findings(n=60)
    r = evaluate_findings(y, s, ["a", "b", "c"], bootstrap=300, seed=7)
    for f in ("a", "b"):
        row = r["per_finding"][f]
        for metric in ("auroc", "ap"):
            assert row[f"{metric}_ci_low"] < row[metric] < row[f"{metric}_ci_high"]
    assert math.isnan(r["per_finding"]["c"]["auroc_ci_low"])  # one class in every resample
    assert r["macro"]["auroc_ci_low"] < r["macro"]["auroc"] < r["macro"]["auroc_ci_high"]
    assert _equal_nan(r, evaluate_findings(y, s, ["a", "b", "c"], bootstrap=300, seed=7))
    other = evaluate_findings(y, s, ["a", "b", "c"], bootstrap=300, seed=8)
    assert other["per_finding"]["a"]["auroc_ci_low"] != r["per_finding"]["a"]["auroc_ci_low"]
    # Chunking the resamples (memory bound) does not change them.
    monkeypatch.setattr(cm, "_BOOTSTRAP_CHUNK_ELEMENTS", 100)
    chunked = evaluate_findings(y, s, ["a", "b", "c"], bootstrap=300, seed=7)
    assert _equal_nan(chunked, r)


def test_bootstrap_ci_agrees_with_naive_percentile_bootstrap():
    y, s = _random_findings(n=60, seed=4)
    row = evaluate_findings(y, s, ["a", "b", "c"], bootstrap=1000, seed=0)["per_finding"]["a"]
    rng = np.random.default_rng(123)  # independent resamples: agreement is statistical, not exact
    aucs, aps = [], []
    for _ in range(1000):
        i = rng.integers(0, 60, 60)
        if 0 < y[i, 0].sum() < 60:
            aucs.append(roc_auc_score(y[i, 0], s[i, 0]))
            aps.append(average_precision_score(y[i, 0], s[i, 0]))
    for metric, naive in (("auroc", aucs), ("ap", aps)):
        low, high = np.percentile(naive, [2.5, 97.5])
        assert row[f"{metric}_ci_low"] == pytest.approx(low, abs=0.03)
        assert row[f"{metric}_ci_high"] == pytest.approx(high, abs=0.03)


def test_bootstrap_ci_shrinks_with_more_cases():
    y_small, s_small = _random_findings(n=40, seed=3)
    y_big, s_big = _random_findings(n=400, seed=3)
    width = []
    for y, s in ((y_small, s_small), (y_big, s_big)):
        row = evaluate_findings(y, s, ["a", "b", "c"], bootstrap=200)["per_finding"]["a"]
        width.append(row["auroc_ci_high"] - row["auroc_ci_low"])
    assert width[1] < width[0]


def _equal_nan(a, b) -> bool:
    """Deep equality of nested result dicts, NaN equal to NaN."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal_nan(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(findings=["a", "b"]),
        dict(thresholds=[0.5, 0.5]),
        dict(groups=["x"] * 5),
        dict(bootstrap=-1),
        dict(y_score=np.zeros((10, 2))),
    ],
)
def test_evaluate_findings_rejects_bad_arguments(kwargs):
    args = dict(y_true=np.zeros((10, 3), int), y_score=np.zeros((10, 3)), findings=["a", "b", "c"])
    args.update(kwargs)
    with pytest.raises(ValueError):
        evaluate_findings(**args)


def test_macro_auroc_bootstrap_resamples_cases_and_pairs_two_models():
    y, s = _random_findings(n=40, seed=2)
    samples = cm.macro_auroc_bootstrap(y, s, n_resamples=50, seed=3)
    # each sample is the macro AUROC of one seeded case resample (the one-class finding left out)
    indices = np.random.default_rng(3).integers(0, 40, size=(50, 40))
    naive = [np.mean([roc_auc_score(y[i, f], s[i, f]) for f in (0, 1)]) for i in indices]
    assert samples == pytest.approx(naive)
    # another model's scores of the same cases get the same resamples: a paired difference
    other = s.copy()
    other[:, 1] = y[:, 1] + 0.01 * s[:, 1]  # finding b now perfect
    paired = cm.macro_auroc_bootstrap(y, other, n_resamples=50, seed=3) - samples
    expected = [(1.0 - roc_auc_score(y[i, 1], s[i, 1])) / 2 for i in indices]
    assert paired == pytest.approx(expected)
    low, high = cm.macro_auroc_ci(y, s, n_resamples=50, seed=3)
    assert (low, high) == pytest.approx(tuple(np.percentile(samples, [2.5, 97.5])))


def test_auroc_of_each_reader_equals_sklearn_with_ties():
    rng = np.random.default_rng(4)
    y = rng.random(30) < 0.4
    s = np.round(rng.random((5, 30)), 1)  # many ties
    assert cm.auroc_of_each(y, s) == pytest.approx([roc_auc_score(y, row) for row in s])
    assert np.isnan(cm.auroc_of_each(np.ones(30, bool), s)).all()
    with pytest.raises(ValueError):
        cm.auroc_of_each(y, s[:, :10])


def test_auroc_bootstrap_pairs_two_readers_of_one_finding():
    y, s = _random_findings(n=40, seed=2)
    y, s = y[:, 0], s[:, 0]
    samples = cm.auroc_bootstrap(y, s, n_resamples=50, seed=3)
    indices = np.random.default_rng(3).integers(0, 40, size=(50, 40))
    naive = [roc_auc_score(y[i], s[i]) if 0 < y[i].sum() < 40 else np.nan for i in indices]
    assert samples == pytest.approx(naive, nan_ok=True)
    # the same resamples for another reader: their difference is paired
    perfect = cm.auroc_bootstrap(y, y + 0.01 * s, n_resamples=50, seed=3)
    assert perfect - samples == pytest.approx([1.0 - v for v in naive], nan_ok=True)
    assert cm.percentile_ci(samples) == pytest.approx(tuple(np.nanpercentile(samples, [2.5, 97.5])))
