"""Segmentation as a task of the generic loop: U-Net from the plans, Dice+CE with deep supervision."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from batchgenerators.transforms.abstract_transforms import Compose
from torch import nn

from orthodiff_auto.networks.builder import build_segmentation_network
from orthodiff_auto.plans.schema import DEFAULT_CONFIGURATION, Plans, ViewPlan
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.segmentation.cascade import WithPreviousStage, cascade_transforms
from orthodiff_auto.training.augmentation import (
    AugmentationParams,
    build_training_transforms,
    rotated_patch_size,
    through_plane_axis_for_dummy_2d,
)
from orthodiff_auto.training.batches import PatchBatches
from orthodiff_auto.training.config import TrainingConfig
from orthodiff_auto.training.pretrained import load_pretrained_encoder, pretrained_parameter_groups
from orthodiff_auto.training.distributed import per_rank_batch_size
from orthodiff_auto.training.losses import DeepSupervisionLoss, DiceCELoss, deep_supervision_weights, downsample_target


def deep_supervision_scales(strides) -> list[tuple[float, ...]]:
    """Relative resolution of each decoder output, full resolution first (dna's PlainConvUNet order)."""
    cumulative = np.cumprod(np.asarray(strides, dtype=float), axis=0)
    return [tuple(1.0 / c) for c in cumulative[:-1]]


def _class_locations(props) -> dict[int, np.ndarray]:
    return props.class_locations


def _class_voxel_counts(props) -> dict[int, int]:
    return props.class_voxel_counts


@dataclass
class SegmentationTask:
    plans: Plans
    view: str
    config: TrainingConfig
    preprocessed_dir: Path
    train_cases: list[str]
    val_cases: list[str]
    fold: int | str = 0
    pretrained: dict[str, Any] | None = None  # loaded encoder checkpoint (see training.pretrained)
    configuration: str = DEFAULT_CONFIGURATION
    previous_stage_dir: Path | None = None  # a cascade's second stage: the first stage's predicted_next_stage/
    name: str = "seg"
    selection_metric: str | None = "pseudo_dice"
    _val_batches: list[dict[str, torch.Tensor]] | None = field(default=None, repr=False)

    def __post_init__(self):
        view_plan = self.plans.view(self.view)
        config = view_plan.configuration(self.configuration)
        self.view_plan: ViewPlan = view_plan.for_configuration(self.configuration)
        self.data_folder = config.data_identifier
        self.previous_stage = config.previous_stage
        self.in_channels = view_plan.input_channels(self.configuration, self.plans.num_classes)
        if self.previous_stage is not None and self.previous_stage_dir is None:
            raise ValueError(f"configuration {self.configuration!r} needs previous_stage_dir")
        seg_plan = self.view_plan.segmentation
        self.patch_size = tuple(self.config.patch_size or seg_plan.patch_size)
        self.batch_size = int(self.config.batch_size or seg_plan.batch_size)
        self.num_classes = self.plans.num_classes
        self.ds_scales = deep_supervision_scales(seg_plan.architecture.strides)
        weights = deep_supervision_weights(len(self.ds_scales)) if self.config.deep_supervision else [1.0]
        base = DiceCELoss(self.num_classes, self.plans.ignore_label, self.config.dice_weight, self.config.ce_weight)
        self.loss_fn = DeepSupervisionLoss(base, weights)
        self.dummy_2d_axis = through_plane_axis_for_dummy_2d(self.view_plan.target_spacing, self.patch_size)
        self.augmentation = AugmentationParams()

    # ------------------------------------------------------------------ model
    def build_model(self) -> nn.Module:
        net = build_segmentation_network(self.view_plan.segmentation.architecture, self.in_channels,
                                         self.num_classes, deep_supervision=self.config.deep_supervision)
        if self.pretrained is not None:
            # a cascade's second stage has more input channels than the pretrained encoder: its stem starts fresh
            info = load_pretrained_encoder(net.encoder, self.pretrained, self.view_plan.segmentation.architecture,
                                           skip_stem=self.in_channels != 1)
            info.warn_about_differences(self.view_plan)
        return net

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return pretrained_parameter_groups(model, self.pretrained is not None)

    # ------------------------------------------------------------------ data
    def _source(self):
        source = PreprocessedDataset(self.preprocessed_dir, self.data_folder)
        return source if self.previous_stage is None else WithPreviousStage(source, self.previous_stage_dir)

    def _with_cascade(self, transforms, augment: bool):
        """The transforms followed, for a cascade's second stage, by the previous stage's one-hot channels."""
        if self.previous_stage is None:
            return transforms
        extra = cascade_transforms(self.num_classes, augment)
        return Compose(([transforms] if transforms is not None else []) + extra)

    def batch_dataset(self, start: int, total: int, ctx) -> PatchBatches:
        augment = self.config.augment and self.config.augmentation_probability > 0
        sample_patch = rotated_patch_size(self.patch_size, self.dummy_2d_axis, self.augmentation) if augment else self.patch_size
        transforms = self._with_cascade(build_training_transforms(
            self.patch_size, self.dummy_2d_axis, self.augmentation,
            probability_scale=self.config.augmentation_probability if augment else 0.0,
        ), augment)
        return PatchBatches(
            self._source(), self.train_cases, sample_patch, per_rank_batch_size(self.batch_size, ctx), transforms,
            start, total,
            seed=self.config.seed, rank=ctx.rank, oversample_foreground=self.config.oversample_foreground,
            foreground_locations=_class_locations, foreground_class_choice=self.config.foreground_class_choice,
            foreground_counts=_class_voxel_counts,
        )

    # ------------------------------------------------------------------ loss and validation
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = model(batch["data"])
        if isinstance(outputs, (list, tuple)):
            targets = downsample_target(batch["seg"], self.ds_scales[: len(outputs)])
        else:
            targets = batch["seg"]
        return self.loss_fn(outputs, targets)

    def _fixed_val_batches(self) -> list[dict[str, torch.Tensor]]:
        # the same validation patches every epoch, so the curve reflects the model and not the sampling
        if self._val_batches is None:
            cases = self.val_cases or self.train_cases
            n = max(1, self.config.val_batches_per_epoch)
            ds = PatchBatches(self._source(), cases, self.patch_size, self.batch_size, self._with_cascade(None, False),
                              0, n,
                              seed=self.config.seed + 1, oversample_foreground=0.5, foreground_locations=_class_locations)
            self._val_batches = [ds[i] for i in range(n)]
        return self._val_batches

    def epoch_validation(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Validation loss and nnU-Net's pseudo Dice (TP/FP/FN summed over fixed validation patches)."""
        losses = []
        tp = torch.zeros(self.num_classes - 1, device=device)
        fp, fn = torch.zeros_like(tp), torch.zeros_like(tp)
        for batch in self._fixed_val_batches():
            data = batch["data"].to(device)
            seg = batch["seg"].to(device).long()
            out = model(data)
            logits = out[0] if isinstance(out, (list, tuple)) else out
            losses.append(self.loss_fn.loss(logits, seg))
            pred = logits.argmax(1)
            target = seg[:, 0]
            valid = target != self.plans.ignore_label if self.plans.ignore_label is not None else torch.ones_like(target, dtype=torch.bool)
            for c in range(1, self.num_classes):
                p, t = (pred == c) & valid, (target == c) & valid
                tp[c - 1] += (p & t).sum()
                fp[c - 1] += (p & ~t).sum()
                fn[c - 1] += (~p & t).sum()
        denom = 2 * tp + fp + fn
        dice = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.full_like(tp, float("nan")))
        pseudo = float(torch.nanmean(dice)) if torch.isfinite(dice).any() else float("nan")
        return {"val_loss": float(torch.stack(losses).mean()), "pseudo_dice": pseudo}

    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            "plans": self.plans.to_dict(),
            "view": self.view,
            "fold": str(self.fold),
            "split": {"train": list(self.train_cases), "val": list(self.val_cases)},
            "patch_size": list(self.patch_size),
            "configuration": self.configuration,
            "in_channels": self.in_channels,
            "pretrained_from": (self.pretrained or {}).get("source_path"),
        }
