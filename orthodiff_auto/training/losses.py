"""Segmentation losses: soft Dice + cross-entropy that honour an ignore label, and deep supervision."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DiceCELoss(nn.Module):
    """``ce_weight * CE + dice_weight * (1 - soft Dice)`` over foreground classes.

    ``target`` is (B, 1, *spatial) integer labels. Voxels equal to ``ignore_label`` contribute to neither
    term: sparse annotations train only on what was annotated. Dice is the batch Dice (sums over the
    batch and space before the ratio, as nnU-Net does for 3D), which is stable for small structures.
    """

    def __init__(self, num_classes: int, ignore_label: int | None = None, dice_weight: float = 1.0,
                 ce_weight: float = 1.0, smooth: float = 1e-5):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = target[:, 0].long()
        if self.ignore_label is not None:
            valid = target != self.ignore_label
            target = torch.where(valid, target, torch.zeros_like(target))
        else:
            valid = None
        logits = logits.float()  # the loss in fp32 even under autocast
        loss = logits.new_zeros(())
        if self.ce_weight:
            ce = F.cross_entropy(logits, target, reduction="none")
            if valid is not None:
                ce = (ce * valid).sum() / valid.sum().clamp_min(1)
            else:
                ce = ce.mean()
            loss = loss + self.ce_weight * ce
        if self.dice_weight:
            probs = torch.softmax(logits, dim=1)[:, 1:]
            onehot = F.one_hot(target, self.num_classes).movedim(-1, 1)[:, 1:].to(probs.dtype)
            if valid is not None:
                mask = valid.unsqueeze(1).to(probs.dtype)
                probs, onehot = probs * mask, onehot * mask
            axes = [0] + list(range(2, probs.ndim))
            intersect = (probs * onehot).sum(axes)
            denominator = probs.sum(axes) + onehot.sum(axes)
            dice = (2 * intersect + self.smooth) / (denominator + self.smooth).clamp_min(1e-8)
            loss = loss + self.dice_weight * (1 - dice.mean())
        return loss


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net's weights: halve per lower resolution, drop the lowest, normalise to sum 1."""
    w = [1 / 2**i for i in range(n_outputs)]
    if n_outputs > 1:
        w[-1] = 0.0
    total = sum(w)
    return [x / total for x in w]


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over the decoder's outputs at every resolution."""

    def __init__(self, loss: nn.Module, weights: Sequence[float]):
        super().__init__()
        self.loss = loss
        self.weights = list(weights)

    def forward(self, outputs: Sequence[Tensor] | Tensor, targets: Sequence[Tensor] | Tensor) -> Tensor:
        if isinstance(outputs, Tensor):
            return self.loss(outputs, targets if isinstance(targets, Tensor) else targets[0])
        total = None
        # Under DDP every parameter needs a gradient, so zero-weight outputs still enter (times 0), as nnU-Net
        # does with its 1e-6 weight; single-process training skips them.
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        for w, out, tgt in zip(self.weights, outputs, targets):
            if w == 0 and not distributed:
                continue
            term = w * self.loss(out, tgt)
            total = term if total is None else total + term
        return total


def downsample_target(target: Tensor, scales: Sequence[Sequence[float]]) -> list[Tensor]:
    """Nearest-neighbour label pyramids matching the deep-supervision outputs' resolutions."""
    out = []
    for s in scales:
        if all(x == 1 for x in s):
            out.append(target)
        else:
            size = [max(1, int(round(d * f))) for d, f in zip(target.shape[2:], s)]
            out.append(F.interpolate(target.float(), size=size, mode="nearest-exact").to(target.dtype))
    return out
