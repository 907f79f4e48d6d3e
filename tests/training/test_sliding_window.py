"""Sliding-window inference: window placement, Gaussian blending, padding, batching and mirroring."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from orthodiff_auto.training.sliding_window import (
    compute_window_starts,
    gaussian_importance_map,
    sliding_window_predict,
    windows_per_pass,
)


def identity_predictor(num_outputs):
    """Returns channel 0 of each patch repeated num_outputs times (as a view, to check nothing writes into it)."""
    return lambda x: x[:, :1].expand(-1, num_outputs, *x.shape[2:])


class CountingPredictor:
    """Wraps a predictor and records the batch size of each call."""

    def __init__(self, fn):
        self.fn, self.batch_sizes = fn, []

    def __call__(self, x):
        self.batch_sizes.append(x.shape[0])
        return self.fn(x)


# ---------------------------------------------------------------- window starts

@pytest.mark.parametrize(
    "size, patch, overlap, expected",
    [
        (4, 4, 0.5, [0]),
        (10, 4, 0.5, [0, 2, 4, 6]),  # target step 2, 6/2 + 1 = 4 windows
        (11, 4, 0.5, [0, 2, 4, 5, 7]),  # ceil(7/2)+1 = 5 windows, actual step 1.75, rounded
        (8, 4, 0.0, [0, 4]),
        (9, 4, 0.0, [0, 2, 5]),  # ceil(5/4)+1 = 3 windows, step 2.5 (round half to even)
        (20, 8, 0.75, [0, 2, 4, 6, 8, 10, 12]),
    ],
)
def test_window_starts_match_hand_computed(size, patch, overlap, expected):
    assert compute_window_starts([size], [patch], overlap) == [expected]


def test_window_starts_are_per_axis():
    assert compute_window_starts((10, 4, 9), (4, 4, 4), 0.5) == [[0, 2, 4, 6], [0], [0, 2, 3, 5]]  # 9: step 5/3


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.6, 0.9])
def test_window_starts_cover_image_with_bounded_steps(overlap):
    rng = np.random.default_rng(0)
    for _ in range(30):
        patch = int(rng.integers(1, 20))
        size = patch + int(rng.integers(0, 60))
        (starts,) = compute_window_starts([size], [patch], overlap)
        assert starts[0] == 0 and starts[-1] == size - patch
        steps = np.diff(starts)
        assert np.all(steps >= 1) or len(starts) == 1
        assert np.all(steps <= math.ceil(patch * (1 - overlap)))
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + patch] = True
        assert covered.all()


@pytest.mark.parametrize("args", [((3,), (4,), 0.5), ((10,), (4,), 1.0), ((10,), (4,), -0.1), ((10, 10), (4,), 0.5)])
def test_window_starts_reject_bad_arguments(args):
    with pytest.raises(ValueError):
        compute_window_starts(*args)


# ---------------------------------------------------------------- Gaussian

@pytest.mark.parametrize("patch", [(5, 7, 9), (4, 6, 8), (6, 5)])
def test_gaussian_is_symmetric_peaked_and_positive(patch):
    g = gaussian_importance_map(patch, 1 / 8, "cpu", torch.float32)
    assert tuple(g.shape) == patch and g.dtype == torch.float32
    for axis in range(len(patch)):
        torch.testing.assert_close(g, torch.flip(g, (axis,)))
    centre = tuple(slice((p - 1) // 2, p // 2 + 1) for p in patch)  # 1 voxel for odd sizes, 2 for even ones
    assert torch.all(g[centre] == g.max()) and g.max() == 1.0
    assert g.min() > 0
    # Weights fall off away from the centre along each axis (until the floor).
    line = g[tuple(p // 2 for p in patch[:-1])]
    half = line[patch[-1] // 2:]
    assert torch.all(half[1:] <= half[:-1])


def test_gaussian_is_cached_and_floored():
    a = gaussian_importance_map((16, 16, 16), 1 / 8, "cpu", torch.float32)
    assert gaussian_importance_map([16, 16, 16], 0.125, torch.device("cpu"), torch.float32) is a
    assert gaussian_importance_map((16, 16, 16), 1 / 4, "cpu", torch.float32) is not a
    assert a.min().item() == pytest.approx(1e-3)  # corners, far below the floor before clamping
    assert gaussian_importance_map((16, 16, 16), 1 / 8, "cpu", torch.float16).min() > 0


# ---------------------------------------------------------------- identity reconstruction

@pytest.mark.parametrize(
    "shape, patch, overlap",
    [
        ((12, 8, 8), (4, 4, 4), 0.0),  # divisible, no overlap: one window per voxel
        ((12, 8, 8), (4, 4, 4), 0.5),
        ((11, 10, 9), (4, 6, 4), 0.5),  # non-divisible shape
        ((3, 5, 2), (4, 4, 4), 0.5),  # smaller than the patch on every axis: padding
        ((3, 9, 7), (4, 4, 4), 0.5),  # smaller on one axis only
        ((7, 20), (4, 6), 0.5),  # 2D
    ],
)
def test_identity_predictor_returns_the_image(shape, patch, overlap):
    image = torch.rand((1, *shape), generator=torch.Generator().manual_seed(0)) + 0.5
    out = sliding_window_predict(identity_predictor(3), image, patch, num_outputs=3, overlap=overlap)
    assert out.shape == (3, *shape) and out.dtype == torch.float32 and out.device == image.device
    torch.testing.assert_close(out, image.expand(3, *shape), rtol=1e-6, atol=1e-6)


def test_small_image_is_zero_padded_around_the_centre():
    # As nnU-Net: the padding is split evenly before and after (extra voxel after), so a network sees the
    # image in the middle of the patch.
    seen = []
    image = torch.full((1, 2, 5), 7.0)
    out = sliding_window_predict(lambda x: seen.append(x.clone()) or x, image, (6, 8), 1)
    torch.testing.assert_close(out, image)
    expected = torch.zeros((1, 1, 6, 8))
    expected[..., 2:4, 1:6] = 7.0
    torch.testing.assert_close(seen[0], expected)


def test_blending_weights_windows_by_gaussian():
    # 1D, length 6, patch 4, overlap 0.5 -> windows at 0 and 2. Each window predicts its first input value
    # everywhere, so the windows predict 0 and 2; voxels 2 and 3 are Gaussian-weighted blends of the two.
    image = torch.arange(6, dtype=torch.float32)[None]
    out = sliding_window_predict(lambda x: x[..., :1].expand_as(x).clone(), image, (4,), 1, overlap=0.5)[0]
    # sigma = 4/8 = 0.5, centre 1.5, normalised to max 1: g = [e^-4, 1, 1, e^-4]
    edge = math.exp(-4.0)
    expected = [0, 0, 2 * edge / (1 + edge), 2 * 1 / (edge + 1), 2, 2]
    torch.testing.assert_close(out, torch.tensor(expected), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- batching, deep supervision, dtypes

def _conv_predictor(in_ch, out_ch, ndim, seed=0, symmetric=False):
    conv = (torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d)(in_ch, out_ch, 3, padding=1)
    with torch.no_grad():
        w = torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(seed)) - 0.5
        if symmetric:  # a kernel equal to all of its flips makes the network flip-equivariant
            for d in range(2, w.ndim):
                w = w + torch.flip(w, (d,))
        conv.weight.copy_(w)
    return conv


@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_batch_size_does_not_change_the_result(batch_size):
    image = torch.rand((2, 10, 9, 11), generator=torch.Generator().manual_seed(1))
    net = _conv_predictor(2, 3, 3)
    reference = sliding_window_predict(net, image, (4, 4, 4), 3, overlap=0.5, batch_size=1)
    counted = CountingPredictor(net)
    out = sliding_window_predict(counted, image, (4, 4, 4), 3, overlap=0.5, batch_size=batch_size)
    n_windows = 4 * 4 * 5  # starts per axis: 10 -> 4, 9 -> 4, 11 -> 5
    assert sum(counted.batch_sizes) == n_windows
    full, rest = divmod(n_windows, batch_size)
    assert counted.batch_sizes == [batch_size] * full + ([rest] if rest else [])
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)
    assert not out.requires_grad


@pytest.mark.parametrize("shape", [(10, 9, 11), (3, 9, 11)])  # the second is padded along its first axis
def test_result_is_exactly_the_gaussian_weighted_mean_of_the_windows(shape):
    """Bit for bit the plain computation (each window's logits times the Gaussian added to a sum, the Gaussians to a
    weight, the sum divided by the weight, the padding cut off), with batches of 3 (the last one smaller)."""
    image = torch.rand((2, *shape), generator=torch.Generator().manual_seed(3))
    net, patch = _conv_predictor(2, 3, 3, seed=4), (4, 4, 4)
    out = sliding_window_predict(net, image, patch, 3, overlap=0.5, batch_size=3)
    padded_shape = [max(s, p) for s, p in zip(shape, patch)]
    before = [(n - s) // 2 for n, s in zip(padded_shape, shape)]
    padded = torch.zeros((2, *padded_shape))
    padded[(slice(None), *(slice(b, b + s) for b, s in zip(before, shape)))] = image
    gaussian = gaussian_importance_map(patch)
    total, weight = torch.zeros((3, *padded_shape)), torch.zeros(padded_shape)
    windows = [tuple(slice(c, c + p) for c, p in zip(corner, patch))
               for corner in itertools.product(*compute_window_starts(padded_shape, patch, 0.5))]
    with torch.no_grad():  # the network sees the same batches (a convolution's rounding may depend on the batch)
        logits = torch.cat([net(torch.stack([padded[(slice(None), *w)] for w in windows[i:i + 3]]))
                            for i in range(0, len(windows), 3)])
    for window_logits, w in zip(logits, windows):
        total[(slice(None), *w)] += window_logits * gaussian
        weight[w] += gaussian
    expected = (total / weight)[(slice(None), *(slice(b, b + s) for b, s in zip(before, shape)))]
    assert out.is_contiguous() and out.shape == (3, *shape)
    assert torch.equal(out, expected)


def test_deep_supervision_uses_first_output():
    image = torch.rand((1, 9, 9))
    main = sliding_window_predict(lambda x: [x * 2, x[..., ::2, ::2]], image, (4, 4), 1)
    torch.testing.assert_close(main, image * 2)


def test_output_dtype_and_device():
    image = torch.rand((1, 6, 6), dtype=torch.float64)
    out = sliding_window_predict(identity_predictor(2), image, (4, 4), 2, device="cpu", output_dtype=torch.float16)
    assert out.dtype == torch.float16 and out.device.type == "cpu"
    torch.testing.assert_close(out, image.expand(2, 6, 6).half())


@pytest.mark.parametrize("image_device, device", [("cpu", "meta"), ("meta", None)])
def test_runs_entirely_on_the_target_device(image_device, device):
    # Meta tensors hold no data: reading a value back (.item(), .cpu(), if tensor) raises, and so does mixing
    # them with CPU tensors. Passing here shows the loop never syncs with the host and creates all its tensors
    # on the target device (the image's by default), padding and mirroring included.
    image = torch.rand((1, 9, 10, 7)).to(image_device)
    out = sliding_window_predict(identity_predictor(2), image, (4, 4, 12), 2, device=device, mirror_axes=(0, 2))
    assert out.device.type == "meta" and out.shape == (2, 9, 10, 7)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patch_size=(4, 4, 4)),  # wrong dimensionality
        dict(num_outputs=2),  # predictor returns 1 channel
        dict(mirror_axes=(2,)),  # no such spatial axis
        dict(mirror_axes=(0, 0)),
        dict(overlap=1.0),
        dict(batch_size=0),
        dict(output_dtype=torch.int64),
    ],
)
def test_bad_arguments_raise(kwargs):
    args = dict(predictor=identity_predictor(1), image=torch.rand((1, 6, 6)), patch_size=(4, 4), num_outputs=1)
    args.update(kwargs)
    with pytest.raises(ValueError):
        sliding_window_predict(**args)


# ---------------------------------------------------------------- mirroring

def test_mirroring_hand_computed_1d():
    # predictor = cumulative sum (not flip-equivariant). x = [1, 2, 3]:
    #   plain: [1, 3, 6]; flipped: cumsum([3, 2, 1]) = [3, 5, 6], flipped back [6, 5, 3]; mean [3.5, 4, 4.5]
    image = torch.tensor([[1.0, 2.0, 3.0]])
    out = sliding_window_predict(lambda x: torch.cumsum(x, -1), image, (3,), 1, mirror_axes=(0,))
    torch.testing.assert_close(out, torch.tensor([[3.5, 4.0, 4.5]]))


@pytest.mark.parametrize("mirror_axes", [(0,), (1,), (0, 1)])
def test_mirroring_averages_flipped_predictions(mirror_axes):
    image = torch.rand((1, 4, 5), generator=torch.Generator().manual_seed(2))
    ramp = torch.linspace(0.0, 1.0, 20).reshape(1, 1, 4, 5)

    def predictor(x):  # position dependent and asymmetric
        return torch.cat([torch.cumsum(x, -1) + ramp, torch.cumsum(x, -2) * ramp], 1)

    combos = [()] + [(a,) for a in mirror_axes] + ([tuple(mirror_axes)] if len(mirror_axes) == 2 else [])
    expected = torch.stack(
        [torch.flip(predictor(torch.flip(image[None], [d + 2 for d in c])), [d + 2 for d in c])[0] for c in combos]
    ).mean(0)
    # The patch equals the image: one window, so the Gaussian weights cancel.
    out = sliding_window_predict(predictor, image, (4, 5), 2, mirror_axes=mirror_axes)
    torch.testing.assert_close(out, expected)
    plain = sliding_window_predict(predictor, image, (4, 5), 2)
    assert not torch.allclose(out, plain)


def test_mirroring_is_a_no_op_for_flip_equivariant_predictor():
    image = torch.rand((2, 9, 8, 10), generator=torch.Generator().manual_seed(3))
    net = _conv_predictor(2, 2, 3, symmetric=True)
    plain = sliding_window_predict(net, image, (4, 4, 4), 2, overlap=0.5, batch_size=4)
    counted = CountingPredictor(net)
    mirrored = sliding_window_predict(counted, image, (4, 4, 4), 2, overlap=0.5, batch_size=4, mirror_axes=(0, 1, 2))
    torch.testing.assert_close(mirrored, plain, rtol=1e-5, atol=1e-5)
    n_windows = 4 * 3 * 4
    assert sum(counted.batch_sizes) == 8 * n_windows  # 2^3 flip combinations per window


@pytest.mark.parametrize("max_forward_batch, calls_per_batch", [(16, 1), (4, 4), (1, 8)])
def test_flips_share_forward_passes_up_to_the_limit(max_forward_batch, calls_per_batch):
    # 2 windows (batch_size 2) x 8 flips: one call of 16 windows at the default limit, fewer windows per call below
    image = torch.rand((1, 4, 4, 6), generator=torch.Generator().manual_seed(4))
    net = _conv_predictor(1, 2, 3)
    reference = sliding_window_predict(net, image, (4, 4, 4), 2, batch_size=2, mirror_axes=(0, 1, 2),
                                       max_forward_batch=1)
    counted = CountingPredictor(net)
    out = sliding_window_predict(counted, image, (4, 4, 4), 2, batch_size=2, mirror_axes=(0, 1, 2),
                                 max_forward_batch=max_forward_batch)
    assert counted.batch_sizes == [16 // calls_per_batch] * calls_per_batch
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)


def test_on_the_cpu_flips_go_batch_size_windows_at_a_time_by_default():
    image = torch.rand((1, 4, 4, 6), generator=torch.Generator().manual_seed(4))
    counted = CountingPredictor(_conv_predictor(1, 2, 3))
    sliding_window_predict(counted, image, (4, 4, 4), 2, batch_size=2, mirror_axes=(0, 1, 2))
    assert counted.batch_sizes == [2] * 8


@pytest.mark.parametrize("patch, expected", [
    ((24, 64, 64), 2),      # a 3D window of the cpu plan: two per pass, as before
    ((128, 128, 128), 2),   # larger 3D windows: never fewer than two
    ((1, 128, 128), 12),    # a 2d slice window: as many voxels as two 3D windows
    ((1, 80, 80), 16),      # small slices: at most 16
])
def test_windows_per_pass_by_the_patch_voxels(patch, expected):
    assert windows_per_pass(patch) == expected


def test_by_default_slice_windows_are_stacked_by_the_rule_with_the_same_result():
    image = torch.rand((1, 5, 40, 40), generator=torch.Generator().manual_seed(5))
    net = _conv_predictor(1, 3, 3)
    counted = CountingPredictor(net)
    out = sliding_window_predict(counted, image, (1, 32, 32), 3, overlap=0.5)
    n_windows = 5 * 2 * 2
    assert counted.batch_sizes == [16, n_windows - 16]  # (1, 32, 32): 196,608 // 1,024 -> capped at 16
    reference = sliding_window_predict(net, image, (1, 32, 32), 3, overlap=0.5, batch_size=2)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)
