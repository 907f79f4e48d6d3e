"""The one generic training loop. What is trained (network, data, loss, validation) comes from a task object.

Determinism and exact resume: batch ``k`` of a run is a pure function of (seed, rank, k) (see the tasks'
batch datasets), the latest checkpoint is written at an epoch boundary, so ``--continue`` after a kill
replays from there and reaches the same state as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from dataclasses import replace
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from orthodiff_auto.training.checkpoint import load_checkpoint, save_checkpoint, unwrap
from orthodiff_auto.training.config import TrainingConfig
from orthodiff_auto.training.device import SpeedOptions, apply_speed_options
from orthodiff_auto.training.distributed import DistributedContext, all_reduce_mean, barrier
from orthodiff_auto.training.monitor import (epoch_bar, format_duration, progress_bar_wanted, tensorboard_writer,
                                             time_left)
from orthodiff_auto.utils.atomic import atomic_path
from orthodiff_auto.utils.log import append_log_line, log_line

CHECKPOINT_FORMAT = "orthodiff_auto.checkpoint/1"


class TrainingTask(Protocol):
    """What the loop needs from a task (segmentation, classification, diffusion)."""

    name: str
    selection_metric: str | None  # key of epoch_validation() that picks the best checkpoint (higher is better)

    def build_model(self) -> nn.Module: ...

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Optimizer groups; a group with ``"warmup": True`` starts at lr * encoder_lr_factor."""
        ...

    def batch_dataset(self, start_iteration: int, total_iterations: int, ctx: DistributedContext) -> Dataset:
        """Index i -> the whole batch of iteration ``start_iteration + i`` (a dict of CPU tensors)."""
        ...

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def epoch_validation(self, model: nn.Module, device: torch.device) -> dict[str, float]: ...

    def checkpoint_extras(self) -> dict[str, Any]: ...

    # optional: ``after_step(model)`` is called after every optimizer step when the task defines it;
    # ``load_extras(extras)`` restores task state (e.g. EMA weights) on resume.


def poly_lr(initial_lr: float, iteration: int, total: int, exponent: float) -> float:
    return initial_lr * (1 - min(iteration, total) / total) ** exponent


def default_loader_workers(processes_per_machine: int = 1, cpus: int | None = None) -> int:
    """Batch-building worker processes per training process when the config leaves it open: the machine's CPUs
    shared among its training processes, one left for each process' own thread, at most 12 (nnU-Net's default
    for one GPU), at least 1."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(12, cpus // max(1, processes_per_machine) - 1))


def warmup_factor(iteration: int, warmup_iterations: int, start_factor: float) -> float:
    """Linear ramp from start_factor to 1 over the warm-up (pretrained encoders start gently)."""
    if warmup_iterations <= 0 or iteration >= warmup_iterations:
        return 1.0
    return start_factor + (1 - start_factor) * iteration / warmup_iterations


class Trainer:
    def __init__(self, task: TrainingTask, config: TrainingConfig, output_dir: Path, device: torch.device,
                 ctx: DistributedContext = DistributedContext(), log=log_line):
        self.task = task
        self.config = config
        self.output_dir = Path(output_dir)
        self.device = device
        self.ctx = ctx
        self._log = log
        self.history: dict[str, list[float]] = {}
        self.best_metric = -math.inf
        self.smoothed_metric: float | None = None
        self.start_epoch = 0
        self.stopped_early = False  # fit() ended at config.stop_after_epoch, before num_epochs

        torch.manual_seed(config.seed + ctx.rank)
        model = task.build_model().to(device)
        speed = SpeedOptions(config.cudnn_benchmark, config.channels_last, config.compile)
        self.model = apply_speed_options(model, device, replace(speed, compile=False))
        groups = task.parameter_groups(model)
        if config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=config.initial_lr, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=config.initial_lr, momentum=config.momentum,
                                             nesterov=config.nesterov, weight_decay=config.weight_decay)
        # optional task hook after every optimizer step (e.g. an EMA of the weights)
        self._after_step = getattr(task, "after_step", None)
        self.amp_dtype = None
        if device.type == "cuda" and config.mixed_precision:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if ctx.enabled:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.local_rank] if device.type == "cuda" else None)
        else:
            self.ddp_model = model
        if speed.compile:  # the module that computes the loss; checkpoints save self.model's weights
            self.ddp_model = apply_speed_options(self.ddp_model, device, SpeedOptions(compile=True))
        # asked for but not installed: refused here, before any training time is spent
        self.scalars = tensorboard_writer(self.output_dir) if config.tensorboard and ctx.is_main else None

    # ------------------------------------------------------------------ bookkeeping
    def log(self, msg: str) -> None:
        if self.ctx.is_main:
            self._log(msg)
            append_log_line(self.output_dir / "training_log.txt", msg)

    def checkpoint_payload(self, next_epoch: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "task": self.task.name,
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": next_epoch,
            "history": self.history,
            "best_metric": self.best_metric,
            "smoothed_metric": self.smoothed_metric,
            "config": self.config.to_dict(),
            "extras": self.task.checkpoint_extras(),
        }

    def save(self, name: str, next_epoch: int) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.output_dir / name, self.checkpoint_payload(next_epoch))

    def resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = int(ckpt["epoch"])
        self.history = {k: list(v) for k, v in ckpt["history"].items()}
        self.best_metric = float(ckpt["best_metric"])
        self.smoothed_metric = ckpt["smoothed_metric"]
        if hasattr(self.task, "load_extras"):
            self.task.load_extras(ckpt["extras"])
        self.log(f"resumed from {path.name} at epoch {self.start_epoch}")

    # ------------------------------------------------------------------ the loop
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _set_lr(self, iteration: int) -> float:
        cfg = self.config
        lr = poly_lr(cfg.initial_lr, iteration, cfg.total_iterations, cfg.poly_exponent)
        warm = warmup_factor(iteration, cfg.encoder_warmup_epochs * cfg.iterations_per_epoch, cfg.encoder_lr_factor)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * (warm if group.get("warmup") else 1.0)
        return lr

    def _loader(self, start_iteration: int) -> DataLoader:
        cfg = self.config
        dataset = self.task.batch_dataset(start_iteration, cfg.total_iterations, self.ctx)
        workers = cfg.num_workers
        if workers is None:  # LOCAL_WORLD_SIZE: the training processes torchrun started on this machine
            workers = default_loader_workers(int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
        return DataLoader(
            dataset, batch_size=None, shuffle=False, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
            multiprocessing_context="spawn" if workers > 0 else None,
        )

    def fit(self) -> None:
        cfg = self.config
        self.model.train()
        start_iteration = self.start_epoch * cfg.iterations_per_epoch
        if self.start_epoch >= cfg.num_epochs:
            self.log("training already complete")
            # a kill can come between the last epoch's checkpoint and these two: write what is missing
            if not (self.output_dir / "checkpoint_final.pt").is_file():
                self.save("checkpoint_final.pt", cfg.num_epochs)
            if self.ctx.is_main and not (self.output_dir / "progress.png").is_file():
                self.plot_progress()
            return
        stop_at = cfg.num_epochs if cfg.stop_after_epoch is None else min(cfg.num_epochs, cfg.stop_after_epoch)
        if self.start_epoch >= stop_at:
            self.stopped_early = True
            self.log(f"already at epoch {self.start_epoch} >= stop_after_epoch {stop_at}: nothing to train")
            return
        # what a bit-for-bit rerun needs to match (documentation/training.md, "Determinism")
        self.log(f"reproducibility: seed {cfg.seed}, torch {torch.__version__}, {torch.get_num_threads()} intra-op "
                 f"threads, device {self.device}" + (f", {self.ctx.world_size} processes" if self.ctx.enabled else ""))
        batches = iter(self._loader(start_iteration))
        iteration = start_iteration
        show_bar = self.ctx.is_main and progress_bar_wanted(cfg.progress_bar)
        session_start = time.perf_counter()
        for epoch in range(self.start_epoch, stop_at):
            epoch_start = time.perf_counter()
            data_wait = 0.0
            running = torch.zeros((), device=self.device)
            bar = epoch_bar(epoch, cfg.iterations_per_epoch, show_bar)
            for _ in range(cfg.iterations_per_epoch):
                lr = self._set_lr(iteration)
                t0 = time.perf_counter()
                batch = next(batches)
                data_wait += time.perf_counter() - t0
                batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                self.optimizer.zero_grad(set_to_none=True)
                with self._autocast():
                    loss = self.task.loss(self.ddp_model, batch)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self._after_step is not None:
                    self._after_step(self.model)
                running += loss.detach()  # stays on the device: no host sync per iteration
                iteration += 1
                bar.update()
            bar.close()
            train_loss = float(all_reduce_mean(running / cfg.iterations_per_epoch, self.ctx))
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            epoch_time = time.perf_counter() - epoch_start
            self.model.eval()
            with torch.no_grad(), self._autocast():
                metrics = self.task.epoch_validation(self.model, self.device) if self.ctx.is_main else {}
            self.model.train()
            eta = time_left(time.perf_counter() - session_start, epoch + 1 - self.start_epoch,
                            cfg.num_epochs - epoch - 1)
            self._record(epoch, train_loss, lr, epoch_time, data_wait, metrics, eta)
            if self._improved(metrics):
                self.save("checkpoint_best.pt", epoch + 1)
            if (epoch + 1) % cfg.checkpoint_every_epochs == 0 or epoch + 1 == stop_at:
                self.save("checkpoint_latest.pt", epoch + 1)
            if self.ctx.is_main and ((epoch + 1) % cfg.plot_every_epochs == 0 or epoch + 1 == stop_at):
                self.plot_progress()
            barrier(self.ctx)
        if stop_at < cfg.num_epochs:
            self.stopped_early = True
            self.log(f"stopped after epoch {stop_at} of {cfg.num_epochs} (stop_after_epoch); --continue goes on")
            if self.scalars is not None:
                self.scalars.close()
            return
        self.save("checkpoint_final.pt", cfg.num_epochs)
        if self.scalars is not None:
            self.scalars.close()

    def _record(self, epoch, train_loss, lr, epoch_time, data_wait, metrics, eta_s: float) -> None:
        row = {"epoch": epoch, "train_loss": train_loss, "lr": lr, "epoch_time_s": epoch_time,
               "data_wait_s": data_wait, "compute_s": epoch_time - data_wait, **metrics}
        for k, v in row.items():
            self.history.setdefault(k, []).append(float(v))
        if self.scalars is not None:
            for k, v in row.items():
                if k != "epoch":
                    self.scalars.add_scalar(k, float(v), epoch)
            self.scalars.flush()  # a TensorBoard open on the folder shows the epoch now, not at the end
        per_it = epoch_time / self.config.iterations_per_epoch
        extra = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        left = self.config.num_epochs - epoch - 1
        self.log(f"epoch {epoch:4d}  loss {train_loss:.4f}  lr {lr:.5f}  {per_it:.3f} s/it "
                 f"(data wait {data_wait / max(epoch_time, 1e-9):.0%}, compute {(epoch_time - data_wait) / self.config.iterations_per_epoch:.3f} s/it)  {extra}"
                 f"  {left} epochs left, eta {format_duration(eta_s)}")

    def _improved(self, metrics: dict[str, float]) -> bool:
        key = self.task.selection_metric
        if key is None or key not in metrics or not math.isfinite(metrics[key]):
            return False
        value = metrics[key]
        # nnU-Net's exponential moving average keeps one lucky epoch from being "best"
        self.smoothed_metric = value if self.smoothed_metric is None else 0.9 * self.smoothed_metric + 0.1 * value
        if self.smoothed_metric > self.best_metric:
            self.best_metric = self.smoothed_metric
            return True
        return False

    def plot_progress(self) -> None:
        import matplotlib  # only when a figure is drawn: importing matplotlib takes about half a second

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        h = self.history
        if not h.get("epoch"):
            return
        fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
        axes[0].plot(h["epoch"], h["train_loss"], label="train loss")
        for k in h:
            if k not in ("epoch", "train_loss", "lr", "epoch_time_s", "data_wait_s", "compute_s"):
                axes[0].plot(h["epoch"], h[k], label=k)
        axes[0].legend()
        axes[0].set_ylabel("loss / metric")
        axes[1].plot(h["epoch"], h["lr"])
        axes[1].set_ylabel("learning rate")
        axes[2].plot(h["epoch"], h["epoch_time_s"], label="epoch time")
        axes[2].plot(h["epoch"], h["data_wait_s"], label="data wait")
        axes[2].set_ylabel("seconds")
        axes[2].set_xlabel("epoch")
        axes[2].legend()
        fig.tight_layout()
        with atomic_path(self.output_dir / "progress.png") as tmp:
            fig.savefig(tmp, format="png", dpi=80)
        plt.close(fig)
