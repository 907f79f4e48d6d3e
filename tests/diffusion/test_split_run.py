"""Pretraining split over three ``orthodiff pretrain`` processes (stopped with ``stop_after_epoch``, resumed
with ``--continue``) ends bit for bit where one uninterrupted process ends: weights, optimizer state, EMA and
the exported encoder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orthodiff_auto.training.config import make_config

REPO = Path(__file__).resolve().parents[2]
# 6 epochs x 2 iterations; AdamW so that the optimizer carries two moment buffers and a step count per tensor
RUN = ["--config", "smoke", "--device", "cpu", "--set", "num_epochs=6", "--set", "iterations_per_epoch=2",
       "--set", "optimizer=adamw", "--set", "initial_lr=0.001", "--set", "num_samples=0",
       "--set", "checkpoint_every_epochs=100", "--set", "augment=true"]


def _pretrain(pre: Path, results: Path, *extra: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "orthodiff_auto", "pretrain", str(pre), "sag", *RUN,
                           "--results", str(results), *extra], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def _assert_same_tensors(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.slow
def test_three_processes_end_bit_identical_to_one(make_preprocessed, tmp_path):
    pre = make_preprocessed(train=("c001", "c002"), unlabeled=("u001",))
    whole, split = tmp_path / "whole", tmp_path / "split"
    _pretrain(pre, whole)

    first = _pretrain(pre, split, "--set", "stop_after_epoch=2")
    out = split / "pretrain" / "sag"
    assert "stopped after epoch 2 of 6" in first
    assert not (out / "encoder_sag.pt").exists() and not (out / "pretrain_summary.json").exists()
    assert torch.load(out / "checkpoint_latest.pt", weights_only=True)["epoch"] == 2
    # the middle process builds its batches in a spawned data-loader worker (the others in the main process)
    _pretrain(pre, split, "--continue", "--set", "stop_after_epoch=4", "--set", "num_workers=1")
    assert torch.load(out / "checkpoint_latest.pt", weights_only=True)["epoch"] == 4
    _pretrain(pre, split, "--continue")
    log = (out / "training_log.txt").read_text()
    assert "resumed from checkpoint_latest.pt at epoch 2" in log and "at epoch 4" in log

    a = torch.load(whole / "pretrain" / "sag" / "checkpoint_final.pt", weights_only=True)
    b = torch.load(out / "checkpoint_final.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 6
    _assert_same_tensors(a["model"], b["model"], "model")
    _assert_same_tensors(a["optimizer"], b["optimizer"], "optimizer")
    _assert_same_tensors(a["extras"]["ema"], b["extras"]["ema"], "ema")
    assert a["extras"]["ema"]["updates"] == 12
    for key in ("train_loss", "val_loss", "val_loss_ema", "lr"):
        assert a["history"][key] == b["history"][key], key
    ea = torch.load(whole / "pretrain" / "sag" / "encoder_sag.pt", weights_only=True)
    eb = torch.load(out / "encoder_sag.pt", weights_only=True)
    _assert_same_tensors(ea["state_dict"], eb["state_dict"], "encoder")


def test_stop_after_epoch_setting():
    assert make_config("smoke", ["stop_after_epoch=3"]).stop_after_epoch == 3
    assert make_config("smoke").stop_after_epoch is None
    from orthodiff_auto.errors import UserInputError

    with pytest.raises(UserInputError, match="stop_after_epoch"):
        make_config("smoke", ["stop_after_epoch=0"])


def test_trainer_stops_at_the_epoch_and_continues_to_the_end(tmp_path):
    from orthodiff_auto.diffusion.config import make_pretrain_configs
    from orthodiff_auto.diffusion.task import DiffusionTask
    from orthodiff_auto.training.loop import Trainer
    from tests.plans.tiny_plans import tiny_view_plan

    from .conftest import MemorySource

    def trainer(stop):
        src = MemorySource(n=3)
        cfg, dcfg = make_pretrain_configs("smoke", ["num_workers=0", "num_epochs=3", "iterations_per_epoch=1",
                                                    "checkpoint_every_epochs=100", f"stop_after_epoch={stop}"])
        task = DiffusionTask(tiny_view_plan(), src, src.case_ids(), cfg, dcfg)
        return Trainer(task, cfg, tmp_path, torch.device("cpu"), log=lambda m: None)

    first = trainer(2)
    first.fit()
    assert first.stopped_early and not (tmp_path / "checkpoint_final.pt").exists()
    assert torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)["epoch"] == 2
    again = trainer(1)  # already past the stop: trains nothing, writes nothing
    again.resume(tmp_path / "checkpoint_latest.pt")
    again.fit()
    assert again.stopped_early and "nothing to train" in (tmp_path / "training_log.txt").read_text()
    assert torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)["epoch"] == 2
    last = trainer(5)  # a stop beyond num_epochs: the run ends normally
    last.resume(tmp_path / "checkpoint_latest.pt")
    last.fit()
    assert not last.stopped_early and len(last.history["epoch"]) == 3
    assert torch.load(tmp_path / "checkpoint_final.pt", weights_only=True)["epoch"] == 3
