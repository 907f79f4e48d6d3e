"""Model selection keeps a classifier for every combination of views a case can arrive with."""

import json

import numpy as np
import pytest

from orthodiff_auto.classification.metrics_io import (
    PREDICTIONS_CSV,
    subset_predictions_path,
    write_validation_predictions,
)
from orthodiff_auto.inference.predictor import Predictor
from orthodiff_auto.pipeline.model_selection import choose_per_view_combination

FINDINGS = ["a", "b"]
RNG = np.random.default_rng(0)
CASES = [f"c{i:02d}" for i in range(40)]
LABELS = np.stack([np.arange(40) % 2, (np.arange(40) // 2) % 2], axis=1)


def scores(quality: float) -> np.ndarray:
    """Probabilities whose AUROC grows with ``quality`` (0: noise, 1: perfect)."""
    return np.clip(quality * LABELS + (1 - quality) * RNG.random(LABELS.shape), 0, 1)


def run(results, name, variant, views, preds, subsets=None):
    fold = results / "cls" / name / variant / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_final.pt").write_bytes(b"")
    (fold / "summary.json").write_text(json.dumps({"views": views}))
    write_validation_predictions(fold / PREDICTIONS_CSV, CASES, FINDINGS, preds, LABELS)
    for subset, p in (subsets or {}).items():
        write_validation_predictions(subset_predictions_path(fold, subset), CASES, FINDINGS, p, LABELS)
    return {"views": views, "fold_dirs": [str(fold)]}


def test_each_view_combination_gets_the_best_reader(tmp_path):
    # fused reads sag+cor best; with only cor its masked branch is best; with only sag the sag model is best
    candidates = {
        "sag": {"scratch": run(tmp_path, "sag", "scratch", ["sag"], scores(0.6))},
        "cor": {"scratch": run(tmp_path, "cor", "scratch", ["cor"], scores(0.1))},
        "fused": {"scratch_gate": run(tmp_path, "fused", "scratch_gate", ["sag", "cor"], scores(0.9),
                                      {("sag",): scores(0.2), ("cor",): scores(0.5)})},
    }
    chosen = choose_per_view_combination(candidates, ["sag", "cor"], FINDINGS)
    assert set(chosen) == {"sag+cor", "sag", "cor"}
    assert chosen["sag+cor"]["label"] == "fused/scratch_gate"
    assert chosen["sag"]["label"] == "sag/scratch"
    assert chosen["cor"]["label"] == "fused/scratch_gate"
    # every competitor that can read the combination was scored, on the same cases, with a CI beside the winner
    assert set(chosen["sag"]["compared"]) == {"sag/scratch", "fused/scratch_gate"}
    assert chosen["sag+cor"]["n_cases"] == len(CASES)
    low, high = chosen["sag+cor"]["ci"]
    assert low <= chosen["sag+cor"]["macro_auroc"] <= high


def test_a_view_no_classifier_reads_has_no_entry(tmp_path):
    candidates = {"sag": {"scratch": run(tmp_path, "sag", "scratch", ["sag"], scores(0.5))}}
    chosen = choose_per_view_combination(candidates, ["sag", "ax"], FINDINGS)
    assert set(chosen) == {"sag+ax", "sag"}  # "ax" alone: nothing reads it
    assert chosen["sag+ax"]["label"] == chosen["sag"]["label"] == "sag/scratch"


@pytest.mark.parametrize("views, expected", [
    ({"sag", "cor", "ax"}, "fused/x"), ({"sag"}, "sag/x"), ({"cor", "ax"}, "fused/x"), ({"ax"}, "fused/x"),
])
def test_predictor_picks_the_classifier_chosen_for_the_case_views(views, expected):
    predictor = Predictor.__new__(Predictor)
    predictor.classifier_by_views = {frozenset({"sag", "cor", "ax"}): "fused/x", frozenset({"sag"}): "sag/x",
                                     frozenset({"cor", "ax"}): "fused/x", frozenset({"ax"}): "fused/x"}
    assert predictor.classifier_for(views) == expected


def test_predictor_falls_back_to_the_largest_covered_subset():
    predictor = Predictor.__new__(Predictor)
    predictor.classifier_by_views = {frozenset({"sag"}): "sag/x", frozenset({"cor"}): "cor/x"}
    assert predictor.classifier_for({"sag", "ax"}) == "sag/x"
    assert predictor.classifier_for({"ax"}) is None


def test_the_nested_estimate_chooses_each_fold_without_its_labels(tmp_path):
    """Model A is better on folds 0-3, model B on fold 4 by so much that B wins pooled: the nested estimate
    chooses fold 4's model on folds 0-3 (A) and records the choice per fold; fold 4's labels do not change it."""
    rng = np.random.default_rng(0)

    def local(quality):
        return np.clip(quality * LABELS + (1 - quality) * rng.random(LABELS.shape), 0, 1)

    fold_of = {c: str(i % 5) for i, c in enumerate(CASES)}
    in_fold_4 = np.array([fold_of[c] == "4" for c in CASES])[:, None]
    a = np.where(in_fold_4, local(0.0), local(0.5))
    b = np.where(in_fold_4, local(1.0), local(0.35))
    candidates = {"sag": {"a": run(tmp_path, "sag", "a", ["sag"], a), "b": run(tmp_path, "sag", "b", ["sag"], b)}}
    chosen = choose_per_view_combination(candidates, ["sag"], FINDINGS, fold_of)["sag"]
    assert chosen["label"] == "sag/b"  # the pooled winner, thanks to fold 4
    assert chosen["chosen_per_fold"]["4"] == "sag/a"
    assert chosen["nested_macro_auroc"] < chosen["macro_auroc"]
    from orthodiff_auto.pipeline.model_selection import nested_selection
    scored = {"sag/a": (CASES, a, LABELS.copy()), "sag/b": (CASES, b, LABELS.copy())}
    flipped = {k: (ids, p, np.where(in_fold_4, 1 - y, y)) for k, (ids, p, y) in scored.items()}
    assert nested_selection(flipped, fold_of, FINDINGS)["chosen_per_fold"]["4"] == "sag/a"
    # without splits, nothing nested is recorded
    assert "nested_macro_auroc" not in choose_per_view_combination(candidates, ["sag"], FINDINGS)["sag"]


def test_a_reader_replaces_the_macro_winner_on_a_finding_only_when_clearly_better():
    """The rule: the finding's best pooled AUROC replaces the macro winner only when the paired bootstrap interval
    of its gain lies above zero; a challenger ahead by noise alone is recorded and not chosen."""
    from orthodiff_auto.pipeline.model_selection import finding_reader
    from orthodiff_auto.training.classification_metrics import auroc
    rng = np.random.default_rng(1)
    y = LABELS[:, 0]
    default = np.clip(0.3 * y + 0.7 * rng.random(len(y)), 0, 1)
    # another reader of the same quality whose pooled AUROC is ahead by a little, by chance
    noisy = next(p for p in (np.clip(0.3 * y + 0.7 * rng.random(len(y)), 0, 1) for _ in range(200))
                 if 0 < auroc(y, p) - auroc(y, default) < 0.08)
    kept = finding_reader({"A": default, "B": noisy}, y, "A")
    assert kept["reader"] == "A" and kept["challenger"] == "B" and kept["gain_ci"][0] <= 0 < kept["gain_ci"][1]
    assert kept["auroc"] == pytest.approx(auroc(y, default)) and kept["compared"]["B"] > kept["compared"]["A"]
    clear = np.clip(0.9 * y + 0.1 * rng.random(len(y)), 0, 1)
    replaced = finding_reader({"A": default, "B": noisy, "C": clear}, y, "A")
    assert replaced["reader"] == "C" and replaced["default"] == "A" and replaced["gain_ci"][0] > 0
    assert replaced["ci"][0] <= replaced["auroc"] <= replaced["ci"][1]
    # a tie, or the macro winner best on the finding: no challenger
    assert "challenger" not in finding_reader({"A": default, "B": default.copy()}, y, "A")
    assert finding_reader({"A": clear, "B": default}, y, "A")["reader"] == "A"


def test_each_finding_gets_its_reader_in_every_view_combination(tmp_path):
    """A wins the macro AUROC (finding a perfectly, b by chance); B reads b far better: b's reader is B, a's is A,
    for each combination of views that both read, with the nested per-finding estimate beside it."""
    a = np.stack([LABELS[:, 0] * 0.8 + 0.1, np.full(len(CASES), 0.5)], axis=1)
    b = np.stack([0.9 - 0.8 * LABELS[:, 0], LABELS[:, 1] * 0.8 + 0.1], axis=1)
    candidates = {"sag": {"A": run(tmp_path, "sag", "A", ["sag"], a), "B": run(tmp_path, "sag", "B", ["sag"], b)}}
    fold_of = {c: str(i % 5) for i, c in enumerate(CASES)}
    chosen = choose_per_view_combination(candidates, ["sag", "cor"], FINDINGS, fold_of)
    for key in ("sag+cor", "sag"):
        assert chosen[key]["label"] == "sag/A"
        per_finding = chosen[key]["per_finding"]
        assert per_finding["a"]["reader"] == "sag/A" and per_finding["b"]["reader"] == "sag/B"
        assert per_finding["b"]["compared"] == pytest.approx({"sag/A": 0.5, "sag/B": 1.0})
        assert per_finding["b"]["nested_auroc"] == pytest.approx(1.0)
        assert set(per_finding["b"]["chosen_per_fold"]) == set(fold_of.values())
