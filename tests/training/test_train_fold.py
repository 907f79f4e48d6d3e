"""train_fold end to end on a tiny preprocessed dataset: loss falls, resume after a kill, DDP, bad arguments."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from orthodiff_auto.cli import main
from orthodiff_auto.preprocessing.stages import run_fingerprint, run_plan, run_preprocess, validated_dataset
from orthodiff_auto.plans.schema import Budget
from tests.conftest import sphere_scan, view_geometry, write_sphere_dataset

CASES = [f"k{i:02d}" for i in range(8)]


def _raw_dataset(root: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)

    def scan(i, view):
        g = view_geometry(view, shape=(8, 32, 32), spacing=(3.0, 1.0, 1.0))
        return (*sphere_scan(g.shape, rng), g)

    findings = {"f1": lambda i: i % 2, "f2": lambda i: (i // 2) % 2, "site": lambda i: f"s{i % 2}"}
    return write_sphere_dataset(root, CASES, ("sag", "cor"), {"background": 0, "ball": 1, "box": 2}, findings, scan)


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("seg")
    raw = _raw_dataset(base / "raw")
    out = base / "pp"
    ds = validated_dataset(raw)
    run_fingerprint(ds, out, num_workers=1, progress=False)
    run_plan(out, Budget("cpu", 0.5))
    run_preprocess(ds, out, num_workers=1, progress=False)
    return out


def _cli(*args, cwd=None, **kw):
    return subprocess.run([sys.executable, "-m", "orthodiff_auto", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, **kw)


@pytest.mark.slow
def test_smoke_run_lowers_loss_and_validates(preprocessed, tmp_path):
    results = tmp_path / "results"
    rc = main(["train_fold", str(preprocessed), "seg", "sag", "0", "--config", "smoke", "--results", str(results),
               "--set", "num_epochs=4", "--set", "iterations_per_epoch=5"])
    assert rc == 0
    fold = results / "seg" / "sag" / "scratch" / "fold_0"
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    losses = ckpt["history"]["train_loss"]
    assert losses[-1] < losses[0]
    assert ckpt["extras"]["split"]["val"] and not set(ckpt["extras"]["split"]["val"]) & set(ckpt["extras"]["split"]["train"])
    assert ckpt["extras"]["plans"]["views"]["sag"]["segmentation"]["patch_size"]
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["num_validation_scans"] == len(ckpt["extras"]["split"]["val"])
    assert set(summary["mean"]) >= {"ball", "box", "mean"}
    for case, entry in summary["per_case"].items():
        assert entry["reference"] == "raw"
        pred = fold / "validation" / f"{case}_sag.nii.gz"
        assert pred.is_file()
    assert (fold / "progress.png").is_file()
    log = (fold / "training_log.txt").read_text()
    assert "data wait" in log
    assert f"reproducibility: seed 12345, torch {torch.__version__}, {torch.get_num_threads()} intra-op threads" in log
    # splits are made once and shared by every view and task
    splits = json.loads((preprocessed / "splits.json").read_text())
    assert sorted(c for s in splits for c in s["val"]) == CASES


#: runs ``orthodiff ARGS`` and stops it at a known point: once epoch 2's checkpoint_latest.pt is written, the
#: trainer signals it (writes the file argv[1]) and waits to be killed, so the kill always lands mid-run
KILL_AT_EPOCH_2 = """
import sys, time
from orthodiff_auto.cli import main
from orthodiff_auto.training.loop import Trainer
save = Trainer.save
def save_then_wait(self, name, next_epoch):
    save(self, name, next_epoch)
    if name == "checkpoint_latest.pt" and next_epoch == 2:
        open(sys.argv[1], "w").write("epoch 2 saved")
        time.sleep(600)
Trainer.save = save_then_wait
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_kill_and_continue_reaches_same_state(preprocessed, tmp_path, capsys):
    # killed once the epoch-2 checkpoint is written, with 6 epochs left: the kill lands mid-run
    common = ["train_fold", preprocessed, "seg", "cor", "1", "--config", "smoke", "--set", "num_epochs=8",
              "--set", "iterations_per_epoch=3", "--set", "checkpoint_every_epochs=2"]
    assert _cli(*common, "--results", tmp_path / "a").returncode == 0
    fold_b = tmp_path / "b" / "seg" / "cor" / "scratch" / "fold_1"
    saved = tmp_path / "epoch2_saved"
    proc = subprocess.Popen([sys.executable, "-c", KILL_AT_EPOCH_2, str(saved), *map(str, common),
                             "--results", str(tmp_path / "b")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not saved.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)  # waiting for the trainer's signal, not racing it
    assert saved.is_file(), f"the run never reached epoch 2 (exit code {proc.poll()})"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (fold_b / "checkpoint_final.pt").is_file()
    killed_at = torch.load(fold_b / "checkpoint_latest.pt", weights_only=True)["epoch"]
    assert killed_at == 2
    # without --continue an existing run is never overwritten
    assert main([*map(str, common), "--results", str(tmp_path / "b")]) == 2
    assert "--continue" in capsys.readouterr().err
    r = _cli(*common, "--results", tmp_path / "b", "--continue")
    assert r.returncode == 0, r.stderr
    a = torch.load(tmp_path / "a" / "seg" / "cor" / "scratch" / "fold_1" / "checkpoint_final.pt", weights_only=True)
    b = torch.load(fold_b / "checkpoint_final.pt", weights_only=True)
    assert f"resumed from checkpoint_latest.pt at epoch {killed_at}" in (fold_b / "training_log.txt").read_text()
    assert b["epoch"] == a["epoch"] == 8 and len(b["history"]["train_loss"]) == 8
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)
    assert a["history"]["train_loss"] == pytest.approx(b["history"]["train_loss"], rel=1e-5)


@pytest.mark.slow
def test_ddp_two_gloo_processes(preprocessed, tmp_path):
    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.training.config import make_config
    from orthodiff_auto.training.fold import FoldRequest, prepare_split

    plans = Plans.load(preprocessed / "plans.json")
    sizes = [len(prepare_split(FoldRequest(preprocessed, "seg", "sag", k, make_config("smoke")), plans)[1])
             for k in range(5)]
    k = sizes.index(max(sizes))  # a fold with several validation scans, so that both processes validate
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "orthodiff_auto", "train_fold", str(preprocessed), "seg", "sag", str(k), "--config", "smoke",
         "--results", str(tmp_path), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    fold = tmp_path / "seg" / "sag" / "scratch" / f"fold_{k}"
    assert "2 processes" in (fold / "training_log.txt").read_text()
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    # the final validation is shared by the processes (each takes every second scan) and gathered on rank 0
    val = ckpt["extras"]["split"]["val"]
    assert len(val) >= 2
    summary = json.loads((fold / "summary.json").read_text())
    assert list(summary["per_case"]) == val and summary["num_validation_scans"] == len(val)
    assert all((fold / "validation" / f"{case}_sag.nii.gz").is_file() for case in val)


@pytest.mark.slow
def test_label_fraction_seed_trains_a_stratified_subset_in_its_own_folder(preprocessed, tmp_path):
    """A quarter of fold 0's cases, stratified: both findings keep a positive and a negative; each seed gets a
    folder of its own and the summary records fraction and seed."""
    import pandas as pd

    table = pd.read_csv(preprocessed / "findings.csv", dtype={"case_id": str}).set_index("case_id")
    for seed, variant in ((0, "scratch_frac0.25"), (3, "scratch_frac0.25_seed3")):
        rc = main(["train_fold", str(preprocessed), "seg", "sag", "0", "--config", "smoke", "--results", str(tmp_path),
                   "--label-fraction", "0.25", "--label-fraction-seed", str(seed), "--set", "num_epochs=1",
                   "--set", "iterations_per_epoch=1"])
        assert rc == 0
        fold = tmp_path / "seg" / "sag" / variant / "fold_0"
        summary = json.loads((fold / "summary.json").read_text())
        assert summary["label_fraction"] == 0.25 and summary["label_fraction_seed"] == seed
        train = torch.load(fold / "checkpoint_final.pt", weights_only=True)["extras"]["split"]["train"]
        assert len(train) == summary["num_training_scans"] < 6
        for finding in ("f1", "f2"):
            assert set(table.loc[train, finding]) == {0, 1}, (seed, finding, train)


@pytest.mark.parametrize(
    "args, message",
    [
        (["seg", "obl", "0"], "no plan for view 'obl'"),
        (["seg", "sag", "7"], "out of range"),
        (["seg", "sag", "x"], "fold must be"),
        (["segment", "sag", "0"], "unknown task"),
        (["seg", "sag", "0", "--set", "num_epochs=abc"], "cannot use"),
        (["seg", "sag", "0", "--label-fraction", "0"], "label-fraction"),
        (["seg", "sag", "0", "--label-fraction", "0.5", "--label-fraction-seed", "-1"], "label-fraction-seed"),
        (["seg", "sag", "0", "--pretrained", "/nonexistent.pt"], "not found"),
    ],
)
def test_bad_arguments_exit_2(preprocessed, tmp_path, capsys, args, message):
    assert main(["train_fold", str(preprocessed), *args, "--results", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_missing_plans_exit_2(tmp_path, capsys):
    (tmp_path / "pp").mkdir()
    assert main(["train_fold", str(tmp_path / "pp"), "seg", "sag", "0"]) == 2
    assert "plans" in capsys.readouterr().err
