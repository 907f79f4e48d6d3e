"""kill -9 at seeded points of plan_and_preprocess, pretrain, train_fold, predict_folder and auto, then the
same command again (with --continue where it needs it): no incomplete file under a final name after the kill,
and the same artifacts as an uninterrupted run (digests of their content, see artifacts.py for what is left
out). One seeded rename point per command here; benchmarks/fault_injection.py draws many more."""

import shutil

import numpy as np
import pandas as pd
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.inference.folder import merge_findings
from tests.reliability.harness import differences, draw_points, output_digest

SEED = 20261130
COMMANDS = ["plan_and_preprocess", "pretrain", "train_fold", "predict_folder", "auto"]


def rerun_here(args: list) -> tuple[int, str]:
    # the re-run in this process (torch is imported already: seconds saved per trial); the killed run is not
    return main([str(a) for a in args]), "(stderr above)"


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_killed_run_resumes_to_the_same_artifacts(suite, name, tmp_path):
    reference = suite.reference(name)
    assert reference.renames, f"{name}: the reference run published no file"
    (point,) = draw_points(np.random.default_rng([SEED, COMMANDS.index(name)]), reference, renames=1)
    trial = suite.trial(name, point, tmp_path / "run", rerun=rerun_here)
    assert trial.killed, trial.explain()
    assert trial.passed, trial.explain()


@pytest.mark.slow
def test_auto_finishes_a_pretraining_killed_after_its_encoder(suite, tmp_path):
    # the encoder is published before the sampling figure and pretrain_summary.json: auto used to count the view
    # as pretrained once the encoder existed, and the re-run never wrote the other two. The state such a kill
    # leaves: preprocessing done, the pretraining folder without those two, nothing after it
    work = tmp_path / "work"
    shutil.copytree(suite.inputs.work / "preprocessed", work / "preprocessed")
    pretrain_dir = work / "results" / "pretrain" / "sag"
    shutil.copytree(suite.inputs.work / "results" / "pretrain" / "sag", pretrain_dir,
                    ignore=shutil.ignore_patterns("pretrain_summary.json", "ddim_samples.png"))
    assert main([str(a) for a in suite.scenarios["auto"].resume(tmp_path)]) == 0
    reference = output_digest(suite.inputs.work / "results" / "pretrain" / "sag", suite.inputs.root)
    assert not differences(reference, output_digest(pretrain_dir, suite.inputs.root))


def test_findings_merge_ignores_a_killed_runs_temporary(tmp_path):
    # a kill just before a case's findings part was renamed into place leaves ".<case>.csv.<random>.tmp.csv"
    # beside the finished parts; it must not become a second row for that case
    parts = tmp_path / ".findings" / "run1"
    parts.mkdir(parents=True)
    row = pd.DataFrame([{"case_id": "c1", "views": "sag", "f": 0.25, "f_call": 0, "f_spread": 0.0}])
    row.to_csv(parts / "c1.csv", index=False)
    row.to_csv(parts / ".c1.csv.x1y2.tmp.csv", index=False)
    table = pd.read_csv(merge_findings(tmp_path, ["f"], "run1", ["c1"]), dtype={"case_id": str})
    assert table["case_id"].tolist() == ["c1"]
