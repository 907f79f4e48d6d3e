"""Diffusion pretraining of one view (``orthodiff pretrain PREPROCESSED_DIR VIEW``): the generic loop on the
diffusion task, then the EMA encoder's export to ``RESULTS/pretrain/VIEW/encoder_VIEW.pt`` and the DDIM
sanity-check figure."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from orthodiff_auto.diffusion.config import make_pretrain_configs
from orthodiff_auto.diffusion.export import export_encoder
from orthodiff_auto.diffusion.holdout import PretrainingSplit
from orthodiff_auto.diffusion.sampler import ddim_sample, save_sampling_figure
from orthodiff_auto.diffusion.schedule import q_sample
from orthodiff_auto.diffusion.task import DiffusionTask
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.training.distributed import barrier, distributed_device, shutdown, training_timeout
from orthodiff_auto.training.loop import Trainer
from orthodiff_auto.utils.atomic import write_json_atomic

PRETRAIN_SUMMARY = "pretrain_summary.json"  # written last: its presence means the view's pretraining is complete


def output_dir_for(preprocessed_dir: Path | str, view: str, results: Path | str | None = None) -> Path:
    """RESULTS/pretrain/VIEW (RESULTS: ``results``, default PREPROCESSED_DIR/../results)."""
    root = Path(results) if results is not None else Path(preprocessed_dir).resolve().parent / "results"
    return root / "pretrain" / view


def pretrain(preprocessed_dir: Path | str, view: str, preset: str = "full", overrides=(), resume: bool = False,
             results: Path | str | None = None, device: str = "auto", log=print) -> dict:
    """Run pretraining for one view; returns the summary (also written to ``pretrain_summary.json``). A run
    ended early by ``stop_after_epoch`` exports nothing and returns ``{"view", "stopped_after_epoch"}``:
    ``--continue`` goes on from its checkpoint."""
    pre = Path(preprocessed_dir)
    if not pre.is_dir():
        raise UserInputError(f"{pre}: preprocessed folder not found")
    plans = Plans.load(pre / "plans.json")
    view_plan = plans.view(view)
    dataset = PreprocessedDataset(pre, view)
    case_ids = dataset.case_ids(subset="train") + dataset.case_ids(subset="unlabeled")
    if not case_ids:
        raise UserInputError(f"{dataset.folder}: no preprocessed train or unlabeled scans of view {view!r}")
    config, dconfig = make_pretrain_configs(preset, list(overrides))

    out = output_dir_for(pre, view, results)
    latest, final = out / "checkpoint_latest.pt", out / "checkpoint_final.pt"
    existing = latest if latest.is_file() else final if final.is_file() else None
    if existing is not None and not resume:
        raise UserInputError(f"{out} already holds a pretraining run ({existing.name}); pass --continue to resume "
                             "it, or remove the folder to start over")

    dev, ctx = distributed_device(device, timeout=training_timeout(config))
    try:
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
        barrier(ctx)
        task = DiffusionTask(view_plan, dataset, case_ids, config, dconfig)
        trainer = Trainer(task, config, out, dev, ctx, log=log)
        n_train = len(dataset.case_ids(subset="train"))
        trainer.log(f"pretrain {view}: {len(case_ids)} scans ({n_train} train, {len(case_ids) - n_train} unlabeled), "
                    f"patch {list(task.patch_size)}, batch {task.batch_size}, {task.plan.schedule} schedule, "
                    f"T={task.plan.timesteps}, {task.prediction} prediction, EMA {dconfig.ema_decay}, "
                    f"{config.num_epochs} x {config.iterations_per_epoch} iterations on {dev}")
        trainer.log(holdout_line(task.split, dconfig.val_batches))
        if resume:
            if existing is None:
                trainer.log("--continue: no checkpoint found, starting from scratch")
            else:
                trainer.resume(existing)  # restores the EMA too (task.load_extras)
        trainer.fit()
        summary: dict = {}
        if trainer.stopped_early:  # stop_after_epoch: nothing to export yet, --continue goes on
            summary = {"view": view, "stopped_after_epoch": max(trainer.start_epoch, config.stop_after_epoch)}
        elif ctx.is_main:
            summary = pretraining_outputs(task, trainer, out, plans, view, case_ids, dev, ctx)
        barrier(ctx)
        return summary
    finally:
        shutdown(ctx)


def pretraining_outputs(task: DiffusionTask, trainer: Trainer, out: Path, plans: Plans, view: str,
                        case_ids: list[str], dev, ctx) -> dict:
    """After training (main process): the EMA encoder, the DDIM samples and pretrain_summary.json; returns the
    summary."""
    config, dconfig, view_plan = trainer.config, task.dconfig, plans.view(view)
    ema_model = task.ema.model.to(dev).eval()
    iterations = task.ema.updates  # optimizer steps taken (restored on --continue)
    encoder_path = out / f"encoder_{view}.pt"
    export_encoder(encoder_path, ema_model.state_dict(), view_plan, iterations,
                   diffusion={**task.plan.to_dict(), "prediction": task.prediction,
                              "min_snr_gamma": dconfig.min_snr_gamma, "ema_decay": dconfig.ema_decay},
                   patch_size=list(task.patch_size), plans=plans)
    trainer.log(f"wrote {encoder_path}")
    samples_path = None
    if dconfig.num_samples > 0:
        samples_path = out / "ddim_samples.png"
        sample_figure(ema_model, task, samples_path, dconfig.num_samples, dconfig.sample_steps, dev,
                      trainer.amp_dtype, config.seed,
                      title=f"{view}: DDIM {dconfig.sample_steps} steps, EMA weights after {iterations} "
                            "iterations")
        trainer.log(f"wrote {samples_path}")
    h = trainer.history
    per_it = [t / config.iterations_per_epoch for t in h.get("epoch_time_s", [])]
    summary = {
        "view": view,
        "iterations": iterations,
        "num_scans": len(case_ids),
        "num_training_scans": len(task.split.training),
        "validation_case_ids": list(task.split.validation) if dconfig.val_batches else [],
        "validation_on_training_scans": task.split.reuses_training,
        "patch_size": list(task.patch_size),
        "batch_size": task.batch_size,
        "final_train_loss": h["train_loss"][-1] if h.get("train_loss") else None,
        "final_val_loss_ema": h["val_loss_ema"][-1] if h.get("val_loss_ema") else None,
        "seconds_per_iteration_median": sorted(per_it)[len(per_it) // 2] if per_it else None,
        "encoder_checkpoint": str(encoder_path),
        "ddim_samples": str(samples_path) if samples_path else None,
        "device": str(dev),
        "world_size": ctx.world_size,
        "training_config": config.to_dict(),
        "diffusion_config": dconfig.to_dict(),
    }
    write_json_atomic(out / PRETRAIN_SUMMARY, summary)
    return summary


def holdout_line(split: PretrainingSplit, val_batches: int) -> str:
    """The log line saying which scans the validation loss is computed on."""
    if val_batches == 0:
        return "no validation loss (val_batches=0)"
    if not split.reuses_training:
        return (f"validation loss on {len(split.validation)} held-out scan(s), never trained on: "
                f"{', '.join(split.validation)}")
    return (f"validation loss on the training scan(s) {', '.join(split.validation)}: "
            + ("a single scan, none to hold out" if len(split.validation) == 1 else "validation_fraction=0")
            + " (FLAGGED: it measures fit, not generalisation)")


def sample_figure(model, task, path: Path, num_samples: int, steps: int, device, amp_dtype=None, seed: int = 0,
                  title: str = "") -> None:
    """The sanity-check PNG: ``num_samples`` DDIM samples from pure noise, and one real (validation) patch
    noised to t = T/2 and denoised back, each as its chain of x_t and predicted x_0 (middle slices). The x_0
    predictions are clamped to the intensity range of the validation patches (widened by 10 %)."""
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    g = torch.Generator().manual_seed(seed)
    record = max(1, steps // 5)
    sections = []
    val = task.validation_batches()
    reference = val[0]["data"][0] if val else None
    clip = None
    if val:
        data = torch.cat([b["data"] for b in val])
        lo, hi = float(data.min()), float(data.max())
        clip = (lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    with torch.no_grad(), amp:
        _, trace = ddim_sample(model, (num_samples, 1, *task.patch_size), task.alphas_cumprod, task.prediction,
                               steps, generator=g, device=device, record_every=record, clip_x0=clip)
        sections.append(("from noise", trace))
        if reference is not None:
            t_start = task.plan.timesteps // 2
            t = torch.tensor([t_start])
            noisy = q_sample(reference[None], t, torch.randn(reference[None].shape, generator=g), task.alphas_cumprod)
            _, rec = ddim_sample(model, noisy.shape, task.alphas_cumprod, task.prediction, max(2, steps // 2),
                                 generator=g, device=device, record_every=max(1, steps // 10), x_T=noisy,
                                 start_timestep=t_start, clip_x0=clip)
            sections.append(("patch", rec))
    save_sampling_figure(sections, path, axis=task.view_plan.through_plane_axis, reference=reference, title=title)


__all__ = ["PRETRAIN_SUMMARY", "holdout_line", "output_dir_for", "pretrain", "sample_figure"]
