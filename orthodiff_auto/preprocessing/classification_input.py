"""The whole-field-of-view input of a view's classifier (and of the diffusion probe): a preprocessed case (at
its view's target spacing) resampled to the plan's classification spacing when that differs (trilinear, on the
whole volume), then centre-padded (with 0, the normalised background) or centre-cropped to the plan's
``input_size``. ``InputLoader`` reads them from a preprocessed folder; ``scan_input`` makes one from a new scan
exactly as training did.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.plans.schema import ViewPlan
from orthodiff_auto.preprocessing.case import preprocess_case
from orthodiff_auto.preprocessing.storage import PreprocessedDataset


@dataclass(frozen=True)
class ViewInput:
    """What a view's classifier sees: ``input_size`` voxels at ``spacing`` (preprocessed array order)."""

    view: str
    spacing: tuple[float, float, float]
    input_size: tuple[int, int, int]

    @classmethod
    def from_plan(cls, view: str, cls_plan) -> "ViewInput":
        return cls(view, tuple(float(s) for s in cls_plan.spacing), tuple(int(s) for s in cls_plan.input_size))

    def to_dict(self) -> dict:
        return {"view": self.view, "spacing": list(self.spacing), "input_size": list(self.input_size)}


def resample_to_spacing(data: np.ndarray, current: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """(C, z, y, x) from ``current`` to ``target`` spacing, trilinear; unchanged when the shape would not change."""
    shape = np.asarray(data.shape[1:])
    new_shape = np.maximum(1, np.round(shape * np.asarray(current, float) / np.asarray(target, float))).astype(int)
    if (new_shape == shape).all():
        return data
    t = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None]
    out = F.interpolate(t, size=tuple(int(s) for s in new_shape), mode="trilinear", align_corners=False)
    return out[0].numpy()


def center_pad_crop(data: np.ndarray, size: Sequence[int], value: float = 0.0) -> np.ndarray:
    """(C, *spatial) centre-cropped where larger and centre-padded with ``value`` where smaller than ``size``."""
    out = np.full((data.shape[0], *size), value, dtype=np.float32)
    src, dst = [slice(None)], [slice(None)]
    for n, s in zip(data.shape[1:], size):
        if n >= s:
            lo = (n - s) // 2
            src.append(slice(lo, lo + s))
            dst.append(slice(0, s))
        else:
            lo = (s - n) // 2
            src.append(slice(0, n))
            dst.append(slice(lo, lo + n))
    out[tuple(dst)] = data[tuple(src)]
    return out


def fit_to_input(data: np.ndarray, spacing: Sequence[float], spec: ViewInput) -> np.ndarray:
    """(C, *spatial) at ``spacing`` -> (C, *spec.input_size) at ``spec.spacing``."""
    return center_pad_crop(resample_to_spacing(data, spacing, spec.spacing), spec.input_size)


def scan_input(image: np.ndarray, geometry: ImageGeometry, view_plan: ViewPlan, spec: ViewInput) -> np.ndarray:
    """(1, *input_size) input of one scan (array in SimpleITK order with its geometry): the view's
    preprocessing, then ``fit_to_input``."""
    data, _, props = preprocess_case(image, geometry, view_plan)
    return fit_to_input(data, props.spacing_after_resampling, spec)


class InputLoader:
    """Whole-field-of-view inputs of one or more views, with an in-memory LRU cache (per process)."""

    def __init__(self, preprocessed_dir: Path | str, inputs: Mapping[str, ViewInput], cache_bytes: float = 1 << 30):
        self.preprocessed_dir = Path(preprocessed_dir)
        self.inputs = dict(inputs)
        self.cache_bytes = float(cache_bytes)
        self._sources: dict = {}
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cached = 0

    def __getstate__(self):  # workers start with an empty cache
        state = self.__dict__.copy()
        state["_sources"], state["_cache"], state["_cached"] = {}, OrderedDict(), 0
        return state

    def source(self, view: str) -> PreprocessedDataset:
        if view not in self._sources:
            self._sources[view] = PreprocessedDataset(self.preprocessed_dir, view)
        return self._sources[view]

    def load(self, view: str, case_id: str) -> np.ndarray:
        """(1, *input_size) float32 (a cached array: do not modify it)."""
        key = (view, case_id)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        data, _, props = self.source(view).load(case_id)
        array = fit_to_input(np.asarray(data[...], dtype=np.float32), props.spacing_after_resampling, self.inputs[view])
        if array.nbytes <= self.cache_bytes:
            self._cache[key] = array
            self._cached += array.nbytes
            while self._cached > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes
        return array


__all__ = ["InputLoader", "ViewInput", "center_pad_crop", "fit_to_input", "resample_to_spacing", "scan_input"]
