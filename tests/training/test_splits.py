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


def _knee_like_table(n=23, seed=0):
    """Eight findings at the synthetic knee's prevalences (0.2-0.35) and three sites: a fold of a small dataset."""
    rng = np.random.default_rng(seed)
    prevalence = {"f1": 0.3, "f2": 0.2, "f3": 0.35, "f4": 0.25, "f5": 0.25, "f6": 0.2, "f7": 0.2, "f8": 0.35}
    ids = [f"case{i:03d}" for i in range(n)]
    df = pd.DataFrame({name: (rng.random(n) < p).astype(int) for name, p in prevalence.items()},
                      index=pd.Index(ids, name="case_id"))
    df["site"] = rng.choice(["A", "B", "C"], n)
    return ids, df, list(prevalence)


@pytest.mark.parametrize("table_seed", [0, 1, 2])
def test_label_fraction_keeps_a_positive_and_a_negative_of_every_finding(table_seed):
    ids, df, findings = _knee_like_table(seed=table_seed)
    assert df[findings].any().all() and not df[findings].all().any()  # every finding has both classes
    for subset_seed in range(5):
        for fraction in (0.1, 0.25, 0.5):
            kept = subsample_labelled(ids, fraction, subset_seed, df, findings)
            assert len(kept) >= round(fraction * len(ids))
            for name in findings:
                assert df.loc[kept, name].sum() >= 1, (fraction, subset_seed, name)
                assert (df.loc[kept, name] == 0).sum() >= 1, (fraction, subset_seed, name)


def test_label_fraction_subsets_nested_per_seed_and_different_between_seeds():
    ids, df, findings = _knee_like_table(n=60)
    by_seed = []
    for seed in range(4):
        subsets = [subsample_labelled(ids, f, seed, df, findings) for f in (0.1, 0.25, 0.5, 1.0)]
        for small, large in zip(subsets, subsets[1:]):
            assert set(small) <= set(large)
        assert subsets[-1] == sorted(ids)
        assert subsample_labelled(ids, 0.25, seed, df, findings) == subsets[1]  # fixed for a seed
        by_seed.append(tuple(subsets[1]))
    assert len(set(by_seed)) == 4


def test_label_fraction_follows_the_pool_proportions():
    """Beyond the cases that cover every finding, the subset is stratified: at half of 60 cases each finding's
    count is within 2 of half its total, and each site's within 2 of half its count."""
    ids, df, findings = _knee_like_table(n=60, seed=3)
    for seed in range(3):
        kept = subsample_labelled(ids, 0.5, seed, df, findings)
        assert len(kept) == 30
        for name in findings:
            assert abs(df.loc[kept, name].sum() - df[name].sum() / 2) <= 2, name
        for site, count in df["site"].value_counts().items():
            assert abs((df.loc[kept, "site"] == site).sum() - count / 2) <= 2, site


def test_label_fraction_without_a_finding_in_the_pool_asks_nothing_of_it():
    ids, df, findings = _knee_like_table()
    df["f2"] = 0  # no positive in the pool: none can be kept; the subset stays at its size
    kept = subsample_labelled(ids, 0.5, 0, df, findings)
    assert len(kept) == round(0.5 * len(ids)) and df.loc[kept, "f2"].sum() == 0
