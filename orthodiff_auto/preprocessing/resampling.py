"""Separable, vectorised resampling of images, label maps and probability maps.

Each axis is resampled on its own with a few interpolation taps gathered with ``np.take`` (2 taps for linear,
4 for cubic convolution, 1 for nearest), i.e. tensor-product (tri)linear / (tri)cubic interpolation with
pixel-centre alignment (``align_corners=False``, as skimage's ``resize`` and nnU-Net use) and edge clamping, no
anti-aliasing. An axis whose size does not change is left untouched, so resampling to the same shape returns
the input values bit for bit.

Orders: 0 nearest, 1 linear, 3 cubic convolution (Keys, a = -0.5: interpolating, third-order accurate).
Anisotropic data (largest/smallest spacing > ``anisotropy_threshold`` in the source or target spacing, with one
unique coarse axis) gets ``through_plane_order`` along the coarse axis when ``separate_through_plane`` is set,
as nnU-Net does (order 0 by default: thick slices are never blended).

Label maps are resampled one-hot: each class' mask is interpolated with ``label_order`` and every voxel takes
the class with the largest weight (ties to the nearest source voxel's class).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Sequence

import numpy as np

from orthodiff_auto.plans.subplans import ResamplingPlan

_TIE_BREAK = 1e-4


def compute_new_shape(old_shape: Sequence[int], old_spacing: Sequence[float],
                      new_spacing: Sequence[float]) -> tuple[int, ...]:
    """``round(old_shape * old_spacing / new_spacing)`` per axis, at least 1."""
    return tuple(max(1, int(round(s * o / n))) for s, o, n in zip(old_shape, old_spacing, new_spacing))


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    x2, x3 = x * x, x * x * x
    return np.where(x <= 1, (a + 2) * x3 - (a + 3) * x2 + 1,
                    np.where(x < 2, a * x3 - 5 * a * x2 + 8 * a * x - 4 * a, 0.0))


@lru_cache(maxsize=256)
def _taps(old_n: int, new_n: int, order: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(indices, weights) per tap for resizing an axis from ``old_n`` to ``new_n`` samples."""
    src = (np.arange(new_n, dtype=np.float64) + 0.5) * (old_n / new_n) - 0.5
    if order == 0:
        idx = np.clip(np.floor(src + 0.5).astype(np.intp), 0, old_n - 1)
        return ((idx, np.ones(new_n, np.float32)),)
    base = np.floor(src).astype(np.intp)
    t = src - base
    if order == 1:
        offsets, weights = (0, 1), (1.0 - t, t)
    elif order == 3:
        offsets = (-1, 0, 1, 2)
        weights = tuple(_cubic(t - o) for o in offsets)
    else:
        raise ValueError(f"interpolation order must be 0, 1 or 3, got {order}")
    return tuple((np.clip(base + o, 0, old_n - 1), w.astype(np.float32)) for o, w in zip(offsets, weights))


def nearest_indices(old_n: int, new_n: int) -> np.ndarray:
    """The source index each of ``new_n`` samples takes when an axis of ``old_n`` is resized with order 0."""
    return _taps(int(old_n), int(new_n), 0)[0][0]


def resample_axis(array: np.ndarray, axis: int, new_n: int, order: int) -> np.ndarray:
    """Resize one axis of ``array`` to ``new_n`` samples (float32 out unless order 0)."""
    old_n = array.shape[axis]
    if old_n == new_n:
        return array
    taps = _taps(old_n, int(new_n), int(order))
    if order == 0:
        return np.take(array, taps[0][0], axis=axis)
    shape = [1] * array.ndim
    shape[axis] = int(new_n)
    out = None
    for idx, w in taps:
        term = np.take(array, idx, axis=axis)
        term *= w.reshape(shape)
        if out is None:
            out = term
        else:
            out += term
    return out


def lowres_axis(spacing: Sequence[float]) -> int | None:
    """The unique axis with the largest spacing, None when that is not unique."""
    sp = np.asarray(spacing, dtype=float)
    hits = np.flatnonzero(np.isclose(sp, sp.max(), rtol=1e-6))
    return int(hits[0]) if hits.size == 1 else None


def axis_orders(current_spacing: Sequence[float], new_spacing: Sequence[float], order: int,
                plan: ResamplingPlan) -> tuple[int, int, int]:
    """Interpolation order per axis: ``order`` in-plane, ``plan.through_plane_order`` along the coarse axis of
    anisotropic data when ``plan.separate_through_plane``."""
    orders = [int(order)] * 3
    if plan.separate_through_plane:
        axis = None
        for sp in (current_spacing, new_spacing):
            sp = np.asarray(sp, dtype=float)
            if sp.max() / sp.min() > plan.anisotropy_threshold:
                axis = lowres_axis(sp)
                break
        if axis is not None:
            orders[axis] = int(plan.through_plane_order)
    return tuple(orders)  # type: ignore[return-value]


def _resample_separable(array: np.ndarray, new_shape: Sequence[int], orders: Sequence[int]) -> np.ndarray:
    lead = array.ndim - 3
    old = array.shape[lead:]
    # Shrinking axes first keeps the intermediate arrays small.
    for a in sorted(range(3), key=lambda a: new_shape[a] / old[a]):
        array = resample_axis(array, lead + a, int(new_shape[a]), int(orders[a]))
    return array


def resample_image(data: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                   new_spacing: Sequence[float], plan: ResamplingPlan, order: int | None = None) -> np.ndarray:
    """Resample the last three axes of ``data`` (any leading channel axes) to ``new_shape`` (float32).

    ``order`` defaults to ``plan.image_order``; pass ``plan.probabilities_order`` for probability maps.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[-3:]) == new_shape:
        return data
    orders = axis_orders(current_spacing, new_spacing, plan.image_order if order is None else order, plan)
    out = _resample_separable(data.astype(np.float32, copy=False), new_shape, orders)
    return np.ascontiguousarray(out, dtype=np.float32)


def resample_argmax(scores: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                    new_spacing: Sequence[float], plan: ResamplingPlan, order: int,
                    source: np.ndarray | None = None) -> np.ndarray:
    """``argmax(resample_image(scores, ..., order=order), axis=0)`` for (C, z, y, x) class scores (probabilities
    or logits), order 0 or 1, without resampling every channel everywhere.

    Linear interpolation is a convex combination of the source voxels it reads (its taps): when all taps have the
    same most probable class, so has the combination. So each output voxel first takes the argmax of its taps;
    only where they disagree (the class boundaries) are the C scores interpolated. Same labels as the full
    resampling (up to float rounding where two classes tie); uint8, or uint16 beyond 256 classes. ``source``: the
    argmax of ``scores`` on their own grid, when the caller has it already.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if source is None:
        source = np.argmax(scores, axis=0).astype(np.uint8 if scores.shape[0] <= 256 else np.uint16)
    if tuple(scores.shape[1:]) == new_shape:
        return source
    orders = axis_orders(current_spacing, new_spacing, order, plan)
    if any(o not in (0, 1) for o in orders):
        raise ValueError(f"resample_argmax handles orders 0 and 1, got {orders}")
    taps = [_taps(old, new, o) if old != new else ((np.arange(new), np.ones(new, np.float32)),)
            for old, new, o in zip(scores.shape[1:], new_shape, orders)]
    combos = list(itertools.product(*taps))
    labels = lowest = highest = None
    for (iz, _), (iy, _), (ix, _) in combos:
        tap = source[np.ix_(iz, iy, ix)]
        if labels is None:
            labels, lowest, highest = tap, tap.copy(), tap.copy()
        else:
            np.minimum(lowest, tap, out=lowest)
            np.maximum(highest, tap, out=highest)
    z, y, x = np.nonzero(lowest != highest)
    if z.size:
        total = np.zeros((scores.shape[0], z.size), dtype=np.float32)
        for (iz, wz), (iy, wy), (ix, wx) in combos:
            total += scores[:, iz[z], iy[y], ix[x]] * (wz[z] * wy[y] * wx[x])
        labels[z, y, x] = np.argmax(total, axis=0)
    return labels


def resample_labels(seg: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                    new_spacing: Sequence[float], plan: ResamplingPlan) -> np.ndarray:
    """Resample a 3D label map one-hot (see module docstring); same dtype out."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(seg.shape) == new_shape:
        return seg
    orders = axis_orders(current_spacing, new_spacing, plan.label_order, plan)
    if all(o == 0 for o in orders):
        return np.ascontiguousarray(_resample_separable(seg, new_shape, orders))
    values = present_labels(seg)
    out = np.full(new_shape, values[0], dtype=seg.dtype)
    if len(values) == 1:
        return out
    # Ties (e.g. a boundary falling exactly between two source voxels) go to the nearest source voxel's label,
    # not systematically to the lower or higher label.
    nearest = _resample_separable(seg, new_shape, (0, 0, 0))
    best = np.full(new_shape, -np.inf, dtype=np.float32)
    for v in values:
        w = _resample_separable((seg == v).astype(np.float32), new_shape, orders)
        w += np.float32(_TIE_BREAK) * (nearest == v)
        better = w > best
        out[better] = v
        np.maximum(best, w, out=best)
    return out


def present_labels(seg: np.ndarray) -> list[int]:
    """Sorted label values present in ``seg`` (linear time for small non-negative integers)."""
    if seg.size == 0:
        return [0]
    lo, hi = int(seg.min()), int(seg.max())
    if lo >= 0 and hi < 65536:
        return [int(v) for v in np.flatnonzero(np.bincount(seg.ravel().astype(np.intp, copy=False), minlength=hi + 1))]
    return [int(v) for v in np.unique(seg)]
