import json

import numpy as np
import pandas as pd
import pytest

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.splits import fold_cases, load_or_create_splits, make_splits, subsample_labelled


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"case{i:03d}" for i in range(n)]
    df = pd.DataFrame(
        {"rare": (rng.random(n) < 0.12).astype(int), "common": (rng.random(n) < 0.5).astype(int),
         "mid": (rng.random(n) < 0.25).astype(int), "site": rng.choice(["A", "B", "C"], n, p=[0.6, 0.3, 0.1])},
        index=pd.Index(ids, name="case_id"),
    )
    return ids, df


def test_folds_disjoint_and_cover_all_cases():
    ids, df = _table()
    splits = make_splits(ids, df, ["rare", "common", "mid"])
    vals = [set(s["val"]) for s in splits]
    assert set().union(*vals) == set(ids)
    assert sum(len(v) for v in vals) == len(ids)
    for s in splits:
        assert not set(s["train"]) & set(s["val"])
        assert set(s["train"]) | set(s["val"]) == set(ids)
    assert max(map(len, vals)) - min(map(len, vals)) <= 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_fold_sees_every_finding_and_site_balanced(seed):
    ids, df = _table(seed=seed)
    splits = make_splits(ids, df, ["rare", "common", "mid"])
    for column in ["rare", "common", "mid"]:
        per_fold = [df.loc[s["val"], column].sum() for s in splits]
        total = df[column].sum()
        assert min(per_fold) >= 1, (column, per_fold)
        # stratified: each fold holds close to total/5 positives
        assert max(per_fold) - min(per_fold) <= 2, (column, per_fold)
    for site in "ABC":
        per_fold = [(df.loc[s["val"], "site"] == site).sum() for s in splits]
        assert max(per_fold) - min(per_fold) <= 2, (site, per_fold)


def test_stratified_beats_random_on_rare_finding():
    ids, df = _table(n=50, seed=3)
    strat = make_splits(ids, df, ["rare", "common", "mid"])
    spread = np.ptp([df.loc[s["val"], "rare"].sum() for s in strat])
    assert spread <= 1


def test_splits_stable_and_order_independent():
    ids, df = _table()
    a = make_splits(ids, df, ["rare", "common", "mid"])
    b = make_splits(list(reversed(ids)), df.sample(frac=1, random_state=1), ["rare", "common", "mid"])
    assert a == b
    assert make_splits(ids, df, ["rare", "common", "mid"], seed=7) != a


def test_without_findings_plain_shuffle():
    ids = [f"c{i}" for i in range(11)]
    splits = make_splits(ids)
    assert sorted(len(s["val"]) for s in splits) == [2, 2, 2, 2, 3]


def test_saved_once_and_reused(tmp_path):
    ids, df = _table(n=20)
    path = tmp_path / "splits.json"
    first = load_or_create_splits(path, ids, df, ["rare"])
    path.write_text(json.dumps(first[::-1]))  # a user edit must be respected, not regenerated
    assert load_or_create_splits(path, ids, df, ["rare"]) == first[::-1]
    with pytest.raises(UserInputError, match="differ"):
        load_or_create_splits(path, ids + ["new"], df, ["rare"])


def test_fold_selection():
    ids = [f"c{i}" for i in range(10)]
    splits = make_splits(ids)
    train, val = fold_cases(splits, 2)
    assert set(val) == set(splits[2]["val"]) and not set(train) & set(val)
    assert fold_cases(splits, "all") == (sorted(ids), [])
    with pytest.raises(UserInputError, match="out of range"):
        fold_cases(splits, 5)


def test_too_few_cases():
    with pytest.raises(UserInputError, match="cannot make 5 folds"):
        make_splits(["a", "b"])


def test_label_fraction_fixed_nested_and_bounded():
    ids = [f"c{i:02d}" for i in range(40)]
    tenth = subsample_labelled(ids, 0.1)
    half = subsample_labelled(ids, 0.5)
    assert len(tenth) == 4 and len(half) == 20 and set(tenth) <= set(half)
    assert subsample_labelled(ids, 0.1) == tenth
    assert subsample_labelled(ids, 1.0) == sorted(ids)
    assert len(subsample_labelled(ids[:3], 0.1)) == 1
    with pytest.raises(UserInputError):
        subsample_labelled(ids, 0)
