"""Resampling of images, label maps and score maps with nnU-Net v2's numerics, vectorised and separable.

nnU-Net (``default_resampling.resample_data_or_seg``) resizes images with skimage's ``resize`` (``mode='edge'``,
``anti_aliasing=False``, ``clip=True``), i.e. ``scipy.ndimage.zoom`` with ``grid_mode=True``: pixel centres
aligned, the edge voxel repeated beyond the border, the output clipped to the input's range. Order 3 is a cubic
B-spline: the input is padded by 12 edge voxels, prefiltered into spline coefficients, and each output voxel is a
weighted sum of 4 coefficients per axis. All of that is separable, so this module does it one axis at a time with
scipy's own prefilter (``spline_filter1d``) and 4 taps gathered with ``np.take``, instead of ``zoom``'s 64 taps
per voxel (skimage is not a dependency of ours; scipy is). Orders 1 (linear) and 0 (nearest) take 2 and 1 taps.
An axis whose size does not change is left untouched.

Anisotropic data, nnU-Net's rule (``determine_do_sep_z_and_axis``, ``force_separate_z=None``): when the source
spacing's largest/smallest ratio exceeds ``anisotropy_threshold`` (3), else the target's, and exactly one axis
has the largest spacing, that axis is resampled separately with ``through_plane_order`` (0: nearest, as
``map_coordinates(order=0, mode='nearest')``) after the in-plane resize of each slice, which is then clipped to
that slice's range (nnU-Net resizes slice by slice). Otherwise all three axes take the same order and the clip
is to the whole channel's range.

Label maps as nnU-Net resamples them (batchgenerators' ``resize_segmentation``): each label's mask is interpolated
with ``label_order`` (float64), the voxel takes the label with the largest score, an exact tie goes to the
nearest source voxel's label when that is one of the tied labels, else to the smaller label; with a separate
axis the masks are resized in plane and the labels taken along that axis by nearest neighbour.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy.ndimage import spline_filter1d
from scipy.sparse import csr_matrix

from orthodiff_auto.plans.subplans import ResamplingPlan

# scipy.ndimage pads this many edge voxels before the spline prefilter for mode 'nearest' (_prepad_for_spline_filter)
_SPLINE_PAD = 12


def compute_new_shape(old_shape: Sequence[int], old_spacing: Sequence[float],
                      new_spacing: Sequence[float]) -> tuple[int, ...]:
    """``round(old_spacing / new_spacing * old_shape)`` per axis (nnU-Net's order of operations), at least 1."""
    return tuple(max(1, int(round(o / n * s))) for s, o, n in zip(old_shape, old_spacing, new_spacing))


def _bspline3(t: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cubic B-spline weights of the taps at offsets -1, 0, 1, 2 from ``floor(x)``, ``t = x - floor(x)``."""
    s = 1.0 - t
    return s * s * s / 6.0, (4.0 - 6.0 * t * t + 3.0 * t * t * t) / 6.0, \
        (1.0 + 3.0 * t + 3.0 * t * t - 3.0 * t * t * t) / 6.0, t * t * t / 6.0


@lru_cache(maxsize=256)
def _taps(old_n: int, new_n: int, order: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(indices, float64 weights) per tap for resizing an axis from ``old_n`` to ``new_n`` samples. Order 3 indexes
    the coefficients of the axis padded by ``_SPLINE_PAD`` on each side."""
    src = (np.arange(new_n, dtype=np.float64) + 0.5) * (old_n / new_n) - 0.5
    if order == 0:
        idx = np.clip(np.floor(src + 0.5).astype(np.intp), 0, old_n - 1)
        return ((idx, np.ones(new_n)),)
    base = np.floor(src).astype(np.intp)
    t = src - base
    if order == 1:
        return tuple((np.clip(base + o, 0, old_n - 1), w) for o, w in zip((0, 1), (1.0 - t, t)))
    if order == 3:
        return tuple((base + o + _SPLINE_PAD, w) for o, w in zip((-1, 0, 1, 2), _bspline3(t)))
    raise ValueError(f"interpolation order must be 0, 1 or 3, got {order}")


def nearest_indices(old_n: int, new_n: int) -> np.ndarray:
    """The source index each of ``new_n`` samples takes when an axis of ``old_n`` is resized with order 0."""
    return _taps(int(old_n), int(new_n), 0)[0][0]


@lru_cache(maxsize=256)
def _tap_matrix(old_n: int, new_n: int, order: int) -> csr_matrix:
    """The taps of ``_taps`` as a sparse (new_n, source samples) matrix, each row's entries in tap order."""
    taps = _taps(old_n, new_n, order)
    columns = np.stack([idx for idx, _ in taps], axis=1).ravel()
    weights = np.stack([w for _, w in taps], axis=1).ravel()
    rows = np.arange(0, new_n * len(taps) + 1, len(taps))
    return csr_matrix((weights, columns, rows), shape=(new_n, old_n + 2 * _SPLINE_PAD if order == 3 else old_n))


def resample_axis(array: np.ndarray, axis: int, new_n: int, order: int, dtype=np.float32) -> np.ndarray:
    """Resize one axis of ``array`` to ``new_n`` samples, computed in ``dtype`` (order 0 keeps the input's).

    float64 (order 3 images, label masks) goes through a sparse matrix product over the axis moved to the front:
    the same products summed in the same order as the taps below, without a temporary array per tap."""
    old_n = array.shape[axis]
    if old_n == new_n:
        return array
    taps = _taps(old_n, int(new_n), int(order))
    if order == 0:
        return np.take(array, taps[0][0], axis=axis)
    if order == 3:
        pad = [(0, 0)] * array.ndim
        pad[axis] = (_SPLINE_PAD, _SPLINE_PAD)
        array = spline_filter1d(np.pad(array, pad, mode="edge"), 3, axis=axis, mode="nearest", output=np.float64)
    if np.dtype(dtype) == np.float64:
        front = np.moveaxis(array, axis, 0)
        out = _tap_matrix(old_n, int(new_n), int(order)) @ front.reshape(front.shape[0], -1).astype(np.float64)
        return np.moveaxis(out.reshape((int(new_n),) + front.shape[1:]), 0, axis)
    shape = [1] * array.ndim
    shape[axis] = int(new_n)
    out = None
    for idx, w in taps:
        term = np.take(array, idx, axis=axis).astype(dtype, copy=False)
        term *= w.astype(dtype).reshape(shape)
        if out is None:
            out = term
        else:
            out += term
    return out


def separate_axis(current_spacing: Sequence[float], new_spacing: Sequence[float],
                  plan: ResamplingPlan) -> int | None:
    """The axis nnU-Net resamples on its own (``determine_do_sep_z_and_axis``), None when there is none.

    The source spacing decides when its largest/smallest ratio exceeds ``plan.anisotropy_threshold``, else the
    target's; the axis is the one with exactly the largest spacing, none when two or three share it. With
    ``plan.separate_through_plane`` false, never (nnU-Net's ``force_separate_z=False``).
    """
    if not plan.separate_through_plane:
        return None
    for spacing in (current_spacing, new_spacing):
        sp = np.asarray(spacing, dtype=float)
        if sp.max() / sp.min() > plan.anisotropy_threshold:
            hits = np.flatnonzero(sp.max() / sp == 1)
            return int(hits[0]) if hits.size == 1 else None
    return None


def axis_orders(current_spacing: Sequence[float], new_spacing: Sequence[float], order: int,
                plan: ResamplingPlan) -> tuple[int, int, int]:
    """Interpolation order per axis: ``order``, and ``plan.through_plane_order`` along ``separate_axis``."""
    orders = [int(order)] * 3
    axis = separate_axis(current_spacing, new_spacing, plan)
    if axis is not None:
        orders[axis] = int(plan.through_plane_order)
    return tuple(orders)  # type: ignore[return-value]


def _resample_axes(array: np.ndarray, new_shape: Sequence[int], orders: Sequence[int], axes: Sequence[int],
                   dtype=np.float32) -> np.ndarray:
    """Resize the listed spatial axes (0-2 of the last three), shrinking ones first to keep intermediates small."""
    lead = array.ndim - 3
    old = array.shape[lead:]
    for a in sorted(axes, key=lambda a: new_shape[a] / old[a]):
        array = resample_axis(array, lead + a, int(new_shape[a]), int(orders[a]), dtype)
    return array


def _clip_to_input_range(out: np.ndarray, data: np.ndarray, reduce_axes: tuple[int, ...]) -> None:
    """skimage's ``clip=True``: the output of each resize call within that call's input range, in place."""
    np.clip(out, data.min(axis=reduce_axes, keepdims=True), data.max(axis=reduce_axes, keepdims=True), out=out)


def resample_image(data: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                   new_spacing: Sequence[float], plan: ResamplingPlan, order: int | None = None) -> np.ndarray:
    """Resample the last three axes of ``data`` (any leading channel axes) to ``new_shape`` (float32), as nnU-Net's
    ``resample_data_or_seg`` does for ``is_seg=False`` (see module docstring).

    ``order`` defaults to ``plan.image_order``; pass ``plan.probabilities_order`` for probability or logit maps.
    Orders 0 and 1 are computed in float32 (they only blend, no clip changes them); order 3 in float64, as nnU-Net.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[-3:]) == new_shape:
        return data
    order = plan.image_order if order is None else int(order)
    orders = axis_orders(current_spacing, new_spacing, order, plan)
    if order != 3:
        out = _resample_axes(data.astype(np.float32, copy=False), new_shape, orders, range(3))
        return np.ascontiguousarray(out, dtype=np.float32)
    lead = data.ndim - 3
    axis = separate_axis(current_spacing, new_spacing, plan)
    in_plane = [a for a in range(3) if a != axis]
    out = _resample_axes(data, new_shape, orders, in_plane, np.float64)
    if out is not data:  # in-plane sizes unchanged: nothing interpolated, nothing to clip (and data stays unwritten)
        _clip_to_input_range(out, data, tuple(lead + a for a in in_plane))
    if axis is not None:
        out = _resample_axes(out, new_shape, orders, [axis], np.float64)
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
    # The smallest and largest tap class of each output voxel, one axis at a time (the minimum over all tap
    # combinations is the minimum over each axis' taps in turn), shrinking axes first; ``labels``: the class of
    # each voxel's first tap, its label wherever the taps agree.
    labels = lowest = highest = source
    for axis in sorted(range(3), key=lambda a: new_shape[a] / source.shape[a]):
        first = taps[axis][0][0]
        labels = np.take(labels, first, axis=axis)
        low, high = np.take(lowest, first, axis=axis), np.take(highest, first, axis=axis)
        for idx, _ in taps[axis][1:]:
            np.minimum(low, np.take(lowest, idx, axis=axis), out=low)
            np.maximum(high, np.take(highest, idx, axis=axis), out=high)
        lowest, highest = low, high
    z, y, x = np.nonzero(lowest != highest)
    if z.size:
        flat_scores = scores.reshape(scores.shape[0], -1)
        _, n_y, n_x = scores.shape[1:]
        total = np.zeros((scores.shape[0], z.size), dtype=np.float32)
        for (iz, wz), (iy, wy), (ix, wx) in itertools.product(*taps):
            flat = (iz[z] * n_y + iy[y]) * n_x + ix[x]  # scores[:, iz[z], iy[y], ix[x]], gathered as one index
            total += np.take(flat_scores, flat, axis=1) * (wz[z] * wy[y] * wx[x])
        labels[z, y, x] = np.argmax(total, axis=0)
    return labels


def resample_labels(seg: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                    new_spacing: Sequence[float], plan: ResamplingPlan) -> np.ndarray:
    """Resample a 3D label map as nnU-Net does (see module docstring); same dtype out."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(seg.shape) == new_shape:
        return seg
    orders = axis_orders(current_spacing, new_spacing, plan.label_order, plan)
    axis = separate_axis(current_spacing, new_spacing, plan)
    in_plane = [a for a in range(3) if a != axis]
    if plan.label_order == 0 or all(seg.shape[a] == new_shape[a] for a in in_plane):
        out = _resample_axes(seg, new_shape, (0, 0, 0), in_plane)
    else:
        out = _label_argmax(seg, new_shape, orders, in_plane)
    if axis is not None and plan.through_plane_order == 0:
        out = _resample_axes(out, new_shape, orders, [axis])
    elif axis is not None:  # nnU-Net: every label's mask above 0.5 along the axis, larger labels written last
        mask_values, labels = present_labels(out), np.zeros(new_shape, dtype=seg.dtype)
        for v in mask_values:
            labels[_resample_axes((out == v).astype(np.float64), new_shape, orders, [axis], np.float64) > 0.5] = v
        out = labels
    return np.ascontiguousarray(out, dtype=seg.dtype)


def _label_argmax(seg: np.ndarray, new_shape: Sequence[int], orders: Sequence[int],
                  axes: Sequence[int]) -> np.ndarray:
    """The label with the largest interpolated mask along ``axes``; exact ties to the nearest voxel's label when
    it is one of them (batchgenerators' ``_resample_seg_by_argmax`` with ``seg_tiebreak='nearest'``)."""
    values = present_labels(seg)
    target = tuple(int(new_shape[a]) if a in axes else seg.shape[a] for a in range(3))
    if len(values) == 1:
        return np.full(target, values[0], dtype=seg.dtype)
    nearest = _resample_axes(seg, new_shape, (0, 0, 0), axes)
    best = winner = nearest_score = None
    for v in values:
        score = _resample_axes((seg == v).astype(np.float64), new_shape, orders, axes, np.float64)
        if best is None:
            best, winner, nearest_score = score, np.full(target, v, dtype=seg.dtype), np.zeros(target)
        else:
            better = score > best
            winner[better] = v
            np.maximum(best, score, out=best)
        np.copyto(nearest_score, score, where=nearest == v)
    tie_to_nearest = (nearest_score == best) & (best > 0)
    winner[tie_to_nearest] = nearest[tie_to_nearest]
    return winner


def present_labels(seg: np.ndarray) -> list[int]:
    """Sorted label values present in ``seg`` (linear time for small non-negative integers)."""
    if seg.size == 0:
        return [0]
    lo, hi = int(seg.min()), int(seg.max())
    if lo >= 0 and hi < 65536:
        return [int(v) for v in np.flatnonzero(np.bincount(seg.ravel().astype(np.intp, copy=False), minlength=hi + 1))]
    return [int(v) for v in np.unique(seg)]
