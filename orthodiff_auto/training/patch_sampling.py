"""Choosing training patches: uniform, or centred on a voxel of a random foreground class (oversampling)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd

# How a forced-foreground patch picks the class it is centred on (TrainingConfig.foreground_class_choice):
# "uniform": uniformly among the classes present in the case, as nnU-Net v2 (a 50-voxel ligament as often as a
# large bone); "voxels": a foreground voxel uniformly, so classes in proportion to their volume (MONAI's
# RandCropByPosNegLabel), the alternative this is measured against.
FOREGROUND_CLASS_CHOICES = ("uniform", "voxels")


def patch_bbox(
    image_shape: Sequence[int], patch_size: Sequence[int], rng: np.random.Generator,
    foreground_locations: Mapping[int, np.ndarray] | None = None, force_foreground: bool = False,
    class_choice: str = "uniform", class_voxel_counts: Mapping[int, int] | None = None,
) -> list[list[int]]:
    """Half-open bounding box [[start, end), ...] of a patch, possibly reaching outside the image (padded).

    A uniform patch lies inside the image (centred, with padding, along axes shorter than the patch), as in
    nnU-Net v2. A forced-foreground patch is centred on a stored voxel of a class present in the case, the
    class drawn by ``class_choice`` (``FOREGROUND_CLASS_CHOICES``): "uniform" (nnU-Net v2), so rare structures
    are learned, or "voxels" (in proportion to ``class_voxel_counts``, the classes' full voxel counts; the
    stored locations are capped per class, so their number is the fallback only).
    """
    shape = np.asarray(image_shape)
    patch = np.asarray(patch_size)
    if force_foreground and foreground_locations:
        present = [c for c, locs in foreground_locations.items() if len(locs)]
        if present:
            cls = present[_choose_class(present, foreground_locations, rng, class_choice, class_voxel_counts)]
            locs = foreground_locations[cls]
            centre = np.asarray(locs[rng.integers(len(locs))])
            start = centre - patch // 2
            return [[int(s), int(s + p)] for s, p in zip(start, patch)]
    lower = np.where(shape >= patch, 0, (shape - patch) // 2)
    upper = np.where(shape >= patch, shape - patch, lower)
    start = np.array([rng.integers(lo, hi + 1) for lo, hi in zip(lower, upper)])
    return [[int(s), int(s + p)] for s, p in zip(start, patch)]


def _choose_class(present: Sequence[int], locations: Mapping[int, np.ndarray], rng: np.random.Generator,
                  class_choice: str, counts: Mapping[int, int] | None) -> int:
    """Index into ``present`` of the class a forced-foreground patch is centred on."""
    if class_choice == "uniform":
        return int(rng.integers(len(present)))
    if class_choice != "voxels":
        raise ValueError(f"class_choice must be one of {FOREGROUND_CLASS_CHOICES}, got {class_choice!r}")
    weights = np.asarray([float((counts or {}).get(c, len(locations[c]))) for c in present])
    return int(rng.choice(len(present), p=weights / weights.sum()))


def crop_patch(array, bbox: list[list[int]], pad_value: float = 0) -> np.ndarray:
    """Crop (C, *spatial) data to the bbox over its spatial axes, padding outside the image.

    Works on numpy arrays and blosc2 arrays alike; for blosc2 only the chunks touching the box are read.
    """
    return np.asarray(crop_and_pad_nd(array, bbox, pad_value=pad_value))
