"""Diffusion pretraining as a task of the generic training loop (``training.loop.Trainer``).

Batches: random patches (``PatchBatches(with_seg=False)``) of the view's train and unlabeled scans except those
held out for the validation loss (``holdout.split_pretraining_scans``), light augmentation (mirroring and mild intensity changes, no spatial resampling), and per sample a timestep drawn
uniformly from [0, T) and Gaussian noise, all drawn from generators seeded by (seed, rank, iteration): a batch
is a pure function of those, so a resumed run replays exactly the same batches.

Loss: MSE between the denoiser's output and the target of the chosen prediction (epsilon by default),
optionally Min-SNR-gamma weighted. EMA: ``after_step(model)`` (called by the loop after every optimizer step)
updates an exponential moving average of the weights; the EMA weights travel in the checkpoints' ``extras``
(restored by ``load_extras`` on resume) and are what the encoder export and the sampler use.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from orthodiff_auto.diffusion.config import DiffusionConfig
from orthodiff_auto.diffusion.denoiser import Denoiser
from orthodiff_auto.diffusion.holdout import split_pretraining_scans
from orthodiff_auto.diffusion.schedule import diffusion_loss, make_alphas_cumprod, q_sample, training_target
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import ViewPlan
from orthodiff_auto.training.augmentation import (
    AugmentationParams,
    build_training_transforms,
    through_plane_axis_for_dummy_2d,
)
from orthodiff_auto.training.batches import CaseSource, PatchBatches
from orthodiff_auto.training.checkpoint import unwrap
from orthodiff_auto.training.config import TrainingConfig
from orthodiff_auto.training.distributed import DistributedContext, per_rank_batch_size

EXTRAS_FORMAT = "orthodiff_auto.diffusion_extras/1"

# Light augmentation for pretraining: no rotation/scaling (no resampling of the patch, no padding), no
# simulated noise, blur or low resolution (they would blur what "noise" means); mirroring plus mild
# brightness / contrast / gamma changes.
LIGHT_AUGMENTATION = AugmentationParams(
    p_rotation=0.0, p_scale=0.0, p_noise=0.0, p_blur=0.0, p_low_resolution=0.0, p_gamma_inverted=0.0,
    p_brightness=0.15, p_contrast=0.15, p_gamma=0.15, mirror=True,
)
VALIDATION_SEED_OFFSET = 7_919_000


def _seed(parts: Sequence[int]) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0

    def current_decay(self) -> float:
        """The decay used by the next update (warm-up as diffusers' EMAModel: early averages forget fast)."""
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        model = unwrap(model)
        params = list(model.parameters())
        if params and next(self.model.parameters()).device != params[0].device:
            self.model.to(params[0].device)
        weight = 1.0 - self.current_decay()
        for e, p in zip(self.model.parameters(), params):
            e.lerp_(p.detach(), weight)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


class DiffusionBatches(Dataset):
    """Index i -> {"data": x_0 patches (B, 1, *patch), "t": (B,) int64, "noise": like data} of iteration start + i.

    ``fixed_timesteps`` (validation): the timesteps of every batch are fixed instead of drawn."""

    def __init__(self, patches: PatchBatches, num_timesteps: int, seed: int, rank: int = 0,
                 fixed_timesteps: Sequence[int] | None = None):
        self.patches = patches
        self.num_timesteps = int(num_timesteps)
        self.seed, self.rank = seed, rank
        self.fixed_timesteps = None if fixed_timesteps is None else [int(t) for t in fixed_timesteps]

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        batch = self.patches[index]
        data = batch["data"]
        g = torch.Generator().manual_seed(_seed([self.seed, self.rank, self.patches.start + index, 2]))
        if self.fixed_timesteps is not None:
            t = torch.tensor(self.fixed_timesteps[: data.shape[0]], dtype=torch.long)
        else:
            t = torch.randint(0, self.num_timesteps, (data.shape[0],), generator=g)
        return {"data": data, "t": t, "noise": torch.randn(data.shape, generator=g)}


class DiffusionTask:
    """The ``TrainingTask`` of diffusion pretraining for one view."""

    name = "diffusion"
    selection_metric = None  # the final (EMA) weights are exported; no "best" checkpoint

    def __init__(self, view_plan: ViewPlan, source: CaseSource, case_ids: Sequence[str], config: TrainingConfig,
                 diffusion_config: DiffusionConfig = DiffusionConfig()):
        if not case_ids:
            raise UserInputError(f"no scans of view {view_plan.view!r} to pretrain on")
        self.view_plan = view_plan
        self.view = view_plan.view
        self.architecture = view_plan.segmentation.architecture
        self.plan = view_plan.diffusion
        self.source = source
        self.config = config
        self.dconfig = diffusion_config
        # no validation batches: nothing to hold out scans for
        fraction = diffusion_config.validation_fraction if diffusion_config.val_batches > 0 else 0.0
        self.split = split_pretraining_scans(case_ids, fraction, config.seed)
        self.case_ids = list(self.split.training)
        self.prediction = diffusion_config.prediction or self.plan.prediction
        self.patch_size = tuple(config.patch_size or self.plan.patch_size)
        self.batch_size = int(config.batch_size or self.plan.batch_size)
        div = self.architecture.shape_divisor
        if len(self.patch_size) != len(div) or any(p < 1 or p % d for p, d in zip(self.patch_size, div)):
            raise UserInputError(f"patch_size {list(self.patch_size)} must be a positive multiple of the network's "
                                 f"divisor {list(div)} per axis")
        self.alphas_cumprod = make_alphas_cumprod(self.plan.schedule, self.plan.timesteps)
        self._ab_cache: dict[str, torch.Tensor] = {}
        self.ema: EMA | None = None
        self._val_batches: list[dict[str, torch.Tensor]] | None = None

    # ------------------------------------------------------------------ model
    def build_model(self) -> Denoiser:
        model = Denoiser(self.architecture, in_channels=1, out_channels=1)
        self.ema = EMA(model, self.dconfig.ema_decay, self.dconfig.ema_warmup)
        return model

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def after_step(self, model: nn.Module) -> None:
        """The loop calls this after every optimizer step: update the EMA."""
        if self.ema is None:
            raise RuntimeError("build_model() first")
        self.ema.update(model)

    # ------------------------------------------------------------------ data
    def _patches(self, case_ids: Sequence[str], start: int, total: int, seed: int, rank: int, transforms,
                 batch_size: int) -> PatchBatches:
        return PatchBatches(self.source, case_ids, self.patch_size, batch_size, transforms, start, total,
                            seed, rank, oversample_foreground=0.0, foreground_locations=None, with_seg=False)

    def transforms(self):
        if not self.config.augment or self.config.augmentation_probability <= 0:
            return None
        dummy_2d = through_plane_axis_for_dummy_2d(self.view_plan.target_spacing, self.patch_size)
        return build_training_transforms(self.patch_size, dummy_2d, LIGHT_AUGMENTATION,
                                         self.config.augmentation_probability, with_seg=False)

    def batch_dataset(self, start_iteration: int, total_iterations: int, ctx: DistributedContext) -> Dataset:
        patches = self._patches(self.split.training, start_iteration, total_iterations, self.config.seed, ctx.rank,
                                self.transforms(), per_rank_batch_size(self.batch_size, ctx))
        return DiffusionBatches(patches, self.plan.timesteps, self.config.seed, ctx.rank)

    def validation_batches(self) -> list[dict[str, torch.Tensor]]:
        """Fixed batches of the held-out scans (other seed, no augmentation) with timesteps spread evenly over
        [0, T)."""
        if self._val_batches is None:
            n = self.dconfig.val_batches
            k = max(1, n * self.batch_size)  # midpoints of k equal strata of [0, T)
            grid = ((np.arange(k) + 0.5) * self.plan.timesteps / k).astype(int)
            seed = self.config.seed + VALIDATION_SEED_OFFSET
            patches = self._patches(self.split.validation, 0, n, seed, 0, None, self.batch_size)
            self._val_batches = [
                DiffusionBatches(patches, self.plan.timesteps, seed, 0,
                                 fixed_timesteps=grid[i * self.batch_size:(i + 1) * self.batch_size])[i]
                for i in range(n)
            ]
        return self._val_batches

    # ------------------------------------------------------------------ loss and validation
    def _ab(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._ab_cache:
            self._ab_cache[key] = self.alphas_cumprod.to(device=device, dtype=torch.float32)
        return self._ab_cache[key]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0, t, noise = batch["data"], batch["t"], batch["noise"]
        ab = self._ab(x0.device)
        out = model(q_sample(x0, t, noise, ab), t)
        target = training_target(x0, noise, t, ab, self.prediction)
        return diffusion_loss(out, target, t, ab, self.prediction, self.dconfig.min_snr_gamma)

    def epoch_validation(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        batches = self.validation_batches()
        if not batches:
            return {}
        out: dict[str, float] = {}
        models = {"val_loss": model}
        if self.ema is not None:
            self.ema.model.to(device)
            models["val_loss_ema"] = self.ema.model
        for key, m in models.items():
            was_training = m.training
            m.eval()
            total = 0.0
            for b in batches:
                b = {k: v.to(device) for k, v in b.items()}
                total += float(self.loss(m, b))
            m.train(was_training)
            out[key] = total / len(batches)
        return out

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            "format": EXTRAS_FORMAT,
            "view": self.view,
            "architecture": self.architecture.to_dict(),
            "diffusion_plan": self.plan.to_dict(),
            "diffusion_config": self.dconfig.to_dict(),
            "prediction": self.prediction,
            "patch_size": list(self.patch_size),
            "batch_size": self.batch_size,
            "validation_case_ids": list(self.split.held_out),
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def load_extras(self, extras: dict[str, Any]) -> None:
        """Restore the EMA from a checkpoint's extras (the loop calls this from ``Trainer.resume``)."""
        if extras.get("format") != EXTRAS_FORMAT:
            raise UserInputError("checkpoint extras are not from diffusion pretraining "
                                 f"(format {extras.get('format')!r})")
        saved = (extras.get("prediction"), (extras.get("diffusion_plan") or {}).get("schedule"),
                 (extras.get("diffusion_plan") or {}).get("timesteps"))
        now = (self.prediction, self.plan.schedule, self.plan.timesteps)
        if saved != now:
            raise UserInputError(f"cannot continue: the checkpoint was trained with (prediction, schedule, T) = "
                                 f"{saved}, this run asks for {now}")
        held_out = extras.get("validation_case_ids")  # absent from checkpoints older than the hold-out
        if held_out is not None and list(held_out) != list(self.split.held_out):
            raise UserInputError(f"cannot continue: the checkpoint's run held out {list(held_out)} for validation, "
                                 f"this run would hold out {list(self.split.held_out)} (the scans changed)")
        if extras.get("ema") is not None and self.ema is not None:
            self.ema.load_state_dict(extras["ema"])


__all__ = ["DiffusionBatches", "DiffusionTask", "EMA", "LIGHT_AUGMENTATION"]
