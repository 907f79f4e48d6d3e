"""Watching a training run: timestamped log lines with the time left, progress.png after every epoch, the
epoch bar only on a terminal, TensorBoard scalars when asked for (and a clear error without the package)."""

import io
import re
import sys
from datetime import datetime, timedelta, timezone

import pytest
import torch

from orthodiff_auto.cli import build_parser
from orthodiff_auto.commands._shared import monitor_overrides
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.pipeline.stale import config_differences
from orthodiff_auto.training import loop
from orthodiff_auto.training.config import make_config
from orthodiff_auto.training.loop import Trainer
from orthodiff_auto.training.monitor import format_duration, progress_bar_wanted, time_left
from orthodiff_auto.utils.log import timestamped
from tests.training.test_loop import ToyTask, _config

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d "


def test_every_log_line_is_timestamped_and_epoch_lines_say_the_time_left(tmp_path):
    Trainer(ToyTask(), _config(num_epochs=3), tmp_path, torch.device("cpu"), log=lambda m: None).fit()
    lines = (tmp_path / "training_log.txt").read_text().splitlines()
    assert lines and all(re.match(STAMP, line) for line in lines), lines
    epoch_lines = [line for line in lines if " epoch " in line]
    assert len(epoch_lines) == 3
    left = [re.search(r"(\d+) epochs left, eta (\d+:\d\d:\d\d)$", line) for line in epoch_lines]
    assert all(left), epoch_lines
    assert [int(m.group(1)) for m in left] == [2, 1, 0]
    assert left[-1].group(2) == "0:00:00"


def test_timestamp_and_duration_formats():
    when = datetime(2026, 11, 30, 3, 15, 2, tzinfo=timezone(timedelta(hours=1)))
    assert timestamped("epoch 1", when) == "2026-11-30T03:15:02+01:00 epoch 1"
    assert format_duration(3723.4) == "1:02:03"
    assert format_duration(2 * 86400 + 61) == "2d 0:01:01"
    assert format_duration(float("nan")) == "?"
    assert time_left(30.0, 3, 97) == pytest.approx(970.0)


class _PlotWatchingTask(ToyTask):
    """Records progress.png's bytes as each epoch's validation starts (after the previous epoch ended)."""

    def __init__(self, out):
        self.out, self.seen = out, []

    def epoch_validation(self, model, device):
        png = self.out / "progress.png"
        self.seen.append(png.read_bytes() if png.is_file() else None)
        return super().epoch_validation(model, device)


def test_progress_png_is_redrawn_after_every_epoch(tmp_path):
    task = _PlotWatchingTask(tmp_path)
    Trainer(task, _config(num_epochs=4, plot_every_epochs=1), tmp_path, torch.device("cpu"), log=lambda m: None).fit()
    assert task.seen[0] is None
    drawn = task.seen[1:] + [(tmp_path / "progress.png").read_bytes()]
    assert all(d is not None and d.startswith(b"\x89PNG") for d in drawn)
    assert len(set(drawn)) == len(drawn)  # each epoch adds a point: a new picture every time
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp.png")]  # written through a rename


def test_plot_every_epochs_draws_less_often_but_always_after_the_last(tmp_path):
    task = _PlotWatchingTask(tmp_path)
    Trainer(task, _config(num_epochs=5, plot_every_epochs=3), tmp_path, torch.device("cpu"), log=lambda m: None).fit()
    assert [s is not None for s in task.seen] == [False, False, False, True, True]
    assert task.seen[3] == task.seen[4]  # not redrawn after epoch 3
    assert (tmp_path / "progress.png").read_bytes() != task.seen[4]  # redrawn after the last
    with pytest.raises(UserInputError, match="plot_every_epochs"):
        _config(plot_every_epochs=0)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_epoch_bar_only_on_a_terminal_and_when_allowed(tmp_path, monkeypatch):
    assert not progress_bar_wanted(True, io.StringIO())
    assert progress_bar_wanted(True, _Terminal())
    assert not progress_bar_wanted(False, _Terminal())
    for name, stream, enabled in (("pipe", io.StringIO(), True), ("tty", _Terminal(), True),
                                  ("tty_off", _Terminal(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        (tmp_path / name).mkdir()
        Trainer(ToyTask(), _config(num_epochs=1, progress_bar=enabled), tmp_path / name, torch.device("cpu"),
                log=lambda m: None).fit()
        drawn = stream.getvalue()
        assert ("epoch 0:" in drawn and "/10 [" in drawn) == (name == "tty"), (name, drawn)


def test_command_line_flags_become_config_fields():
    args = build_parser().parse_args(["train_fold", "pp", "seg", "sag", "0", "--no-progress-bar", "--tensorboard"])
    config = make_config("smoke", monitor_overrides(args))
    assert config.progress_bar is False and config.tensorboard is True
    plain = build_parser().parse_args(["pretrain", "pp", "sag"])
    assert monitor_overrides(plain) == [] and make_config("smoke").progress_bar is True
    assert build_parser().parse_args(["auto", "raw", "--work", "w", "--tensorboard"]).tensorboard
    # watching a run another way does not make auto train it again
    assert config_differences(make_config("smoke").to_dict(), config.to_dict()) == []


class _Scalars:
    def __init__(self):
        self.added, self.closed = [], False

    def add_scalar(self, tag, value, step):
        self.added.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_scalars_every_epoch(tmp_path, monkeypatch):
    scalars = _Scalars()
    opened = []
    monkeypatch.setattr(loop, "tensorboard_writer", lambda out: opened.append(out) or scalars)
    trainer = Trainer(ToyTask(), _config(num_epochs=3, tensorboard=True), tmp_path, torch.device("cpu"),
                      log=lambda m: None)
    trainer.fit()
    assert opened == [tmp_path] and scalars.closed
    steps = {tag: [s for t, _, s in scalars.added if t == tag] for tag, _, _ in scalars.added}
    assert steps["train_loss"] == steps["neg_val_loss"] == steps["lr"] == [0, 1, 2]
    assert [v for t, v, _ in scalars.added if t == "train_loss"] == trainer.history["train_loss"]


def test_tensorboard_without_the_package_is_a_clear_error_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if it were not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(UserInputError, match=r"'tensorboard' package is not installed.*\[tensorboard\]"):
        Trainer(ToyTask(), _config(tensorboard=True), tmp_path, torch.device("cpu"), log=lambda m: None)
    assert not (tmp_path / "training_log.txt").exists()
