"""The diffusion task in the generic loop: deterministic batches, loss falls, EMA, exact resume."""

import pytest
import torch
from torch import nn

from orthodiff_auto.diffusion.config import make_pretrain_configs
from orthodiff_auto.diffusion.holdout import split_pretraining_scans
from orthodiff_auto.diffusion.task import EMA, DiffusionTask
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.distributed import DistributedContext
from orthodiff_auto.training.loop import Trainer

from tests.plans.tiny_plans import tiny_view_plan

from .conftest import MemorySource

QUIET = dict(log=lambda m: None)


def _task(*overrides, prediction="epsilon", source=None):
    src = source or MemorySource()
    cfg, dcfg = make_pretrain_configs("smoke", ["num_workers=0", *overrides])
    return DiffusionTask(tiny_view_plan(prediction=prediction), src, src.case_ids(), cfg, dcfg)


def _trainer(task, out):
    out.mkdir(parents=True, exist_ok=True)
    return Trainer(task, task.config, out, torch.device("cpu"), **QUIET)


def test_batches_are_a_pure_function_of_seed_rank_iteration():
    task = _task()
    a = task.batch_dataset(0, 10, DistributedContext())
    b = task.batch_dataset(3, 10, DistributedContext())
    for k in ("data", "t", "noise"):
        assert torch.equal(a[5][k], b[2][k])
    batch = a[0]
    assert batch["data"].shape == batch["noise"].shape == (2, 1, 8, 16, 16)
    assert batch["t"].dtype == torch.int64 and batch["t"].shape == (2,)
    assert not torch.equal(a[0]["noise"], a[1]["noise"])
    rank0 = task.batch_dataset(0, 10, DistributedContext(rank=0, world_size=2))[0]
    rank1 = task.batch_dataset(0, 10, DistributedContext(rank=1, world_size=2))[0]
    assert rank0["data"].shape[0] == rank1["data"].shape[0] == 1  # the global batch is split over processes
    assert not torch.equal(rank0["noise"], rank1["noise"])
    ts = torch.cat([a[i]["t"] for i in range(10)])
    assert ts.min() >= 0 and ts.max() < 1000 and len(set(ts.tolist())) > 10


class RecordingSource(MemorySource):
    """Remembers which cases were loaded."""

    def __init__(self, n):
        super().__init__(n=n)
        self.loaded = set()

    def load(self, case_id):
        self.loaded.add(case_id)
        return super().load(case_id)


def test_validation_loss_is_computed_on_scans_never_trained_on(tmp_path):
    source = RecordingSource(n=12)
    task = _task("val_batches=6", "validation_fraction=0.2", "num_epochs=1", "iterations_per_epoch=2",
                 source=source)
    batches = task.batch_dataset(0, 60, DistributedContext())
    for i in range(len(batches)):
        batches[i]
    trained_on, source.loaded = source.loaded, set()
    task.validation_batches()
    validated_on = set(source.loaded)
    assert validated_on and trained_on and not validated_on & trained_on
    assert len(trained_on) > 6  # 120 draws from the 10 training scans reach most of them
    # which scans: a seeded 20 % of the 12, recorded in the checkpoints
    assert sorted(validated_on) == list(task.split.held_out) == list(task.split.validation)
    assert len(task.split.held_out) == 2 and not task.split.reuses_training
    _trainer(task, tmp_path).fit()
    extras = torch.load(tmp_path / "checkpoint_final.pt", weights_only=True)["extras"]
    assert extras["validation_case_ids"] == sorted(validated_on)
    # a resumed run must hold out the same scans
    other = _task("val_batches=6", "validation_fraction=0.4", source=source)
    with pytest.raises(UserInputError, match="held out"):
        other.load_extras(extras)


def test_a_single_scan_is_reused_for_validation_and_flagged():
    task = _task(source=RecordingSource(n=1))
    assert task.split.reuses_training and task.split.held_out == ()
    assert task.split.validation == task.split.training == ("case00",)
    assert len(task.validation_batches()) == 1


def test_the_held_out_scans_are_a_seeded_fraction():
    ids = [f"s{i:03d}" for i in range(40)]
    split = split_pretraining_scans(ids, 0.1, seed=0)
    assert len(split.validation) == 4 and len(split.training) == 36
    assert sorted(split.training + split.validation) == ids
    assert split_pretraining_scans(list(reversed(ids)), 0.1, seed=0) == split  # order does not matter
    assert split_pretraining_scans(ids, 0.1, seed=1).validation != split.validation
    grown = split_pretraining_scans(ids + ["s999"], 0.1, seed=0)  # 41 scans: still 4 held out
    assert len(set(grown.validation) ^ set(split.validation)) <= 2  # at most one scan swapped
    assert len(split_pretraining_scans(ids[:3], 0.05, seed=0).validation) == 1  # at least one
    assert len(split_pretraining_scans(ids[:2], 0.9, seed=0).training) == 1  # never all
    assert split_pretraining_scans(ids, 0.0, seed=0).reuses_training


def test_patch_size_must_fit_the_network():
    with pytest.raises(UserInputError, match="multiple of the network's divisor"):
        _task("patch_size=8,14,16")
    with pytest.raises(UserInputError, match="no scans"):
        DiffusionTask(tiny_view_plan(), MemorySource(), [], *make_pretrain_configs("smoke"))


def test_ema_update_rule():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.5, warmup=False)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, start + 0.5)
    assert ema.updates == 1
    warm = EMA(model, decay=0.999)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)


@pytest.mark.parametrize("prediction, gamma", [("epsilon", None), ("v", 5.0)])
def test_loss_falls_and_ema_follows(tmp_path, prediction, gamma):
    task = _task("num_epochs=4", "iterations_per_epoch=25", "initial_lr=0.03", "checkpoint_every_epochs=4",
                 f"min_snr_gamma={gamma}", prediction=prediction)
    trainer = _trainer(task, tmp_path)
    with torch.no_grad():
        before = task.epoch_validation(trainer.model, torch.device("cpu"))
    trainer.fit()
    h = trainer.history
    assert h["val_loss"][-1] < 0.85 * before["val_loss"]
    assert h["val_loss_ema"][-1] < 0.85 * before["val_loss_ema"]
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert task.ema.updates == 100
    ema_w = task.ema.model.encoder.stages[0][0].convs[0].conv.weight
    assert not torch.equal(ema_w, trainer.model.encoder.stages[0][0].convs[0].conv.weight)
    ckpt = torch.load(tmp_path / "checkpoint_final.pt", weights_only=True)
    assert ckpt["extras"]["ema"]["updates"] == 100 and ckpt["extras"]["prediction"] == prediction
    torch.testing.assert_close(ckpt["extras"]["ema"]["model"]["encoder.stages.0.0.convs.0.conv.weight"], ema_w)


def test_resume_reaches_the_same_weights_and_ema(tmp_path):
    over = ("num_epochs=4", "iterations_per_epoch=3", "checkpoint_every_epochs=2", "augment=true")
    full_task = _task(*over)
    _trainer(full_task, tmp_path / "a").fit()

    part_task = _task(*over)
    part = _trainer(part_task, tmp_path / "b")
    calls = {"n": 0}
    real_record = part._record

    def dying_record(*a, **k):  # killed during epoch 3, after the epoch-2 checkpoint
        real_record(*a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    part._record = dying_record
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    latest = tmp_path / "b" / "checkpoint_latest.pt"
    assert load_checkpoint(latest)["epoch"] == 2

    resumed_task = _task(*over)
    resumed = _trainer(resumed_task, tmp_path / "b")
    resumed.resume(latest)  # the loop restores the EMA through task.load_extras
    assert resumed_task.ema.updates == 6
    resumed.fit()
    a = torch.load(tmp_path / "a" / "checkpoint_final.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint_final.pt", weights_only=True)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    for k in a["extras"]["ema"]["model"]:
        torch.testing.assert_close(a["extras"]["ema"]["model"][k], b["extras"]["ema"]["model"][k], rtol=0, atol=0)
    assert a["extras"]["ema"]["updates"] == b["extras"]["ema"]["updates"] == 12


def test_config_routing_and_errors():
    cfg, dcfg = make_pretrain_configs("demo", ["num_epochs=3", "ema_decay=0.9", "prediction=v", "min_snr_gamma=5"])
    assert cfg.num_epochs == 3 and dcfg.ema_decay == 0.9 and dcfg.prediction == "v" and dcfg.min_snr_gamma == 5.0
    with pytest.raises(UserInputError, match="diffusion keys"):
        make_pretrain_configs("demo", ["bogus=1"])
    with pytest.raises(UserInputError, match="prediction must be"):
        make_pretrain_configs("demo", ["prediction=score"])
    with pytest.raises(UserInputError, match="ema_decay"):
        make_pretrain_configs("demo", ["ema_decay=1.5"])
    with pytest.raises(UserInputError, match="unknown config"):
        make_pretrain_configs("huge")
