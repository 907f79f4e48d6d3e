"""benchmarks/bench_transfer.py: its command line, and the pooled, paired evaluation of the runs it trains (on
run folders written here; the benchmark itself trains for minutes even at --size tiny)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orthodiff_auto.classification.metrics_io import PREDICTIONS_CSV, write_validation_predictions

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import bench_transfer  # noqa: E402  (a script beside its helpers, not a package)

FINDINGS = ["tear", "effusion"]


def test_help_lists_the_sizes():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_transfer.py"), "--help"],
                            capture_output=True, text=True, check=True)
    assert "--size {default,large,tiny}" in result.stdout and "--joints" in result.stdout


def _seg_run(folder: Path, dice: dict[str, list[float]]) -> Path:
    folder.mkdir(parents=True)
    per_case = {case: {"metrics": {f"s{i}": {"dice": d} for i, d in enumerate(values)}}
                for case, values in dice.items()}
    (folder / "summary.json").write_text(json.dumps({"per_case": per_case, "num_training_scans": 3}))
    return folder


def _cls_run(folder: Path, cases: list[str], labels: np.ndarray, probs: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"findings": FINDINGS, "num_training_cases": 3}))
    write_validation_predictions(folder / PREDICTIONS_CSV, cases, FINDINGS, probs, labels)
    return folder


def _runs(tmp_path: Path, dice_offset: dict[str, float], scores: dict[str, str]) -> dict:
    """Two folds of four validation cases each; per initialisation Dice = base + offset, and scores that rank
    the positives first ("right"), last ("wrong") or at random ("noise")."""
    rng = np.random.default_rng(0)
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 2)
    base = rng.uniform(0.2, 0.6, size=(8, 3))
    base[0, 2] = np.nan  # a structure absent from one case: left out of that case's mean
    runs = {}
    for init in bench_transfer.INITIALISATIONS:
        probs = {"right": 0.2 + 0.6 * labels, "wrong": 0.8 - 0.6 * labels, "noise": rng.random((8, 2))}[scores[init]]
        seg, cls = [], []
        for fold in (0, 1):
            cases = [f"c{fold}{i}" for i in range(4)]
            rows = slice(4 * fold, 4 * fold + 4)
            seg.append(_seg_run(tmp_path / init / "seg" / str(fold),
                                {c: list(v + dice_offset[init]) for c, v in zip(cases, base[rows])}))
            cls.append(_cls_run(tmp_path / init / "cls" / str(fold), cases, labels[rows], probs[rows]))
        runs["seg", 0.1, init], runs["cls", 0.1, init] = seg, cls
    return runs, base


def test_pooled_metrics_with_paired_differences_and_the_target(tmp_path):
    runs, base = _runs(tmp_path, {"scratch": 0.0, "knee": 0.1, "same": 0.0},
                       {"scratch": "wrong", "knee": "right", "same": "noise"})
    result = bench_transfer.evaluate_joint(runs, [0.1], n_resamples=200)
    seg, cls = result["seg"]["0.1"], result["cls"]["0.1"]
    assert seg["scratch"]["value"] == pytest.approx(np.mean(np.nanmean(base, axis=1)))
    assert seg["scratch"]["n_cases"] == 8 and seg["scratch"]["training_scans_per_fold"] == [3, 3]
    lo, hi = seg["scratch"]["ci"]
    assert lo < seg["scratch"]["value"] < hi
    # the same cases in every resample: a constant improvement has a zero-width interval
    assert seg["knee"]["minus_scratch"] == pytest.approx(0.1)
    assert seg["knee"]["minus_scratch_ci"] == pytest.approx([0.1, 0.1])
    assert cls["scratch"]["value"] == 0.0 and cls["knee"]["value"] == 1.0
    assert cls["knee"]["minus_scratch_ci"] == pytest.approx([1.0, 1.0])
    assert cls["knee"]["per_finding"]["tear"]["auroc"] == 1.0
    assert cls["knee"]["per_finding"]["tear"]["n_positive"] == 4
    report = {"size": "tiny", "settings": vars(bench_transfer.SIZES["tiny"]), "view": "sag", "bootstrap": 200,
              "joints": {"ankle": result}}
    text = bench_transfer.markdown_report(report)
    assert "| ankle | 10% | knee-pretrained | 3/3 | " in text
    assert "knee-pretrained minus scratch macro AUROC +1.000 [+1.000, +1.000], target >= +0.05: met, the whole interval too" in text


def test_initialisations_validated_on_other_cases_are_refused(tmp_path):
    runs, _ = _runs(tmp_path, {"scratch": 0.0, "knee": 0.0, "same": 0.0},
                    {"scratch": "noise", "knee": "noise", "same": "noise"})
    runs["seg", 0.1, "knee"] = runs["seg", 0.1, "knee"][:1]
    with pytest.raises(SystemExit, match="different cases"):
        bench_transfer.evaluate_joint(runs, [0.1], n_resamples=10)


def test_target_verdict_separates_point_estimate_and_interval():
    def report(diff, low):
        knee = {"minus_scratch": diff, "minus_scratch_ci": [low, diff + 0.1]}
        return {"joints": {"ankle": {"cls": {"1": {"knee": {}}, "0.1": {"knee": knee}}}}}

    assert bench_transfer.target_lines(report(0.06, 0.051))[0].endswith("met, the whole interval too")
    assert bench_transfer.target_lines(report(0.06, -0.1))[0].endswith(
        "met by the point estimate only: the interval's lower end is -0.100")
    assert bench_transfer.target_lines(report(0.04, 0.01))[0].endswith("missed")
    assert "(ankle, 10% labels)" in bench_transfer.target_lines(report(0.04, 0.01))[0]
