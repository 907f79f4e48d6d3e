"""Choosing training patches: uniform, or centred on a voxel of a random foreground class (oversampling)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd


def patch_bbox(
    image_shape: Sequence[int], patch_size: Sequence[int], rng: np.random.Generator,
    foreground_locations: Mapping[int, np.ndarray] | None = None, force_foreground: bool = False,
) -> list[list[int]]:
    """Half-open bounding box [[start, end), ...] of a patch, possibly reaching outside the image (padded).

    A uniform patch lies inside the image (centred, with padding, along axes shorter than the patch), as in
    nnU-Net v2. A forced-foreground patch is centred on a voxel of a class drawn uniformly among the classes
    present in the case, so rare structures are learned.
    """
    shape = np.asarray(image_shape)
    patch = np.asarray(patch_size)
    if force_foreground and foreground_locations:
        present = [c for c, locs in foreground_locations.items() if len(locs)]
        if present:
            cls = present[rng.integers(len(present))]
            locs = foreground_locations[cls]
            centre = np.asarray(locs[rng.integers(len(locs))])
            start = centre - patch // 2
            return [[int(s), int(s + p)] for s, p in zip(start, patch)]
    lower = np.where(shape >= patch, 0, (shape - patch) // 2)
    upper = np.where(shape >= patch, shape - patch, lower)
    start = np.array([rng.integers(lo, hi + 1) for lo, hi in zip(lower, upper)])
    return [[int(s), int(s + p)] for s, p in zip(start, patch)]


def crop_patch(array, bbox: list[list[int]], pad_value: float = 0) -> np.ndarray:
    """Crop (C, *spatial) data to the bbox over its spatial axes, padding outside the image.

    Works on numpy arrays and blosc2 arrays alike; for blosc2 only the chunks touching the box are read.
    """
    return np.asarray(crop_and_pad_nd(array, bbox, pad_value=pad_value))
