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


# ------------------------------------------------------------------ segmentation: nnU-Net's configurations

def seg_fold(results, variant, fold, dice, configuration=None, previous=None, view="sag"):
    """A finished segmentation fold as training writes it; ``dice``: per validation case, its Dice per structure
    (None: absent from both). Its checkpoints hold their run's name, to follow them into the model folder."""
    from orthodiff_auto.training.segmentation_metrics import aggregate
    from orthodiff_auto.utils.json_safe import json_safe
    d = results / "seg" / view / variant / f"fold_{fold}"
    d.mkdir(parents=True)
    per_case = {f"f{fold}c{i}": {"reference": "raw", "metrics": {
        f"s{j}": {"dice": x, "hd95": 1.0} for j, x in enumerate(case)}} for i, case in enumerate(dice)}
    metrics = [{s: {"dice": float("nan") if m["dice"] is None else m["dice"], "hd95": m["hd95"]}
                for s, m in e["metrics"].items()} for e in per_case.values()]
    summary = {"task": "seg", "view": view, "fold": str(fold), "variant": variant,
               "mean": json_safe(aggregate(metrics)), "per_case": per_case}
    if configuration is not None:  # older runs name none
        summary["configuration"] = configuration
    if previous is not None:
        summary["previous_stage"] = previous
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "checkpoint_final.pt").write_bytes(f"{variant} {fold} final".encode())
    (d / "checkpoint_best.pt").write_bytes(f"{variant} {fold} best".encode())


def seg_workdir(tmp_path):
    pre = tmp_path / "preprocessed"
    pre.mkdir()
    (pre / "dataset.json").write_text(json.dumps({"name": "knee", "findings": []}))
    (pre / "plans.json").write_text(json.dumps({"views": {"sag": {}}}))
    return pre, tmp_path / "results"


LOWRES = {"configuration": "3d_lowres", "variant": "3d_lowres_scratch"}


def test_segmentation_is_chosen_by_the_dice_pooled_over_the_folds_cases(tmp_path):
    """Fold 0 holds 1 validation case, fold 1 nine: the mean of the fold means prefers ``scratch`` (0.75 vs 0.45),
    the pooled mean over the 10 cases ``2d_scratch`` (0.65 vs 0.55), and that is the choice, with its CI."""
    from orthodiff_auto.inference.model_dir import ModelDescription
    from orthodiff_auto.pipeline.model_selection import find_best_configuration
    pre, results = seg_workdir(tmp_path)
    seg_fold(results, "scratch", 0, [[1.0, 1.0]])  # an older run: its summary names no configuration
    seg_fold(results, "scratch", 1, [[0.5, 0.5]] * 9)
    seg_fold(results, "2d_scratch", 0, [[0.2, 0.2]], configuration="2d")
    # a structure absent from both reference and prediction counts for neither the case's mean nor the pool
    seg_fold(results, "2d_scratch", 1, [[0.7, 0.7]] * 8 + [[0.7, None]], configuration="2d")
    lines = []
    find_best_configuration(pre, tmp_path / "model", results, folds=(0, 1), log=lines.append)
    description = ModelDescription.load(tmp_path / "model")
    chosen = description.segmentation["sag"]
    assert (chosen.variant, chosen.configuration, chosen.previous_stage) == ("2d_scratch", "2d", None)
    assert (tmp_path / "model" / "seg" / "sag" / "fold_1.pt").read_bytes() == b"2d_scratch 1 final"
    assert (tmp_path / "model" / "seg" / "sag" / "fold_1_best.pt").read_bytes() == b"2d_scratch 1 best"
    record = description.candidates["segmentation"]["sag"]
    assert record["2d_scratch"]["mean_dice"] == pytest.approx(0.65)
    assert record["scratch"]["mean_dice"] == pytest.approx(0.55)
    # the per-fold numbers stay in the record
    assert record["2d_scratch"]["per_fold"] == pytest.approx([0.2, 0.7])
    assert record["2d_scratch"]["mean_dice_of_folds"] == pytest.approx(0.45)
    assert record["scratch"]["mean_dice_of_folds"] == pytest.approx(0.75)
    assert record["2d_scratch"]["n_cases"] == 10 and record["2d_scratch"]["per_structure"] == pytest.approx(
        {"s0": 0.65, "s1": (0.2 + 0.7 * 8) / 9})
    # a bootstrap interval over the pooled cases beside each candidate's mean
    low, high = record["2d_scratch"]["ci"]
    assert low < 0.65 < high and low >= 0.2 and high <= 0.7
    assert record["scratch"]["ci"][0] < 0.55 < record["scratch"]["ci"][1]
    # each candidate names its configuration (an older summary: 3d_fullres) in model.json and in the log
    assert record["scratch"]["configuration"] == "3d_fullres" and record["2d_scratch"]["configuration"] == "2d"
    assert chosen.cv["configuration"] == "2d" and "fold_dirs" not in chosen.cv
    assert lines[0] == ("segmentation sag: 2d_scratch (2d), chosen by pooled CV mean Dice over the validation "
                        "cases of folds [0, 1]:")
    assert (f" * 2d_scratch (2d): mean Dice 0.650 (95% CI {low:.2f}-{high:.2f}, 10 cases; mean of the fold means "
            "0.450)") in lines
    assert any(line.startswith("   scratch (3d_fullres): mean Dice 0.550 (95% CI ") for line in lines)


def test_a_cascade_is_chosen_with_its_previous_stage(tmp_path):
    from orthodiff_auto.inference.model_dir import ModelDescription
    from orthodiff_auto.pipeline.model_selection import find_best_configuration
    from orthodiff_auto.pipeline.sharing import referenced_checkpoints
    pre, results = seg_workdir(tmp_path)
    for fold in (0, 1):
        seg_fold(results, "scratch", fold, [[0.7, 0.7]] * 3)
        seg_fold(results, "3d_lowres_scratch", fold, [[0.6, 0.6]] * 3, configuration="3d_lowres")
        seg_fold(results, "3d_cascade_fullres_scratch", fold, [[0.9, 0.8]] * 3, configuration="3d_cascade_fullres",
                 previous=LOWRES)
    lines = []
    find_best_configuration(pre, tmp_path / "model", results, folds=(0, 1), log=lines.append)
    model = tmp_path / "model"
    description = ModelDescription.load(model)
    chosen = description.segmentation["sag"]
    assert (chosen.variant, chosen.configuration) == ("3d_cascade_fullres_scratch", "3d_cascade_fullres")
    first = chosen.previous_stage
    assert (first.name, first.variant, first.configuration, first.previous_stage) == (
        "sag", "3d_lowres_scratch", "3d_lowres", None)
    assert chosen.stages() == (first, chosen)
    assert first.checkpoints == ("seg/sag/3d_lowres_scratch/fold_0.pt", "seg/sag/3d_lowres_scratch/fold_1.pt")
    assert chosen.checkpoints == ("seg/sag/fold_0.pt", "seg/sag/fold_1.pt")
    for fold in (0, 1):
        assert (model / first.checkpoints[fold]).read_bytes() == f"3d_lowres_scratch {fold} final".encode()
        assert (model / "seg" / "sag" / "3d_lowres_scratch" / f"fold_{fold}_best.pt").read_bytes() == \
            f"3d_lowres_scratch {fold} best".encode()
        assert (model / chosen.checkpoints[fold]).read_bytes() == f"3d_cascade_fullres_scratch {fold} final".encode()
    assert first.cv["mean_dice"] == pytest.approx(0.6)
    assert chosen.cv["previous_stage"] == LOWRES
    # sharing checks (and exports) the previous stage's checkpoints too
    assert set(first.checkpoints) <= set(referenced_checkpoints(description))
    assert lines[0].startswith("segmentation sag: 3d_cascade_fullres_scratch (3d_cascade_fullres) after "
                               "3d_lowres_scratch (3d_lowres), chosen by")
    # model.json holds the previous stage only where there is one
    d = json.loads((model / "model.json").read_text())
    assert d["format"] == "orthodiff_auto.model/5"
    assert d["segmentation"]["sag"]["previous_stage"]["variant"] == "3d_lowres_scratch"
    assert "previous_stage" not in d["segmentation"]["sag"]["previous_stage"]


def test_a_cascade_whose_previous_stage_lacks_folds_is_skipped(tmp_path):
    from orthodiff_auto.inference.model_dir import ModelDescription
    from orthodiff_auto.pipeline.model_selection import find_best_configuration
    pre, results = seg_workdir(tmp_path)
    for fold in (0, 1):
        seg_fold(results, "scratch", fold, [[0.7, 0.7]] * 3)
        seg_fold(results, "3d_cascade_fullres_scratch", fold, [[0.9, 0.9]] * 3, configuration="3d_cascade_fullres",
                 previous=LOWRES)
    seg_fold(results, "3d_lowres_scratch", 0, [[0.6, 0.6]] * 3, configuration="3d_lowres")  # fold 1 unfinished
    lines = []
    find_best_configuration(pre, tmp_path / "model", results, folds=(0, 1), log=lines.append)
    assert ("segmentation sag: 3d_cascade_fullres_scratch skipped: its previous stage 3d_lowres_scratch has not "
            "finished folds [0, 1]") in lines
    description = ModelDescription.load(tmp_path / "model")
    assert description.segmentation["sag"].variant == "scratch"
    assert set(description.candidates["segmentation"]["sag"]) == {"scratch"}
    assert not (tmp_path / "model" / "seg" / "sag" / "3d_lowres_scratch").exists()
    # with fold 0 alone, the previous stage has every requested fold: the cascade competes and wins
    find_best_configuration(pre, tmp_path / "model0", results, folds=(0,), log=lines.append)
    assert ModelDescription.load(tmp_path / "model0").segmentation["sag"].previous_stage.variant == "3d_lowres_scratch"


def test_model_folders_of_format_3_load_as_3d_fullres(tmp_path):
    """A format-3 model.json (before configurations) loads: its segmentation is the view's 3d_fullres, without a
    previous stage, and saving it again writes the same choice (nothing added); a description names no previous
    stage where it has none."""
    from orthodiff_auto.inference.model_dir import ModelDescription
    from orthodiff_auto.pipeline.model_selection import find_best_configuration
    pre, results = seg_workdir(tmp_path)
    seg_fold(results, "pretrained", 0, [[0.7, 0.6]] * 2)
    find_best_configuration(pre, tmp_path / "model", results, folds=(0,), log=lambda *_: None)
    d = json.loads((tmp_path / "model" / "model.json").read_text())
    assert d["segmentation"]["sag"]["configuration"] == "3d_fullres"
    assert "previous_stage" not in d["segmentation"]["sag"]
    for old in ("orthodiff_auto.model/3", "orthodiff_auto.model/2"):
        d["format"] = old
        del d["segmentation"]["sag"]["configuration"]
        (tmp_path / "model" / "model.json").write_text(json.dumps(d))
        description = ModelDescription.load(tmp_path / "model")
        chosen = description.segmentation["sag"]
        assert (chosen.variant, chosen.configuration_name, chosen.previous_stage) == ("pretrained", "3d_fullres", None)
        assert chosen.stages() == (chosen,)
        assert description.to_dict()["segmentation"] == d["segmentation"]
        d["segmentation"]["sag"]["configuration"] = "3d_fullres"
