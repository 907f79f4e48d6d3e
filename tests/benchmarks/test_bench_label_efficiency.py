"""benchmarks/bench_label_efficiency.py: the out-of-fold pooling averaged over subset seeds, the paired bootstrap
CIs, the report and the learning-curve figure (on run folders written here; the benchmark itself trains)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from orthodiff_auto.classification.metrics_io import PREDICTIONS_CSV, write_validation_predictions

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import bench_label_efficiency as bench  # noqa: E402  (a script beside its helpers, not a package)

FINDINGS = ["tear", "effusion"]
LABELS = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 2)  # two folds of four validation cases


def _runs(root: Path, task: str, dice: dict, probs: dict) -> dict:
    """{(subset seed, arm): [fold folders]}: seg runs with per-case Dice ``dice[key]`` (8, structures), cls runs
    with probabilities ``probs[key]`` (8, 2)."""
    runs = {}
    for key in dice if task == "seg" else probs:
        folders = []
        for fold in (0, 1):
            folder = root / task / f"{key[1]}_{key[0]}" / f"fold_{fold}"
            folder.mkdir(parents=True)
            cases = [f"c{fold}{i}" for i in range(4)]
            rows = slice(4 * fold, 4 * fold + 4)
            summary = {"num_training_scans": 3 + fold, "findings": FINDINGS,
                       "config": {"num_epochs": 2, "iterations_per_epoch": 5}}
            if task == "seg":
                summary["per_case"] = {c: {"metrics": {f"s{j}": {"dice": d} for j, d in enumerate(v)}}
                                       for c, v in zip(cases, dice[key][rows])}
            else:
                write_validation_predictions(folder / PREDICTIONS_CSV, cases, FINDINGS, probs[key][rows], LABELS[rows])
            (folder / "summary.json").write_text(json.dumps(summary))
            folders.append(folder)
        runs[key] = folders
    return runs


def test_seg_mean_over_subset_seeds_with_paired_difference(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, size=(8, 3))
    dice = {(0, "scratch"): base, (1, "scratch"): base + 0.02,
            (0, "pretrained"): base + 0.1, (1, "pretrained"): base + 0.14}
    out = bench.evaluate_fraction(_runs(tmp_path, "seg", dice, {}), "seg", n_resamples=300)
    assert out["scratch"]["value"] == pytest.approx(base.mean() + 0.01)  # pooled over 8 cases, mean of 2 seeds
    assert out["pretrained"]["value"] == pytest.approx(base.mean() + 0.12)
    assert out["scratch"]["n_cases"] == 8 and out["scratch"]["subset_seeds"] == 2
    lo, hi = out["scratch"]["ci"]
    assert lo < out["scratch"]["value"] < hi and hi - lo > 0.02
    # every seed and arm sees the same resampled cases: a constant gain has a zero-width interval
    assert out["pretrained"]["minus_scratch"] == pytest.approx(0.11)
    assert out["pretrained"]["minus_scratch_ci"] == pytest.approx([0.11, 0.11])
    assert out["training_scans_per_fold"] == [3, 4]


def test_cls_macro_auroc_and_refusal_of_different_cases(tmp_path):
    rng = np.random.default_rng(1)
    right, wrong = 0.2 + 0.6 * LABELS, 0.8 - 0.6 * LABELS
    probs = {(0, "scratch"): wrong, (0, "pretrained"): right, (1, "scratch"): rng.random((8, 2)),
             (1, "pretrained"): right}
    runs = _runs(tmp_path, "cls", {}, probs)
    out = bench.evaluate_fraction(runs, "cls", n_resamples=200)
    noise_auc = np.mean([bench.auroc_bootstrap((FINDINGS, LABELS, probs[1, "scratch"]), 1)[0]])
    assert out["scratch"]["value"] == pytest.approx((0.0 + noise_auc) / 2)
    assert out["pretrained"]["value"] == 1.0
    assert out["pretrained"]["minus_scratch"] == pytest.approx(1.0 - out["scratch"]["value"])
    assert out["pretrained"]["minus_scratch_ci"][0] > 0.3
    runs[0, "scratch"] = runs[0, "scratch"][:1]  # one fold missing: the arms no longer pool the same cases
    with pytest.raises(SystemExit, match="different cases"):
        bench.evaluate_fraction(runs, "cls", n_resamples=10)


def test_report_table_and_learning_curve_png(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.uniform(0.2, 0.6, size=(8, 3))
    evaluation = {}
    for fraction, gain in (("0.1", 0.05), ("1", 0.0)):
        dice = {(0, "scratch"): base, (0, "pretrained"): base + gain}
        evaluation[fraction] = bench.evaluate_fraction(_runs(tmp_path / fraction, "seg", dice, {}), "seg", 100)
    report = {"view": "sag", "encoder": "enc.pt", "config": "demo", "overrides": [], "folds": ["0", "1"],
              "subset_seeds": [0], "bootstrap": 100, "fine_tuning_iterations": 10, "pretraining_iterations": 400,
              "evaluation": {"seg": evaluation},
              "probe": [{"epoch": 1, "iterations": 200, "macro_auroc": 0.61, "timestep": 100, "block": "encoder.stages.2",
                         "num_cases": 8}, None]}
    text = bench.write_report(report, tmp_path / "bench_label_efficiency_sag")
    assert "| 10% | [3, 4] | " in text and "| +0.050 [+0.050, +0.050] |" in text
    assert "(10 fine-tuning iterations at every fraction); encoder enc.pt (400 pretraining iterations)" in text
    assert "| 1 | 200 | 0.610 | 100, encoder.stages.2 |" in text
    png = tmp_path / "bench_label_efficiency_sag.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert json.loads((tmp_path / "bench_label_efficiency_sag.json").read_text())["evaluation"]["seg"]["1"]
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[1] > 2 * matplotlib.image.imread(png).shape[0]  # two panels


def test_quick_settings_and_probe_needs_own_pretraining(capsys):
    args = bench.parse_args(["pp", "--quick"])
    assert args.config == "smoke" and args.folds == "0,1" and args.probe_epochs == "1,2"
    with pytest.raises(SystemExit):
        bench.parse_args(["pp", "--pretrained", "enc.pt", "--probe-epochs", "2"])
    assert "--probe-epochs needs" in capsys.readouterr().err
