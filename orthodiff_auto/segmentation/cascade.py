"""nnU-Net's cascade: the second stage (``3d_cascade_fullres``) reads the first stage's (``3d_lowres``) prediction
as extra input channels, one per foreground class.

Training the second stage needs the first stage's prediction of every training case made without that case:
each first-stage fold writes its validation cases' predictions, on the second stage's grid, into its run's
``predicted_next_stage/`` folder (as nnU-Net), so after all five folds every training case has one. At
prediction time the first stage's fold ensemble predicts the case and its scores are resampled to the second
stage's grid (``stage_one_on_grid``). During training the previous stage's labels go through the spatial
augmentation with the labels, then become one-hot data channels and are degraded by nnU-Net's random
morphological operators and component removal, so the second stage learns to correct a first stage's errors.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from batchgenerators.transforms.abstract_transforms import AbstractTransform
from scipy import ndimage

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import ViewPlan
from orthodiff_auto.preprocessing.resampling_torch import resample_tensor

PREDICTED_NEXT_STAGE = "predicted_next_stage"


def previous_stage_dir(run_dir: Path) -> Path:
    """Where a first-stage run (all of its folds) writes its validation cases' predictions for the next stage."""
    return Path(run_dir).parent / PREDICTED_NEXT_STAGE


def stage_one_on_grid(scores: torch.Tensor, shape: Sequence[int], stage_one: ViewPlan,
                      stage_two: ViewPlan) -> np.ndarray:
    """The first stage's class scores (C, *its grid) resampled linearly to the second stage's grid ``shape`` (both
    grids span the same cropped region), then the most probable class: uint8 indices (uint16 beyond 256)."""
    on_grid = resample_tensor(scores.float().cpu(), shape, stage_one.target_spacing, stage_two.target_spacing,
                              stage_two.resampling, order=1)
    return on_grid.argmax(0).numpy().astype(np.uint16 if scores.shape[0] > 256 else np.uint8)


def write_next_stage(folder: Path, case_id: str, labels: np.ndarray) -> None:
    """Store a case's first-stage label indices on the second stage's grid (temporary file, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{case_id}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, seg=labels)
        os.replace(tmp, folder / f"{case_id}.npz")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_next_stage(folder: Path, case_id: str) -> np.ndarray:
    path = Path(folder) / f"{case_id}.npz"
    if not path.is_file():
        raise UserInputError(f"{path}: no first-stage prediction of case {case_id!r}; the cascade's second stage "
                             "trains on the first stage's out-of-fold predictions: train every fold of the first "
                             "stage (train_fold ... -c 3d_lowres F, F = 0..4) first")
    with np.load(path) as z:
        return z["seg"]


def missing_cases(folder: Path, case_ids: Sequence[str]) -> list[str]:
    return [c for c in case_ids if not (Path(folder) / f"{c}.npz").is_file()]


def one_hot_foreground(labels: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """(*spatial) class indices -> (num_classes - 1, *spatial) float32 one-hot of the foreground classes."""
    labels = np.asarray(labels)
    classes = np.arange(1, num_classes, dtype=labels.dtype).reshape(-1, *([1] * labels.ndim))
    return (labels[None] == classes).astype(np.float32)


def cascade_input(image: np.ndarray | torch.Tensor, previous: np.ndarray, num_classes: int) -> np.ndarray:
    """The second stage's network input: the (1, *spatial) image and the previous stage's one-hot channels."""
    return np.concatenate([np.asarray(image, dtype=np.float32), one_hot_foreground(previous, num_classes)])


class WithPreviousStage:
    """A preprocessed case source whose labels carry the previous stage's prediction as a second channel (so
    the spatial augmentation moves both alike); ``MoveSegChannelToData`` turns it into data channels."""

    def __init__(self, source, folder: Path):
        self.source, self.folder = source, Path(folder)

    def load(self, case_id: str):
        data, seg, props = self.source.load(case_id)
        previous = read_next_stage(self.folder, case_id)
        seg = np.asarray(seg[...])
        if previous.shape != seg.shape[1:]:
            raise UserInputError(f"{self.folder / (case_id + '.npz')}: first-stage prediction of shape "
                                 f"{list(previous.shape)}, the case's grid is {list(seg.shape[1:])}: preprocessed "
                                 "again since? train the first stage's folds again")
        return data, np.concatenate([seg, previous[None].astype(seg.dtype)]), props


class MoveSegChannelToData(AbstractTransform):
    """nnU-Net's MoveSegAsOneHotToData: the label channel ``channel`` becomes one-hot data channels (every
    foreground class) and leaves the labels."""

    def __init__(self, num_classes: int, channel: int = 1):
        self.num_classes, self.channel = num_classes, channel

    def __call__(self, **d):
        seg = d["seg"]
        previous = np.round(seg[:, self.channel]).astype(np.int16)
        one_hot = np.stack([one_hot_foreground(p, self.num_classes) for p in previous])
        d["data"] = np.concatenate([d["data"], one_hot.astype(d["data"].dtype)], axis=1)
        d["seg"] = np.delete(seg, self.channel, axis=1)
        return d


class RandomBinaryOperator(AbstractTransform):
    """nnU-Net's ApplyRandomBinaryOperatorTransform: per sample (probability ``p_per_sample``), each one-hot
    channel in random order gets a dilation, erosion, opening or closing of a random radius in ``radius_range``
    (nnU-Net: a ball; here that many passes of the 6-neighbourhood, a diamond, many times faster at radius 7);
    a channel's growth is taken from the others, so the channels stay one-hot."""

    OPERATORS = (ndimage.binary_dilation, ndimage.binary_erosion, ndimage.binary_opening, ndimage.binary_closing)

    def __init__(self, channels: Sequence[int], p_per_sample: float = 0.4, radius_range: tuple[int, int] = (1, 8)):
        self.channels, self.p, self.radius_range = list(channels), p_per_sample, radius_range

    def __call__(self, **d):
        data = d["data"]
        for b in range(data.shape[0]):
            if np.random.uniform() >= self.p:
                continue
            for c in np.random.permutation(self.channels):
                mask = data[b, c] > 0
                if not mask.any():
                    continue
                operator = self.OPERATORS[np.random.randint(len(self.OPERATORS))]
                radius = np.random.randint(*self.radius_range)
                changed = operator(mask, ndimage.generate_binary_structure(mask.ndim, 1), iterations=radius)
                grown = changed & ~mask
                for other in self.channels:
                    if other != c:
                        data[b, other][grown] = 0
                data[b, c] = changed.astype(data.dtype)
        return d


class RemoveRandomComponent(AbstractTransform):
    """nnU-Net's RemoveRandomConnectedComponentFromOneHotEncodingTransform: per sample (``p_per_sample``) and
    channel, one random connected component smaller than ``max_fraction`` of the patch is removed."""

    def __init__(self, channels: Sequence[int], p_per_sample: float = 0.2, max_fraction: float = 0.15):
        self.channels, self.p, self.max_fraction = list(channels), p_per_sample, max_fraction

    def __call__(self, **d):
        data = d["data"]
        for b in range(data.shape[0]):
            if np.random.uniform() >= self.p:
                continue
            for c in self.channels:
                components, n = ndimage.label(data[b, c] > 0)
                if n == 0:
                    continue
                sizes = np.bincount(components.ravel())[1:]
                small = np.flatnonzero(sizes < self.max_fraction * components.size) + 1
                if len(small):
                    data[b, c][components == np.random.choice(small)] = 0
        return d


def cascade_transforms(num_classes: int, augment: bool) -> list[AbstractTransform]:
    """What follows the usual transforms for a second stage: the previous stage's labels into data channels and,
    when augmenting, nnU-Net's degradations of them (channels 1.. of the data)."""
    out: list[AbstractTransform] = [MoveSegChannelToData(num_classes)]
    if augment:
        channels = list(range(1, num_classes))
        out += [RandomBinaryOperator(channels), RemoveRandomComponent(channels)]
    return out


__all__ = ["MoveSegChannelToData", "PREDICTED_NEXT_STAGE", "RandomBinaryOperator", "RemoveRandomComponent",
           "WithPreviousStage", "cascade_input", "cascade_transforms", "missing_cases", "one_hot_foreground",
           "previous_stage_dir", "read_next_stage", "stage_one_on_grid", "write_next_stage"]
