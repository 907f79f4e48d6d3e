"""The resampling follows nnU-Net v2's rule and numerics (default_resampling.resample_data_or_seg): checked against
scipy.ndimage, which skimage's ``resize(mode='edge', anti_aliasing=False)`` calls, on constructed arrays."""

import numpy as np
import pytest
from scipy import ndimage

from orthodiff_auto.plans.schema import ResamplingPlan
from orthodiff_auto.preprocessing.resampling import (
    compute_new_shape,
    resample_image,
    resample_labels,
    separate_axis,
)

PLAN = ResamplingPlan()
NO_SEPARATE = ResamplingPlan(separate_through_plane=False)


def skimage_resize(a: np.ndarray, shape, order: int) -> np.ndarray:
    """skimage.transform.resize(a, shape, order, mode='edge', anti_aliasing=False): scipy's zoom on the pixel grid,
    then clipped to the input's range."""
    out = ndimage.zoom(a.astype(np.float64), np.divide(shape, a.shape), order=order, mode="nearest", grid_mode=True)
    return np.clip(out, a.min(), a.max()) if order > 0 else out


@pytest.mark.parametrize("current, new, axis", [
    ((3.0, 0.5, 0.5), (3.0, 0.4, 0.4), 0),
    ((0.5, 3.0, 0.5), (0.5, 2.0, 0.5), 1),
    ((1.0, 1.0, 1.0), (1.2, 1.2, 1.2), None),
    ((1.0, 1.0, 1.0), (4.0, 1.0, 1.0), 0),  # the source is isotropic: the target decides
    ((1.0, 1.0, 3.0), (1.0, 1.0, 1.0), None),  # ratio 3 is not above the threshold, nor is the target's
    ((0.24, 1.25, 1.25), (3.0, 0.5, 0.5), None),  # the source decides, and two axes share its largest spacing
    ((3.0, 2.9999999, 0.5), (3.0, 2.9999999, 0.5), 0),  # nnU-Net compares with ==: one axis is the largest
])
def test_separate_axis_is_nnunets_rule(current, new, axis):
    assert separate_axis(current, new, PLAN) == axis
    assert separate_axis(current, new, NO_SEPARATE) is None


def test_new_shape_rounds_spacing_ratio_times_shape():
    assert compute_new_shape((4, 40, 40), (3, 1, 1), (3, 2 / 3, 2 / 3)) == (4, 60, 60)
    # nnU-Net computes round(old_spacing / new_spacing * shape): 0.7 / 0.6 * 3 is 3.5 (-> 4), 3 * 0.7 / 0.6 is 3.4999...
    assert compute_new_shape((3, 1, 1), (0.7, 1, 1), (0.6, 1, 1)) == (4, 1, 1)


@pytest.mark.parametrize("new_shape", [(9, 31, 12), (5, 40, 40), (7, 10, 19)])
def test_isotropic_order_3_is_skimage_bspline_with_clip(new_shape):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 23, 19)).astype(np.float32)
    out = resample_image(a, new_shape, (1, 1, 1), (1, 1, 1), PLAN)
    expected = skimage_resize(a, new_shape, 3)
    assert out.dtype == np.float32 and np.allclose(out, expected, rtol=0, atol=1e-5)
    assert out.max() <= a.max() and out.min() >= a.min()


def test_anisotropic_in_plane_per_slice_then_nearest_along_z():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2, 6, 10, 11)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)[None, :, None, None]
    new_shape = (9, 13, 7)
    out = resample_image(a, new_shape, (3.0, 0.5, 0.5), (2.0, 0.4, 0.8), PLAN)
    # map_coordinates(order=0, mode='nearest') along z: the slice index each output slice takes
    z_index = ndimage.zoom(np.arange(6, dtype=float), 9 / 6, order=0, mode="nearest", grid_mode=True).astype(int)
    assert sorted(set(z_index)) == list(range(6))  # every slice is used, and never blended
    for c in range(2):
        for k, z in enumerate(z_index):
            expected = skimage_resize(a[c, z], new_shape[1:], 3)  # clipped to that slice's own range
            assert np.allclose(out[c, k], expected, rtol=0, atol=1e-5)


def test_labels_are_the_argmax_of_linear_masks_with_ties_to_the_nearest_label():
    # 4 -> 2 voxels: each output samples exactly between two inputs, so every voxel is a tie; the nearest source
    # voxel (index 1 and 3) settles it.
    row = np.array([0, 1, 2, 3], np.uint8).reshape(1, 1, 4)
    assert resample_labels(row, (1, 1, 2), (1, 1, 1), (1, 1, 2), PLAN).ravel().tolist() == [1, 3]
    # Three labels meet: 1 and 2 score 0.375, 3 (the nearest voxel's label) 0.25: the smaller tied label wins.
    block = np.array([3, 1, 1, 1, 2, 2, 2, 3], np.uint8).reshape(2, 2, 2)
    assert resample_labels(block, (1, 1, 1), (1, 1, 1), (2, 2, 2), PLAN).item() == 1
    # Upsampling 4 -> 8: the masks blend linearly, no tie: [0,0,1,1] -> the boundary stays in the middle.
    step = np.array([0, 0, 5, 5], np.uint8).reshape(1, 1, 4)
    assert resample_labels(step, (1, 1, 8), (1, 1, 1), (1, 1, 0.5), PLAN).ravel().tolist() == [0] * 4 + [5] * 4


def test_anisotropic_labels_take_slices_by_nearest_neighbour():
    rng = np.random.default_rng(2)
    lab = rng.integers(0, 3, size=(5, 8, 8)).astype(np.uint8)
    out = resample_labels(lab, (8, 12, 12), (3.0, 0.5, 0.5), (1.875, 1 / 3, 1 / 3), PLAN)
    z_index = ndimage.zoom(np.arange(5, dtype=float), 8 / 5, order=0, mode="nearest", grid_mode=True).astype(int)
    for k, z in enumerate(z_index):
        assert np.array_equal(out[k], resample_labels(lab[z:z + 1], (1, 12, 12), (3.0, 0.5, 0.5),
                                                      (3.0, 1 / 3, 1 / 3), PLAN)[0])


def test_only_the_separate_axis_changing_leaves_the_input_unwritten():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(1, 4, 6, 6)).astype(np.float32)
    a.flags.writeable = False
    out = resample_image(a, (6, 6, 6), (3.0, 0.5, 0.5), (2.0, 0.5, 0.5), PLAN)
    z_index = ndimage.zoom(np.arange(4, dtype=float), 6 / 4, order=0, mode="nearest", grid_mode=True).astype(int)
    assert np.array_equal(out, a[:, z_index])
    lab = rng.integers(0, 4, size=(4, 6, 6)).astype(np.uint8)
    assert np.array_equal(resample_labels(lab, (6, 6, 6), (3.0, 0.5, 0.5), (2.0, 0.5, 0.5), PLAN), lab[z_index])
