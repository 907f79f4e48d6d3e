"""The input of a view's classifier (and of the diffusion probe): the plan's region of interest, centred on the
case's anatomy, at the classification spacing.

A preprocessed case (canonical orientation, normalised, at the view's target spacing) is resampled to the
classification spacing when that differs (Gaussian anti-aliasing first along every axis that is downsampled,
sigma = (factor - 1) / 2 voxels as scikit-image does, then trilinear), and a box of the plan's ``input_size``
is cut around a centre:

- training: the centre of the reference labels' bounding box (labelled anatomy, ignore label excluded), moved
  by a random shift of up to the plan's margin when the training loop asks for one (augmentation that also
  covers the error of a predicted region);
- prediction: the centre of the predicted segmentation's bounding box (the cascade: segment, then classify the
  region), the same function with ``centre_from_labels`` on the prediction;
- no labelled anatomy (a dataset without segmentation labels, or an empty prediction): the centre of the
  non-zero field of view.

Voxels of the box outside the volume are 0 (the normalised background). ``InputLoader`` reads preprocessed
folders (and caches the resampled volumes); ``classification.reader.PreparedScan`` prepares a new scan.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from orthodiff_auto.preprocessing.storage import PreprocessedDataset


@dataclass(frozen=True)
class ViewInput:
    """What a view's classifier sees: ``input_size`` voxels at ``spacing`` around the case's anatomy
    (preprocessed array order); ``max_shift_mm`` bounds the training-time shift of the centre."""

    view: str
    spacing: tuple[float, float, float]
    input_size: tuple[int, int, int]
    antialias: bool = True
    max_shift_mm: float = 0.0
    roi_source: str = "field_of_view"

    @classmethod
    def from_plan(cls, view: str, cls_plan) -> "ViewInput":
        return cls(view, tuple(float(s) for s in cls_plan.spacing), tuple(int(s) for s in cls_plan.input_size),
                   bool(cls_plan.antialias), float(cls_plan.roi_margin_mm), str(cls_plan.roi_source))

    @classmethod
    def from_dict(cls, d: Mapping) -> "ViewInput":
        return cls(str(d["view"]), tuple(float(s) for s in d["spacing"]), tuple(int(s) for s in d["input_size"]),
                   bool(d.get("antialias", False)), float(d.get("max_shift_mm", 0.0)),
                   str(d.get("roi_source", "field_of_view")))

    def to_dict(self) -> dict:
        return {"view": self.view, "spacing": list(self.spacing), "input_size": list(self.input_size),
                "antialias": self.antialias, "max_shift_mm": self.max_shift_mm, "roi_source": self.roi_source}

    @property
    def max_shift_voxels(self) -> np.ndarray:
        return np.floor(self.max_shift_mm / np.asarray(self.spacing)).astype(int)


@dataclass(frozen=True)
class RegionVolume:
    """A case's volume at the classification spacing and the centre (voxels, float) its region is cut around."""

    data: np.ndarray  # (C, z, y, x) float32
    centre: np.ndarray  # (3,) float


def antialias_sigma(current: Sequence[float], target: Sequence[float]) -> tuple[float, ...]:
    """Per-axis Gaussian sigma (in source voxels) before resampling from ``current`` to ``target`` spacing: 0
    where the axis is not downsampled, (factor - 1) / 2 where it is (scikit-image's ``anti_aliasing`` rule)."""
    return tuple(max(0.0, (t / c - 1.0) / 2.0) for c, t in zip(current, target))


def resample_to_spacing(data: np.ndarray, current: Sequence[float], target: Sequence[float],
                        antialias: bool = False) -> np.ndarray:
    """(C, z, y, x) from ``current`` to ``target`` spacing: optional Gaussian anti-aliasing on downsampled axes,
    then trilinear; unchanged when the shape would not change."""
    shape = np.asarray(data.shape[1:])
    new_shape = np.maximum(1, np.round(shape * np.asarray(current, float) / np.asarray(target, float))).astype(int)
    if (new_shape == shape).all():
        return data
    data = np.ascontiguousarray(data, dtype=np.float32)
    sigma = antialias_sigma(current, target) if antialias else (0.0, 0.0, 0.0)
    if any(s > 0 for s in sigma):
        from scipy.ndimage import gaussian_filter  # scipy only when a case is downsampled

        data = np.stack([gaussian_filter(c, sigma, mode="nearest") for c in data])
    t = torch.from_numpy(data)[None]
    out = F.interpolate(t, size=tuple(int(s) for s in new_shape), mode="trilinear", align_corners=False)
    return out[0].numpy()


def centre_from_labels(labels: np.ndarray | None, ignore_label: int | None = None) -> np.ndarray | None:
    """Centre (voxels, float) of the bounding box of ``labels > 0`` (ignore label excluded); None when empty."""
    if labels is None:
        return None
    mask = np.asarray(labels) > 0
    if ignore_label is not None:
        mask &= np.asarray(labels) != ignore_label
    if mask.ndim == 4:
        mask = mask.any(0)
    if not mask.any():
        return None
    lo, hi = [], []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return (np.asarray(lo, float) + np.asarray(hi, float)) / 2.0 - 0.5


def rescale_centre(centre: np.ndarray, current: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """A voxel position on a grid of ``current`` spacing expressed on the grid of ``target`` spacing (the same
    physical point; voxel centres at index + 0.5 times the spacing from the volume's corner)."""
    return (np.asarray(centre, float) + 0.5) * np.asarray(current, float) / np.asarray(target, float) - 0.5


def region_volume(data: np.ndarray, spacing: Sequence[float], spec: ViewInput,
                  centre: np.ndarray | None) -> RegionVolume:
    """``data`` (C, *spatial) at ``spacing`` -> the volume at the classification spacing with its region centre
    (``centre`` in ``data``'s voxels; the volume's middle when None)."""
    resampled = resample_to_spacing(data, spacing, spec.spacing, spec.antialias)
    if centre is None:
        centre_out = (np.asarray(resampled.shape[1:], float) - 1) / 2.0
    else:
        centre_out = rescale_centre(centre, spacing, spec.spacing)
    return RegionVolume(np.ascontiguousarray(resampled, dtype=np.float32), centre_out)


def cut_region(volume: RegionVolume, size: Sequence[int], shift: Sequence[int] = (0, 0, 0),
               value: float = 0.0) -> np.ndarray:
    """(C, *size): the box of ``size`` voxels centred on the volume's centre moved by ``shift`` voxels; voxels
    outside the volume are ``value``."""
    data = volume.data
    out = np.full((data.shape[0], *size), value, dtype=np.float32)
    src, dst = [slice(None)], [slice(None)]
    for n, s, c, d in zip(data.shape[1:], size, volume.centre, shift):
        lo = int(np.floor(c + d + 0.5)) - s // 2
        a, b = max(lo, 0), min(lo + s, n)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = data[tuple(src)]
    return out


class InputLoader:
    """Classification inputs of one or more views from a preprocessed folder, with an in-memory LRU cache of the
    resampled volumes (per process). The region is centred on the reference labels (``roi_source`` "labels")."""

    def __init__(self, preprocessed_dir: Path | str, inputs: Mapping[str, ViewInput], cache_bytes: float = 1 << 30,
                 ignore_label: int | None = None):
        self.preprocessed_dir = Path(preprocessed_dir)
        self.inputs = dict(inputs)
        self.cache_bytes = float(cache_bytes)
        self.ignore_label = ignore_label
        self._sources: dict = {}
        self._cache: OrderedDict[tuple[str, str], RegionVolume] = OrderedDict()
        self._cached = 0

    def __getstate__(self):  # workers start with an empty cache
        state = self.__dict__.copy()
        state["_sources"], state["_cache"], state["_cached"] = {}, OrderedDict(), 0
        return state

    def source(self, view: str) -> PreprocessedDataset:
        if view not in self._sources:
            self._sources[view] = PreprocessedDataset(self.preprocessed_dir, view)
        return self._sources[view]

    def volume(self, view: str, case_id: str) -> RegionVolume:
        """The case's volume at the classification spacing and its region centre (cached: do not modify)."""
        key = (view, case_id)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        spec = self.inputs[view]
        data, seg, props = self.source(view).load(case_id)
        centre = None
        if spec.roi_source == "labels" and seg is not None:
            centre = centre_from_labels(np.asarray(seg[...]), self.ignore_label)
        volume = region_volume(np.asarray(data[...], dtype=np.float32), props.spacing_after_resampling, spec, centre)
        if volume.data.nbytes <= self.cache_bytes:
            self._cache[key] = volume
            self._cached += volume.data.nbytes
            while self._cached > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.data.nbytes
        return volume

    def load(self, view: str, case_id: str, shift: Sequence[int] = (0, 0, 0)) -> np.ndarray:
        """(1, *input_size) float32: the case's region, its centre moved by ``shift`` voxels."""
        return cut_region(self.volume(view, case_id), self.inputs[view].input_size, shift)


def random_shift(rng: np.random.Generator, spec: ViewInput) -> tuple[int, int, int]:
    """A uniform shift of the region's centre within the plan's margin (voxels per axis)."""
    limit = spec.max_shift_voxels
    return tuple(int(rng.integers(-m, m + 1)) if m > 0 else 0 for m in limit)


__all__ = ["InputLoader", "RegionVolume", "ViewInput", "antialias_sigma", "centre_from_labels", "cut_region",
           "random_shift", "region_volume", "rescale_centre", "resample_to_spacing"]
