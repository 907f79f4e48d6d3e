"""The seeded batch datasets of the classification tasks, their augmentation and case sampling.

The inputs are each view's region of interest (``preprocessing.classification_input``), whose centre training
moves by a random shift within the plan's margin (``shift_regions``). Index ``k`` of a batch dataset is the batch
of iteration ``start + k``: cases and shifts drawn by a generator seeded with (seed, rank, iteration),
augmentation seeded the same way, so a resumed run replays exactly the batches it would have seen.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from batchgenerators.transforms.spatial_transforms import MirrorTransform
from torch.utils.data import Dataset

from orthodiff_auto.data.views import VIEW_NORMAL_AXIS
from orthodiff_auto.preprocessing.classification_input import InputLoader, ViewInput, random_shift
from orthodiff_auto.training.augmentation import (
    AugmentationParams,
    build_training_transforms,
    through_plane_axis_for_dummy_2d,
)
from orthodiff_auto.training.batches import seeded_numpy_global


@contextlib.contextmanager
def seeded_augmentation(seed_sequence: Sequence[int]):
    """Seed every generator batchgenerators draws from for one batch (numpy's and Python's global ones, see
    ``training.batches.seeded_numpy_global``), then restore them."""
    with seeded_numpy_global(seed_sequence):
        yield


# ---------------------------------------------------------------- geometry of one input

def left_right_axis(view: str) -> int | None:
    """The preprocessed array axis running left-right in a view's canonical orientation.

    Canonical axis 0 is the view's slice normal, axes 1 and 2 the remaining physical (LPS) axes in the order
    z, y, x (see ``data.orientation``); the left-right axis is physical x.
    """
    if view not in VIEW_NORMAL_AXIS:
        return None
    normal = VIEW_NORMAL_AXIS[view]
    physical = (normal, *[p for p in (2, 1, 0) if p != normal])
    return physical.index(0)


def mirror_axes(view: str, mode: str) -> tuple[int, ...]:
    """Spatial axes that mirroring augmentation may flip: "left_right", "all" or "none"."""
    if mode == "all":
        return (0, 1, 2)
    if mode == "left_right":
        axis = left_right_axis(view)
        return () if axis is None else (axis,)
    return ()


# ---------------------------------------------------------------- sampling

def balanced_case_weights(labels: np.ndarray) -> np.ndarray:
    """Sampling probability per case so that, for every finding, positives and negatives weigh alike on average.

    ``labels`` (cases, findings) 0/1. A case's weight is the mean over findings of 1/n_positive (when it is
    positive) or 1/n_negative (when negative); findings with one class only are left out.
    """
    y = np.asarray(labels, dtype=float)
    if y.size == 0:
        return np.full(len(y), 1.0 / max(len(y), 1))
    n_pos, n_neg = y.sum(0), (1 - y).sum(0)
    informative = (n_pos > 0) & (n_neg > 0)
    if not informative.any():
        return np.full(len(y), 1.0 / len(y))
    per = y[:, informative] / n_pos[informative] + (1 - y[:, informative]) / n_neg[informative]
    w = per.mean(1)
    return w / w.sum()


def positive_weights(labels: np.ndarray, max_weight: float) -> np.ndarray:
    """BCE ``pos_weight`` per finding: n_negative / n_positive, clamped to [1/max_weight, max_weight]."""
    y = np.asarray(labels, dtype=float)
    n_pos, n_neg = y.sum(0), (1 - y).sum(0)
    ratio = n_neg / np.maximum(n_pos, 1.0)
    return np.clip(ratio, 1.0 / max_weight, max_weight).astype(np.float32)


def drop_views(present: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Each present view of each row dropped with ``probability``; a row keeps at least one of its views."""
    present = np.asarray(present, dtype=bool)
    keep = present & (rng.random(present.shape) >= probability)
    for row in np.flatnonzero(~keep.any(1) & present.any(1)):
        keep[row, rng.choice(np.flatnonzero(present[row]))] = True
    return keep


# ---------------------------------------------------------------- batch datasets

class SeededCaseBatches(Dataset):
    """Index ``k`` -> the batch of iteration ``start + k``, whose ``batch_size`` cases (indices into the
    ``num_cases`` cases, whose label rows are ``labels``) are drawn with replacement, with probabilities
    ``weights``, by a generator seeded with (seed, rank, iteration)."""

    def __init__(self, num_cases: int, labels: np.ndarray, batch_size: int, start: int, total: int, seed: int,
                 rank: int = 0, weights: np.ndarray | None = None):
        if not num_cases:
            raise ValueError("no cases to draw batches from")
        self.num_cases = int(num_cases)
        self.labels = np.asarray(labels, dtype=np.float32)
        self.batch_size = int(batch_size)
        self.start, self.total = start, total
        self.seed, self.rank = seed, rank
        self.weights = weights

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def shifts(self, rng: np.random.Generator, spec: ViewInput, n: int) -> list[tuple[int, int, int]]:
        """``n`` region shifts (all zero unless ``shift_regions``)."""
        if not getattr(self, "shift_regions", False):
            return [(0, 0, 0)] * n
        return [random_shift(rng, spec) for _ in range(n)]

    def draw(self, index: int) -> tuple[int, np.random.Generator, np.ndarray]:
        """(iteration, its generator, the drawn case rows) of batch ``index``."""
        iteration = self.start + index
        rng = np.random.default_rng([self.seed, self.rank, iteration])
        return iteration, rng, rng.choice(self.num_cases, self.batch_size, replace=True, p=self.weights)


class ViewBatches(SeededCaseBatches):
    """Batches of one view: ``{"data": (B, 1, *input_size), "target": (B, F)}``."""

    def __init__(self, loader: InputLoader, view: str, case_ids: Sequence[str], labels: np.ndarray, batch_size: int,
                 transforms: Callable | None, start: int, total: int, seed: int, rank: int = 0,
                 weights: np.ndarray | None = None, shift_regions: bool = False, with_noise: bool = False):
        super().__init__(len(case_ids), labels, batch_size, start, total, seed, rank, weights)
        self.loader, self.view = loader, view
        self.case_ids = list(case_ids)
        self.transforms = transforms
        self.shift_regions = shift_regions
        self.with_noise = with_noise  # a standard normal "noise" per case, for classifiers on noised inputs

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        iteration, rng, chosen = self.draw(index)
        shifts = self.shifts(rng, self.loader.inputs[self.view], len(chosen))
        data = np.stack([self.loader.load(self.view, self.case_ids[c], d) for c, d in zip(chosen, shifts)])
        if self.transforms is not None:
            with seeded_augmentation([self.seed, self.rank, iteration, 1]):
                data = self.transforms(data=data)["data"]
        out = {"data": torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)),
               "target": torch.from_numpy(self.labels[chosen])}
        if self.with_noise:
            out["noise"] = torch.from_numpy(rng.standard_normal(data.shape, dtype=np.float32))
        return out


class FusedBatches(SeededCaseBatches):
    """Batches of every view of the drawn cases: ``{"data_<view>": (B, 1, *size_v), "present": (B, V) bool,
    "target": (B, F)}``. A view a case lacks has ``present`` False and an all-zero placeholder that the fused
    model never looks at."""

    def __init__(self, loader: InputLoader, views: Sequence[str], case_ids: Sequence[str], present: np.ndarray,
                 labels: np.ndarray, batch_size: int, transforms: Mapping[str, Callable | None], start: int,
                 total: int, seed: int, rank: int = 0, weights: np.ndarray | None = None,
                 view_dropout: float = 0.0, shift_regions: bool = False):
        super().__init__(len(case_ids), labels, batch_size, start, total, seed, rank, weights)
        self.loader, self.views = loader, list(views)
        self.case_ids = list(case_ids)
        self.present = np.asarray(present, dtype=bool)
        self.transforms = dict(transforms)
        self.view_dropout = float(view_dropout)
        self.shift_regions = shift_regions

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        iteration, rng, chosen = self.draw(index)
        present = self.present[chosen].copy()
        if self.view_dropout > 0:
            present = drop_views(present, self.view_dropout, rng)
        out: dict[str, torch.Tensor] = {}
        for v, view in enumerate(self.views):
            spec = self.loader.inputs[view]
            data = np.zeros((len(chosen), 1, *spec.input_size), dtype=np.float32)
            for j, (c, shift) in enumerate(zip(chosen, self.shifts(rng, spec, len(chosen)))):
                if present[j, v]:
                    data[j] = self.loader.load(view, self.case_ids[c], shift)
            transform = self.transforms.get(view)
            if transform is not None:
                with seeded_augmentation([self.seed, self.rank, iteration, 1 + v]):
                    data = transform(data=data)["data"]
            out[f"data_{view}"] = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        out["present"] = torch.from_numpy(present)
        out["target"] = torch.from_numpy(self.labels[chosen])
        return out


def build_transforms(input_spec: ViewInput, probability_scale: float, mirror: str, rotation_degrees: float,
                     scale_range: tuple[float, float]):
    """Mild batchgenerators augmentation of a classification input (None when ``probability_scale`` is 0)."""
    if probability_scale <= 0:
        return None
    params = AugmentationParams(rotation_degrees_3d=rotation_degrees, rotation_degrees_2d=rotation_degrees,
                                scale_range=tuple(scale_range), mirror=False)
    dummy_2d = through_plane_axis_for_dummy_2d(input_spec.spacing, input_spec.input_size)
    compose = build_training_transforms(input_spec.input_size, dummy_2d, params, probability_scale=probability_scale,
                                        with_seg=False)
    axes = mirror_axes(input_spec.view, mirror)
    if axes:
        compose.transforms.append(MirrorTransform(axes))
    return compose


__all__ = [
    "SeededCaseBatches", "ViewBatches", "FusedBatches", "build_transforms", "left_right_axis", "mirror_axes", "balanced_case_weights",
    "positive_weights", "drop_views",
]
