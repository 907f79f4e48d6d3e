"""Sliding-window prediction of a whole image with a patch-based model (nnU-Net / MONAI style).

The model is any callable mapping a batch of patches (B, C, *patch) to logits (B, num_outputs, *patch), so this
module knows nothing about networks, checkpoints or devices beyond the tensors it is handed.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

# Floor of the normalised Gaussian (max 1): far corners of a 3D patch fall to ~1e-11 otherwise, which underflows
# in half precision and would leave voxels covered only by patch corners with a zero total weight.
_MIN_IMPORTANCE = 1e-3
# Windows per forward pass with mirroring on CUDA (the flips of a batch together).
CUDA_FORWARD_BATCH = 16
# Windows stacked per forward pass when the caller does not say: about as many voxels as two windows of the cpu
# plan's 3D patch (24 x 64 x 64), 2 to 16 windows. A 3D window gets 2 (on the 2-core CPU, 16 3D windows in one
# pass took 2-3x as long as 8 passes of 2); a 2d slice window of 128 x 128 gets 12: a diagnostic-preset scan
# in 1.00 s against 1.75 s at 2, 80 x 80 gets 16: 0.09 s against 0.16 (the same labels; benchmarks.md,
# "Windows per forward pass").
WINDOW_PASS_VOXELS = 2 * 24 * 64 * 64


def windows_per_pass(patch_size: Sequence[int]) -> int:
    """How many sliding windows of ``patch_size`` one forward pass stacks by default (2-16, by their voxels)."""
    return int(min(16, max(2, WINDOW_PASS_VOXELS // max(1, math.prod(int(p) for p in patch_size)))))


def compute_window_starts(image_shape: Sequence[int], patch_size: Sequence[int], overlap: float) -> list[list[int]]:
    """Window start positions per spatial axis, as nnU-Net's ``compute_steps_for_sliding_window``.

    The target step is ``patch * (1 - overlap)``; the number of windows is the fewest that reach the end with
    that step, and the starts are spread evenly from 0 to ``size - patch`` (so the actual step is <= target);
    repeated starts (steps under half a voxel) are dropped.
    Every axis of ``image_shape`` must be at least as large as the patch (pad first).
    """
    image_shape = [int(s) for s in image_shape]
    patch_size = [int(p) for p in patch_size]
    if len(image_shape) != len(patch_size):
        raise ValueError(f"image shape {image_shape} and patch size {patch_size} differ in dimensionality")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if any(p < 1 for p in patch_size):
        raise ValueError(f"patch size must be positive, got {patch_size}")
    if any(s < p for s, p in zip(image_shape, patch_size)):
        raise ValueError(f"image shape {image_shape} is smaller than the patch {patch_size}; pad it first")
    starts = []
    for size, patch in zip(image_shape, patch_size):
        target_step = patch * (1.0 - overlap)
        n_steps = int(np.ceil((size - patch) / target_step)) + 1
        if n_steps > 1:
            actual_step = (size - patch) / (n_steps - 1)
            # Dedupe: with steps below half a voxel (tiny patches, high overlap) rounding repeats starts.
            starts.append(sorted({int(np.round(actual_step * i)) for i in range(n_steps)}))
        else:
            starts.append([0])
    return starts


@functools.lru_cache(maxsize=8)
def _cached_gaussian(
    patch_size: tuple[int, ...], sigma_scale: float, device: torch.device, dtype: torch.dtype
) -> Tensor:
    # Separable analytic Gaussian centred at (p - 1) / 2: exactly symmetric for even patch sizes too
    # (nnU-Net centres at p // 2, which is off by half a voxel for even sizes).
    gaussian = torch.ones((), dtype=torch.float32, device=device)
    for axis, p in enumerate(patch_size):
        x = torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2.0
        g = torch.exp(-0.5 * (x / (p * sigma_scale)) ** 2)
        shape = [1] * len(patch_size)
        shape[axis] = p
        gaussian = gaussian * g.reshape(shape)
    gaussian = gaussian / gaussian.max()
    return gaussian.clamp_min_(_MIN_IMPORTANCE).to(dtype)


def gaussian_importance_map(
    patch_size: Sequence[int], sigma_scale: float = 1.0 / 8, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Gaussian weights of shape ``patch_size`` (sigma = patch * sigma_scale per axis), max 1, floored at 1e-3.

    Down-weights patch borders, where a fully convolutional network sees the least context. Cached per
    (patch, sigma, device, dtype): the returned tensor is shared, so never modify it in place.
    """
    if sigma_scale <= 0:
        raise ValueError(f"sigma_scale must be positive, got {sigma_scale}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    return _cached_gaussian(tuple(int(p) for p in patch_size), float(sigma_scale), device, dtype)


def _pad_to_patch(image: Tensor, patch_size: Sequence[int]) -> tuple[Tensor, tuple[slice, ...]]:
    """Zero-pad spatial axes smaller than the patch (centred, as nnU-Net); return the padded image and the crop back."""
    spatial = image.shape[1:]
    if all(s >= p for s, p in zip(spatial, patch_size)):
        return image, tuple(slice(None) for _ in spatial)
    new_shape = [max(s, p) for s, p in zip(spatial, patch_size)]
    before = [(n - s) // 2 for n, s in zip(new_shape, spatial)]
    crop = tuple(slice(b, b + s) for b, s in zip(before, spatial))
    padded = image.new_zeros((image.shape[0], *new_shape))
    padded[(slice(None), *crop)] = image
    return padded, crop


def _mirror_combinations(mirror_axes: Sequence[int] | None, n_spatial: int) -> list[tuple[int, ...]]:
    """All subsets of the mirror axes (the empty one included), as tensor dims of a (B, C, *spatial) batch."""
    if not mirror_axes:
        return [()]
    axes = [int(a) for a in mirror_axes]
    if len(set(axes)) != len(axes) or any(not 0 <= a < n_spatial for a in axes):
        raise ValueError(f"mirror_axes must be distinct spatial axes in [0, {n_spatial}), got {list(mirror_axes)}")
    dims = [a + 2 for a in axes]
    return [c for r in range(len(dims) + 1) for c in itertools.combinations(dims, r)]


def _predict_batch(
    predictor: Callable[[Tensor], Tensor], batch: Tensor, flips: list[tuple[int, ...]], expected_shape: tuple[int, ...],
    dtype: torch.dtype, max_forward_batch: int,
) -> Tensor:
    """Predictor logits for a batch, averaged over the mirror combinations (flip input, predict, flip back).

    The flipped copies go through the predictor together, up to ``max_forward_batch`` windows per call (one
    large batch keeps the device busier than eight small ones)."""
    per_call = max(1, max_forward_batch // batch.shape[0])
    total = None
    for first in range(0, len(flips), per_call):
        group = flips[first:first + per_call]
        inputs = [torch.flip(batch, dims) if dims else batch for dims in group]
        out = predictor(inputs[0] if len(inputs) == 1 else torch.cat(inputs))
        if isinstance(out, (list, tuple)):  # deep supervision: full resolution comes first
            out = out[0]
        expected = (expected_shape[0] * len(group), *expected_shape[1:])
        if tuple(out.shape) != expected:
            raise ValueError(f"predictor returned shape {tuple(out.shape)}, expected {expected}")
        out = out.to(dtype)
        for i, dims in enumerate(group):
            part = out[i * batch.shape[0]:(i + 1) * batch.shape[0]]
            if dims:
                part = torch.flip(part, dims)
            # Out-of-place additions: the predictor's output may be memory it still owns (a view, a buffer).
            total = part if total is None else total + part
    return total / len(flips) if len(flips) > 1 else total


def sliding_window_predict(
    predictor: Callable[[Tensor], Tensor],
    image: Tensor,
    patch_size: Sequence[int],
    num_outputs: int,
    overlap: float = 0.5,
    batch_size: int | None = None,
    gaussian_sigma_scale: float = 1.0 / 8,
    mirror_axes: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    output_dtype: torch.dtype = torch.float32,
    progress: bool = False,
    max_forward_batch: int | None = None,
) -> Tensor:
    """Predict logits (num_outputs, *spatial) for a whole image (C, *spatial) of any spatial dimensionality.

    Windows (placed as nnU-Net) are predicted ``batch_size`` at a time (default ``windows_per_pass``),
    optionally averaged over every flip combination of ``mirror_axes`` (spatial axes, 0-based; the flipped copies
    of a batch share forward passes of up to ``max_forward_batch`` windows: by default 16 on CUDA, where a large
    batch keeps the device busy, and ``batch_size`` elsewhere: on the 2-core CPU 16 3D windows in one pass took
    2-3x as long as in 8 passes of 2, documentation/benchmarks.md), weighted by a Gaussian importance map and
    summed with the weights; the sum is divided by the total weight once at the end. Images smaller than the patch are
    zero-padded and the result cropped back. Everything lives on ``device`` (default: the image's) and nothing is
    synchronised with the host inside the loop. Runs under ``torch.no_grad()``; the predictor must already be
    on ``device`` and in eval mode. Accumulation uses at least float32, whatever ``output_dtype`` is.
    """
    image = torch.as_tensor(image)
    if image.ndim < 2:
        raise ValueError(f"image must be (C, *spatial), got shape {tuple(image.shape)}")
    patch = tuple(int(p) for p in patch_size)
    batch_size = windows_per_pass(patch) if batch_size is None else batch_size
    n_spatial = image.ndim - 1
    if len(patch) != n_spatial:
        raise ValueError(f"patch size {patch} does not match the spatial dims of image {tuple(image.shape)}")
    if num_outputs < 1 or batch_size < 1:
        raise ValueError(f"num_outputs and batch_size must be >= 1, got {num_outputs} and {batch_size}")
    if not output_dtype.is_floating_point:
        raise ValueError(f"output_dtype must be a floating point type, got {output_dtype}")
    flips = _mirror_combinations(mirror_axes, n_spatial)
    device = torch.device(device) if device is not None else image.device
    if max_forward_batch is None:
        max_forward_batch = CUDA_FORWARD_BATCH if device.type == "cuda" else batch_size
    acc_dtype = torch.promote_types(output_dtype, torch.float32)

    with torch.no_grad():
        image = image.to(device, non_blocking=True)
        image, crop = _pad_to_patch(image, patch)
        shape = tuple(image.shape[1:])
        starts = compute_window_starts(shape, patch, overlap)
        # Window slices are plain Python ints: no device values are read back while looping.
        windows = [tuple(slice(s, s + p) for s, p in zip(corner, patch)) for corner in itertools.product(*starts)]
        gaussian = gaussian_importance_map(patch, gaussian_sigma_scale, device, acc_dtype)
        logit_sum = torch.zeros((num_outputs, *shape), dtype=acc_dtype, device=device)
        weight_sum = torch.zeros(shape, dtype=acc_dtype, device=device)
        n_batches = math.ceil(len(windows) / batch_size)
        weighted = None
        for b in tqdm(range(n_batches), disable=not progress, desc="sliding window"):
            batch_windows = windows[b * batch_size:(b + 1) * batch_size]
            batch = torch.stack([image[(slice(None), *w)] for w in batch_windows])
            expected = (len(batch_windows), num_outputs, *patch)
            logits = _predict_batch(predictor, batch, flips, expected, acc_dtype, max_forward_batch)
            # the weighted logits into one buffer for the whole run (a new batch-sized tensor each time costs the
            # allocator's page faults); the same products and sums as (logits * gaussian) added window by window
            if weighted is None or weighted.shape != logits.shape:
                weighted = torch.empty_like(logits)
            torch.mul(logits, gaussian, out=weighted)
            for window_weighted, w in zip(weighted, batch_windows):
                logit_sum[(slice(None), *w)] += window_weighted
                weight_sum[w] += gaussian
        # every voxel is covered by a window, and the Gaussian is floored above 0; the quotient is computed for the
        # unpadded region only, straight into the (contiguous) result
        region = (slice(None), *crop)
        return torch.div(logit_sum[region], weight_sum[crop]).to(output_dtype).contiguous()
