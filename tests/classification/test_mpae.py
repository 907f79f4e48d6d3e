"""MPAE and the other fusion heads on out-of-fold view logits: masking, what the gate learns, cross-finding
stacking, the clinical branch, and cross-fitting / nested choice that never use a fold's own labels."""

import numpy as np
import pytest

from orthodiff_auto.classification.clinical_inputs import fit_clinical_encoding
from orthodiff_auto.classification.mpae import FusionHead, fit_fusion_head
from orthodiff_auto.classification.oof_fusion import FUSION_HEADS, OutOfFoldTable, cross_fit, nested_choice
from orthodiff_auto.data.clinical import ClinicalValues, ClinicalVariable
from orthodiff_auto.training.classification_metrics import auroc

VARIABLES = (ClinicalVariable("age", "numeric"), ClinicalVariable("sex", "categorical", ("F", "M")))


def _views_dataset(n: int, seed: int, informative: dict[int, int], missing: float = 0.2):
    """(logits, present, labels): finding f is visible only in view informative[f]; the others are noise."""
    rng = np.random.default_rng(seed)
    f, v = len(informative), 3
    y = (rng.random((n, f)) < 0.4).astype(float)
    x = rng.normal(0.0, 1.5, (n, f, v))
    for fi, vi in informative.items():
        x[:, fi, vi] += 3.0 * (2 * y[:, fi] - 1)
    present = rng.random((n, v)) >= missing
    present[~present.any(1), 0] = True
    return x, present, y


def _clinical(n: int, seed: int, missing: float = 0.0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 80, n)
    sex = rng.choice(["F", "M"], n)
    age_cells = np.where(rng.random(n) < missing, np.nan, age)
    return age, sex, ClinicalValues(("age",), age_cells[:, None], {"sex": list(sex)})


def test_an_absent_views_placeholder_changes_nothing():
    rng = np.random.default_rng(0)
    f, v = 3, 3
    head = FusionHead(rng.normal(size=(f, v, 3 * v)), rng.normal(size=(f, v)), np.eye(f) + 0.1 * rng.normal(size=(f, f)),
                      rng.normal(size=f), np.zeros((f, 0)))
    x = rng.normal(size=(5, f, v))
    present = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1], [0, 0, 1]], bool)
    other = x.copy()
    other[~present[:, None, :].repeat(f, 1)] = rng.normal(scale=100.0, size=int((~present).sum() * f))
    assert np.array_equal(head.predict(x, present), head.predict(other, present))
    w = head.weights(other, present)
    assert np.allclose(w.sum(-1), 1.0) and np.all(w[~present[:, None, :].repeat(f, 1)] == 0)


def test_the_gate_learns_the_view_each_finding_is_visible_in():
    x, present, y = _views_dataset(400, 1, {0: 1, 1: 2})
    head = fit_fusion_head(x, present, y)
    w = head.weights(x, present)[present.all(1)].mean(0)  # (F, V) on cases with every view
    assert w[0, 1] > 0.8 and w[1, 2] > 0.8
    xt, pt, yt = _views_dataset(300, 2, {0: 1, 1: 2}, missing=0.0)
    z = head.predict(xt, pt)
    assert auroc(yt[:, 0], z[:, 0]) > 0.95 and auroc(yt[:, 1], z[:, 1]) > 0.95
    # a gate fixed at equal weights does worse: the noise views dilute the evidence
    assert auroc(yt[:, 0], xt[:, 0].mean(-1)) < auroc(yt[:, 0], z[:, 0]) - 0.02


def test_cross_finding_stacking_uses_co_occurrence():
    x, present, y = _views_dataset(400, 3, {0: 0, 1: 1})
    y[:, 1] = y[:, 0]  # finding 1 always comes with finding 0 ...
    x[:, 1, :] = np.random.default_rng(4).normal(0.0, 1.5, (400, 3))  # ... and no view shows it
    mpae = fit_fusion_head(x, present, y)
    stacked = fit_fusion_head(x, present, y, case_gate=False, cross_finding=False)
    xt, pt, yt = _views_dataset(300, 5, {0: 0, 1: 1}, missing=0.0)
    yt[:, 1] = yt[:, 0]
    xt[:, 1, :] = np.random.default_rng(6).normal(0.0, 1.5, (300, 3))
    assert auroc(yt[:, 1], mpae.predict(xt, pt)[:, 1]) > 0.9
    assert auroc(yt[:, 1], stacked.predict(xt, pt)[:, 1]) < 0.65


def test_clinical_columns_that_carry_the_whole_signal_give_auroc_near_one_and_missing_values_still_predict():
    x, present, _ = _views_dataset(300, 7, {0: 0, 1: 1})
    age, sex, values = _clinical(300, 8, missing=0.1)
    y = np.stack([age > 50, sex == "F"], 1).astype(float)  # the views' logits are unrelated to these labels
    encoding = fit_clinical_encoding(VARIABLES, values)
    assert encoding.columns == ["age", "age_missing", "sex=F", "sex=M", "sex_missing"]
    head = fit_fusion_head(x, present, y, encoding.encode(values))
    xt, pt, _ = _views_dataset(200, 9, {0: 0, 1: 1})
    age_t, sex_t, values_t = _clinical(200, 10)
    yt = np.stack([age_t > 50, sex_t == "F"], 1).astype(float)
    z = head.predict(xt, pt, encoding.encode(values_t))
    assert auroc(yt[:, 0], z[:, 0]) > 0.97 and auroc(yt[:, 1], z[:, 1]) > 0.97
    nothing = ClinicalValues(("age",), np.full((2, 1), np.nan), {"sex": ["", ""]})
    q = encoding.encode(nothing)
    assert np.array_equal(q, [[0, 1, 0, 0, 1]] * 2)
    assert np.all(np.isfinite(head.predict(xt[:2], pt[:2], q)))
    with pytest.raises(ValueError, match="clinical branch"):
        head.predict(xt[:2], pt[:2])


def test_head_round_trips_through_its_dict():
    x, present, y = _views_dataset(60, 11, {0: 0, 1: 2})
    head = fit_fusion_head(x, present, y)
    again = FusionHead.from_dict(head.to_dict())
    assert np.array_equal(head.predict(x, present), again.predict(x, present))


def _table(n: int = 120, seed: int = 12) -> OutOfFoldTable:
    x, present, _ = _views_dataset(n, seed, {0: 0, 1: 1})
    age, sex, values = _clinical(n, seed + 1, missing=0.1)
    y = np.stack([age > 50, (x[:, 1, 1] > 0) & present[:, 1]], 1).astype(float)
    fold = np.arange(n) % 3
    return OutOfFoldTable([f"c{i}" for i in range(n)], ["a", "b"], ["sag", "cor", "ax"], x, present, y, fold,
                          values, VARIABLES)


def test_cross_fitting_and_the_nested_choice_never_use_a_folds_own_labels():
    table = _table()
    modes = [FUSION_HEADS["stacked"], FUSION_HEADS["mpae+clinical"]]
    base = cross_fit(FUSION_HEADS["mpae+clinical"], table)
    choice = nested_choice(modes, table)
    held = table.fold == 1
    flipped = table.labels.copy()
    flipped[held] = 1 - flipped[held]
    other = OutOfFoldTable(**{**table.__dict__, "labels": flipped})
    assert np.array_equal(cross_fit(FUSION_HEADS["mpae+clinical"], other)[held], base[held])
    again = nested_choice(modes, other)
    assert np.array_equal(again.logits[held], choice.logits[held]) and again.chosen["1"] == choice.chosen["1"]
    # the clinical head wins where the clinical column carries a finding's signal
    assert set(choice.chosen.values()) == {"mpae+clinical"}
    assert auroc(table.labels[:, 0], choice.logits[:, 0]) > 0.95
