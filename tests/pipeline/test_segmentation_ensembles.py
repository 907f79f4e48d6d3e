"""nnU-Net's ensembles of two configurations in model selection: every pair of a view's runs that kept their
validation probabilities is scored by the Dice of the averaged probabilities on the view's grid, and wins only
when better than the best single run there; an anatomy reader keeps the segmentation it was fitted on."""

import json

import numpy as np
import pytest

from orthodiff_auto.classification.metrics_io import PREDICTIONS_CSV, write_validation_predictions
from orthodiff_auto.inference.model_dir import ModelDescription, TaskChoice
from orthodiff_auto.pipeline.model_selection import find_best_configuration
from orthodiff_auto.plans.schema import Budget
from orthodiff_auto.preprocessing.stages import run_fingerprint, run_plan, run_preprocess, validated_dataset
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.segmentation.probabilities import VALIDATION_PROBABILITIES, write_probabilities
from tests.conftest import sphere_scan, view_geometry, write_sphere_dataset

CASES = ["c0", "c1", "c2", "c3"]
FOLDS = {0: ["c0", "c1"], 1: ["c2", "c3"]}


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    """Four tiny labelled sag scans (background, ball, box), preprocessed, and one finding."""
    base = tmp_path_factory.mktemp("ensembles")
    rng = np.random.default_rng(0)

    def scan(i, view):
        g = view_geometry(view, shape=(4, 16, 16), spacing=(3.0, 1.0, 1.0))
        return (*sphere_scan(g.shape, rng), g)

    raw = write_sphere_dataset(base / "raw", CASES, ("sag",), {"background": 0, "ball": 1, "box": 2},
                               {"f1": lambda i: i % 2}, scan)
    ds = validated_dataset(raw)
    run_fingerprint(ds, base / "pp", num_workers=1, progress=False)
    run_plan(base / "pp", Budget("cpu", 0.25))
    run_preprocess(ds, base / "pp", num_workers=1, progress=False)
    return base / "pp"


def reference(pp, case):
    return np.asarray(PreprocessedDataset(pp, "sag").load_numpy(case)[1][0])


def noisy(ref, seed, noise=2.0):
    """Probabilities whose argmax is the reference where the noise allows."""
    rng = np.random.default_rng(seed)
    logits = 3.0 * (np.arange(3)[:, None, None, None] == ref[None]) + noise * rng.normal(size=(3, *ref.shape))
    e = np.exp(logits - logits.max(0))
    return e / e.sum(0)


def wrong(ref):
    """Certain of the next class everywhere: always wrong."""
    return (np.arange(3)[:, None, None, None] == (ref[None] + 1) % 3).astype(np.float32)


def seg_run(results, pp, variant, configuration, probabilities, dice=0.5):
    """A finished two-fold run whose summary gives every validation case ``dice`` and whose folds kept the
    validation probabilities ``probabilities(case)`` (None: none kept)."""
    for fold, cases in FOLDS.items():
        d = results / "seg" / "sag" / variant / f"fold_{fold}"
        d.mkdir(parents=True)
        per_case = {c: {"metrics": {"ball": {"dice": dice}, "box": {"dice": dice}}} for c in cases}
        (d / "summary.json").write_text(json.dumps({"configuration": configuration, "per_case": per_case,
                                                    "mean": {"mean": {"dice": {"mean": dice}}}}))
        (d / "checkpoint_final.pt").write_bytes(f"{variant} {fold}".encode())
        if probabilities is not None:
            for c in cases:
                write_probabilities(d / VALIDATION_PROBABILITIES, c, probabilities(c))


def stored(results, variant, case):
    """The probabilities a run's file holds (float16, the smallest values as 0)."""
    fold = next(k for k, cases in FOLDS.items() if case in cases)
    with np.load(results / "seg" / "sag" / variant / f"fold_{fold}" / VALIDATION_PROBABILITIES / f"{case}.npz") as z:
        return z["probabilities"].astype(np.float32)


def hand_dice(probabilities, ref):
    """The pooled mean over cases of each case's mean Dice over ball and box, computed here directly."""
    means = []
    for p, r in zip(probabilities, ref):
        pred = p.argmax(0)
        dice = []
        for k in (1, 2):
            total = (pred == k).sum() + (r == k).sum()
            if total:
                dice.append(2 * ((pred == k) & (r == k)).sum() / total)
        if dice:
            means.append(np.mean(dice))
    return float(np.mean(means))


def test_a_pair_is_scored_by_the_dice_of_its_averaged_probabilities_and_wins_when_better(preprocessed, tmp_path):
    results = tmp_path / "results"
    refs = {c: reference(preprocessed, c) for c in CASES}
    a = {c: noisy(refs[c], 1 + i) for i, c in enumerate(CASES)}
    b = {c: noisy(refs[c], 11 + i) for i, c in enumerate(CASES)}
    seg_run(results, preprocessed, "scratch", "3d_fullres", a.get, dice=0.8)  # the best single run
    seg_run(results, preprocessed, "2d_scratch", "2d", b.get, dice=0.7)
    seg_run(results, preprocessed, "pretrained", "3d_fullres", None, dice=0.6)  # kept none: in no pair
    lines = []
    description = find_best_configuration(preprocessed, tmp_path / "model", results, folds=(0, 1), log=lines.append)
    pairs = description.candidates["segmentation_ensembles"]["sag"]
    assert set(pairs) == {"2d_scratch+scratch"}
    pair = pairs["2d_scratch+scratch"]
    a_kept = {c: stored(results, "scratch", c) for c in CASES}
    b_kept = {c: stored(results, "2d_scratch", c) for c in CASES}
    by_hand = hand_dice([(a_kept[c] + b_kept[c]) / 2 for c in CASES], [refs[c] for c in CASES])
    alone = hand_dice([a_kept[c] for c in CASES], [refs[c] for c in CASES])
    assert pair["mean_dice"] == pytest.approx(by_hand, abs=1e-9) and pair["n_cases"] == 4
    assert pair["ci"][0] <= pair["mean_dice"] <= pair["ci"][1]
    singles = description.candidates["segmentation"]["sag"]
    assert singles["scratch"]["grid"]["mean_dice"] == pytest.approx(alone, abs=1e-9)
    assert by_hand > alone  # the averaged noise: better than the best single run on the same grid
    chosen = description.segmentation["sag"]
    assert chosen.variant == "2d_scratch+scratch" and chosen.checkpoints == ()
    assert [(m.variant, m.configuration) for m in chosen.members] == [("2d_scratch", "2d"), ("scratch", "3d_fullres")]
    assert chosen.configuration_name == "2d+3d_fullres"
    model = tmp_path / "model"
    for member in chosen.members:  # both members' folds, under seg/<view>/<variant>/
        assert member.checkpoints == (f"seg/sag/{member.variant}/fold_0.pt", f"seg/sag/{member.variant}/fold_1.pt")
        assert (model / member.checkpoints[1]).read_bytes() == f"{member.variant} 1".encode()
    loaded = ModelDescription.load(model).segmentation["sag"]
    assert loaded == chosen and loaded.stages() == chosen.members
    assert any(line.startswith(" * 2d_scratch+scratch: mean Dice") for line in lines)
    from orthodiff_auto.pipeline.auto import cv_report
    report = cv_report(description).splitlines()
    assert any(line.startswith(" * seg sag   2d_scratch+scratch") for line in report)
    assert f"(the best single run there {alone:.3f}):" in "\n".join(report)

    # a partner that is always wrong drags the average below the single run: the single run stays
    worse = tmp_path / "worse"
    seg_run(worse, preprocessed, "scratch", "3d_fullres", a.get, dice=0.8)
    seg_run(worse, preprocessed, "2d_scratch", "2d", lambda c: wrong(refs[c]), dice=0.7)
    description = find_best_configuration(preprocessed, tmp_path / "model2", worse, folds=(0, 1), log=lambda *_: 0)
    pair = description.candidates["segmentation_ensembles"]["sag"]["2d_scratch+scratch"]
    assert pair["mean_dice"] < description.candidates["segmentation"]["sag"]["scratch"]["grid"]["mean_dice"]
    assert description.segmentation["sag"].variant == "scratch" and not description.segmentation["sag"].members


def test_model_folders_of_format_4_load(tmp_path):
    """A format-4 model.json (before ensembles) loads: no members, no reader segmentations; an ensemble's choice
    round-trips through model.json."""
    single = TaskChoice("sag", "2d_scratch", ("seg/sag/fold_0.pt",), {"mean_dice": 0.5}, "2d")
    d = ModelDescription({"name": "T"}, {"sag": single}, None).to_dict()
    d["format"] = "orthodiff_auto.model/4"
    del d["reader_segmentations"]
    tmp_path.joinpath("model.json").write_text(json.dumps(d))
    loaded = ModelDescription.load(tmp_path)
    assert loaded.segmentation["sag"] == single and loaded.segmentation["sag"].members == ()
    assert loaded.reader_segmentations == {}
    pair = TaskChoice("cor", "2d_scratch+scratch", (), {}, members=(
        single, TaskChoice("cor", "scratch", ("seg/cor/scratch/fold_0.pt",), {}, "3d_fullres")))
    ModelDescription({"name": "T"}, {"cor": pair}, None).save(tmp_path)
    assert ModelDescription.load(tmp_path).segmentation["cor"] == pair


def test_an_anatomy_reader_keeps_the_segmentation_it_was_fitted_on(preprocessed, tmp_path):
    """The anatomy reader's folds read the 3d_fullres run (``segmentation_read``) and model selection chooses 2d
    for the view: that run goes into the model folder for the reader (``reader_segmentations``); a reader fitted
    on the chosen run needs none."""
    results = tmp_path / "results"
    seg_run(results, preprocessed, "scratch", "3d_fullres", None, dice=0.6)
    seg_run(results, preprocessed, "2d_scratch", "2d", None, dice=0.8)
    labels = np.array([[i % 2] for i in range(len(CASES))])
    for fold, cases in FOLDS.items():
        d = results / "cls" / "fused" / "anatomy" / f"fold_{fold}"
        d.mkdir(parents=True)
        (d / "checkpoint_final.pt").write_bytes(b"")
        (d / "summary.json").write_text(json.dumps({
            "views": ["sag"], "segmentation_read": {"sag": str(results / "seg" / "sag" / "scratch" / f"fold_{fold}")}}))
        rows = [CASES.index(c) for c in cases]
        write_validation_predictions(d / PREDICTIONS_CSV, cases, ["f1"], labels[rows] * 0.8 + 0.1, labels[rows])
    lines = []
    description = find_best_configuration(preprocessed, tmp_path / "model", results, folds=(0, 1), log=lines.append)
    assert description.segmentation["sag"].variant == "2d_scratch"
    fitted_on = description.reader_segmentations["fused/anatomy"]["sag"]
    assert (fitted_on.variant, fitted_on.configuration) == ("scratch", "3d_fullres")
    assert (tmp_path / "model" / fitted_on.checkpoints[0]).read_bytes() == b"scratch 0"
    assert ModelDescription.load(tmp_path / "model").reader_segmentations == description.reader_segmentations
    assert "classification fused/anatomy: reads the sag segmentation it was fitted on, scratch (the view's chosen " \
           "one is 2d_scratch)" in lines
    from orthodiff_auto.pipeline.sharing import referenced_checkpoints
    assert set(fitted_on.checkpoints) <= set(referenced_checkpoints(description))
    # fitted on the chosen run: nothing extra
    for fold in FOLDS:
        summary = results / "cls" / "fused" / "anatomy" / f"fold_{fold}" / "summary.json"
        summary.write_text(summary.read_text().replace("/scratch/", "/2d_scratch/"))
    description = find_best_configuration(preprocessed, tmp_path / "model", results, folds=(0, 1), log=lambda *_: 0)
    assert description.reader_segmentations == {}
