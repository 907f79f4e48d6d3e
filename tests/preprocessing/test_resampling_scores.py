"""Class scores back to the original grid: the argmax shortcut (CPU) and the torch resampler (GPU path, run here
on the CPU) against the full numpy resampling."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from orthodiff_auto.plans.schema import ResamplingPlan
from orthodiff_auto.preprocessing.resampling import resample_argmax, resample_image
from orthodiff_auto.preprocessing.resampling_torch import resample_tensor, supports

PLAN = ResamplingPlan()
# (source spacing, target spacing, source shape, target shape): near-identity, anisotropic down (nearest along the
# coarse axis), anisotropic up, shapes changing in opposite directions, one axis unchanged
CASES = [((5.5, 2.0, 2.0), (6.0, 2.06, 2.06), (23, 30, 31), (21, 29, 30)),
         ((1.0, 0.5, 0.5), (4.0, 1.0, 1.0), (24, 20, 16), (6, 10, 8)),
         ((4.0, 1.0, 1.0), (1.0, 0.5, 0.5), (6, 10, 8), (24, 20, 16)),
         ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (7, 9, 11), (13, 5, 11))]


def smooth_scores(shape, classes=5, seed=0):
    """Scores whose argmax forms blobs (boundaries like a segmentation's, not noise)."""
    rng = np.random.default_rng(seed)
    return (gaussian_filter(rng.normal(size=(classes, *shape)), (0, 1.5, 1.5, 1.5)) * 20).astype(np.float32)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("src, dst, shape, new", CASES)
def test_argmax_shortcut_equals_the_argmax_of_the_full_resampling(src, dst, shape, new, order):
    scores = smooth_scores(shape)
    full = np.argmax(resample_image(scores, new, src, dst, PLAN, order=order), axis=0)
    fast = resample_argmax(scores, new, src, dst, PLAN, order)
    assert fast.dtype == np.uint8 and fast.shape == tuple(new)
    np.testing.assert_array_equal(fast, full)


def test_argmax_shortcut_refuses_cubic():
    with pytest.raises(ValueError, match="orders 0 and 1"):
        resample_argmax(smooth_scores((4, 6, 6)), (8, 12, 12), (1, 1, 1), (0.5, 0.5, 0.5), PLAN, 3)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("src, dst, shape, new", CASES)
def test_torch_resampling_equals_the_numpy_resampling(src, dst, shape, new, order):
    scores = smooth_scores(shape)
    expected = resample_image(scores, new, src, dst, PLAN, order=order)
    out = resample_tensor(torch.from_numpy(scores), new, src, dst, PLAN, order)
    assert tuple(out.shape) == (scores.shape[0], *new)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_torch_resampling_takes_orders_0_and_1_only():
    assert supports(PLAN, 1) and supports(PLAN, 0) and not supports(PLAN, 3)
    assert not supports(ResamplingPlan(through_plane_order=3), 1)
    with pytest.raises(ValueError, match="orders 0 and 1"):
        resample_tensor(torch.zeros(2, 4, 6, 6), (8, 12, 12), (1, 1, 1), (0.5, 0.5, 0.5), PLAN, 3)
