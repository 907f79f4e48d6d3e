"""Crop to the non-zero region (nnU-Net's first preprocessing step) and paste back."""

from __future__ import annotations

from typing import Sequence

import numpy as np

BBox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # [lo, hi) per axis


def nonzero_bbox(image: np.ndarray) -> BBox:
    """Smallest box holding every non-zero voxel; the whole image when it has none."""
    mask = image != 0
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return tuple((0, int(s)) for s in image.shape)  # type: ignore[return-value]
        box.append((int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)  # type: ignore[return-value]


def crop(array: np.ndarray, bbox: Sequence[Sequence[int]]) -> np.ndarray:
    """Crop the last three axes to ``bbox``."""
    sl = tuple(slice(int(lo), int(hi)) for lo, hi in bbox)
    return array[(Ellipsis,) + sl]


def paste(cropped: np.ndarray, bbox: Sequence[Sequence[int]], full_shape: Sequence[int], fill=0) -> np.ndarray:
    """Inverse of ``crop``: an array of ``full_shape`` (last three axes; leading axes taken from ``cropped``)
    holding ``cropped`` inside ``bbox`` and ``fill`` elsewhere. ``fill`` may be a per-channel sequence."""
    lead = cropped.shape[:-3]
    out = np.empty(tuple(lead) + tuple(int(s) for s in full_shape), dtype=cropped.dtype)
    if np.ndim(fill) == 0:
        out[...] = fill
    else:
        out[...] = np.asarray(fill, dtype=cropped.dtype).reshape(tuple(lead) + (1, 1, 1))
    sl = tuple(slice(int(lo), int(hi)) for lo, hi in bbox)
    out[(Ellipsis,) + sl] = cropped
    return out
