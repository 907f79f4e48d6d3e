"""The generic loop with a small regression task: loss falls, checkpoints, exact resume, LR schedule."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.config import make_config
from orthodiff_auto.training.device import SpeedOptions, apply_speed_options
from orthodiff_auto.training.loop import Trainer, default_loader_workers, poly_lr, warmup_factor


class _Batches(Dataset):
    def __init__(self, start, total, seed):
        self.start, self.total, self.seed = start, total, seed

    def __len__(self):
        return self.total - self.start

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.start + i])
        x = rng.normal(size=(8, 4)).astype(np.float32)
        y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(y)}


class ToyTask:
    name = "toy"
    selection_metric = "neg_val_loss"

    def build_model(self):
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def parameter_groups(self, model):
        return [{"params": list(model[0].parameters()), "warmup": True}, {"params": list(model[2].parameters())}]

    def batch_dataset(self, start, total, ctx):
        return _Batches(start, total, 7)

    def loss(self, model, batch):
        return nn.functional.mse_loss(model(batch["x"]), batch["y"])

    def epoch_validation(self, model, device):
        b = _Batches(0, 1, 99)[0]
        return {"neg_val_loss": -float(self.loss(model, b))}

    def checkpoint_extras(self):
        return {"plans": {"spacing": [1.0, 0.5]}, "split": ["a", "b"]}


def _config(**kw):
    over = ["num_epochs=6", "iterations_per_epoch=10", "initial_lr=0.05", "momentum=0.9", "checkpoint_every_epochs=2",
            "encoder_warmup_epochs=2", "num_workers=0"]
    return make_config("smoke", over + [f"{k}={v}" for k, v in kw.items()])


def test_loss_falls_and_checkpoints_load_weights_only(tmp_path):
    trainer = Trainer(ToyTask(), _config(), tmp_path, torch.device("cpu"), log=lambda m: None)
    trainer.fit()
    h = trainer.history
    assert h["train_loss"][-1] < 0.3 * h["train_loss"][0]
    for name in ("checkpoint_final.pt", "checkpoint_latest.pt", "checkpoint_best.pt"):
        ckpt = torch.load(tmp_path / name, weights_only=True)
        assert ckpt["extras"]["plans"] == {"spacing": [1.0, 0.5]}
        assert ckpt["config"]["num_epochs"] == 6
    assert (tmp_path / "progress.png").stat().st_size > 1000
    log = (tmp_path / "training_log.txt").read_text()
    assert "data wait" in log and "compute" in log and log.count("epoch ") == 6


def test_resume_reaches_same_state(tmp_path):
    full = Trainer(ToyTask(), _config(), tmp_path / "a", torch.device("cpu"), log=lambda m: None)
    (tmp_path / "a").mkdir()
    full.fit()
    # interrupted run: stops after 3 epochs; latest checkpoint is from epoch 2 (every 2 epochs)
    (tmp_path / "b").mkdir()
    part = Trainer(ToyTask(), _config(), tmp_path / "b", torch.device("cpu"), log=lambda m: None)
    # simulate a kill during epoch 3 (after the epoch-2 checkpoint)
    calls = {"n": 0}
    real_record = part._record

    def dying_record(*a, **k):
        real_record(*a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    part._record = dying_record
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    assert load_checkpoint(tmp_path / "b" / "checkpoint_latest.pt")["epoch"] == 2
    resumed = Trainer(ToyTask(), _config(), tmp_path / "b", torch.device("cpu"), log=lambda m: None)
    resumed.resume(tmp_path / "b" / "checkpoint_latest.pt")
    assert resumed.start_epoch == 2
    resumed.fit()
    a = torch.load(tmp_path / "a" / "checkpoint_final.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint_final.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_poly_and_warmup():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 100, 100, 0.9) == 0
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9)
    assert warmup_factor(0, 10, 0.1) == 0.1 and warmup_factor(5, 10, 0.1) == pytest.approx(0.55)
    assert warmup_factor(10, 10, 0.1) == 1.0 and warmup_factor(3, 0, 0.1) == 1.0


def test_warmup_group_gets_lower_lr(tmp_path):
    trainer = Trainer(ToyTask(), _config(), tmp_path, torch.device("cpu"), log=lambda m: None)
    lr = trainer._set_lr(0)
    groups = trainer.optimizer.param_groups
    assert groups[0]["lr"] == pytest.approx(lr * trainer.config.encoder_lr_factor)
    assert groups[1]["lr"] == pytest.approx(lr)
    assert math.isclose(trainer._set_lr(20), groups[0]["lr"])


def test_after_step_hook_and_adamw(tmp_path):
    class HookedTask(ToyTask):
        steps = 0

        def after_step(self, model):
            HookedTask.steps += 1

    trainer = Trainer(HookedTask(), _config(optimizer="adamw", initial_lr=0.01, num_epochs=2), tmp_path,
                      torch.device("cpu"), log=lambda m: None)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    trainer.fit()
    assert HookedTask.steps == 20
    assert trainer.history["train_loss"][-1] < trainer.history["train_loss"][0]


def test_unknown_optimizer_refused():
    from orthodiff_auto.errors import UserInputError

    with pytest.raises(UserInputError, match="optimizer"):
        _config(optimizer="lion")


@pytest.mark.slow  # two processes train (16 s of the quick loop)
def test_ddp_ranks_hold_equal_weights_after_training(tmp_path):
    """Two gloo processes start from different seeds and see different batches; DDP must make them equal."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(root / "tests" / "training" / "ddp_toy_worker.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    initial = ToyTask().build_model().state_dict()  # a model that trained at all moved away from any start
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0)


def test_resume_after_a_kill_between_the_last_checkpoints_writes_the_final_one(tmp_path):
    # the last epoch writes checkpoint_latest.pt, then checkpoint_final.pt and progress.png: a kill between them
    # left a complete run whose --continue found "training already complete" and never wrote the final checkpoint
    full = Trainer(ToyTask(), _config(), tmp_path, torch.device("cpu"), log=lambda m: None)
    full.fit()
    expected = torch.load(tmp_path / "checkpoint_final.pt", weights_only=True)
    (tmp_path / "checkpoint_final.pt").unlink()
    (tmp_path / "progress.png").unlink()
    resumed = Trainer(ToyTask(), _config(), tmp_path, torch.device("cpu"), log=lambda m: None)
    resumed.resume(tmp_path / "checkpoint_latest.pt")
    resumed.fit()
    final = torch.load(tmp_path / "checkpoint_final.pt", weights_only=True)
    assert final["epoch"] == expected["epoch"] == 6
    for k in expected["model"]:
        torch.testing.assert_close(final["model"][k], expected["model"][k], rtol=0, atol=0)
    assert final["history"]["train_loss"] == expected["history"]["train_loss"]
    assert (tmp_path / "progress.png").is_file()


@pytest.mark.parametrize("cpus, processes, workers", [(2, 1, 1), (16, 1, 12), (16, 2, 7), (64, 8, 7), (1, 1, 1)])
def test_loader_workers_come_from_the_cpus(cpus, processes, workers):
    assert default_loader_workers(processes, cpus=cpus) == workers


def test_speed_options_leave_a_cpu_model_alone():
    model = nn.Conv3d(1, 2, 3)
    assert apply_speed_options(model, torch.device("cpu"), SpeedOptions(True, True, True)) is model
    assert make_config("full").num_workers is None  # sized from the CPUs unless a preset or --set says otherwise
