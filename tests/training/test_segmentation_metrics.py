"""Segmentation metrics against hand-computed values and a brute-force surface-distance reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from orthodiff_auto.training.segmentation_metrics import (
    aggregate,
    dice_per_class,
    evaluate_segmentation,
    hausdorff95,
)

NAN = float("nan")


def box(shape, *ranges):
    """Boolean mask with True on the given (start, stop) range per axis."""
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in ranges)] = True
    return mask


def brute_force_hd95(a, b, spacing):
    """Reference: surface = voxels with a face neighbour outside (or off the array); all-pairs distances; the
    larger of the two directed 95th percentiles (MONAI's definition)."""

    def surface_points(mask):
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask)
        for axis in range(mask.ndim):
            for shift in (-1, 1):
                inner &= np.roll(padded, shift, axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)

    d = cdist(surface_points(a), surface_points(b))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


# ---------------------------------------------------------------- Dice

@pytest.mark.parametrize(
    "a, b, expected",
    [
        (((0, 4), (0, 4), (0, 4)), ((2, 6), (0, 4), (0, 4)), 2 * 32 / (64 + 64)),  # half overlap
        (((0, 4), (0, 4), (0, 4)), ((1, 4), (1, 4), (1, 4)), 2 * 27 / (64 + 27)),  # nested
        (((0, 2), (0, 2), (0, 2)), ((3, 5), (3, 5), (3, 5)), 0.0),  # disjoint
        (((1, 5), (2, 4), (0, 6)), ((1, 5), (2, 4), (0, 6)), 1.0),  # identical
    ],
)
def test_dice_of_cubes(a, b, expected):
    shape = (8, 8, 8)
    pred, ref = box(shape, *a).astype(np.uint8) * 3, box(shape, *b).astype(np.uint8) * 3
    assert dice_per_class(pred, ref, [3])[3] == pytest.approx(expected)


def test_dice_multi_class_and_absent_conventions():
    pred = np.array([[1, 1, 2, 0], [2, 2, 0, 0]])
    ref = np.array([[1, 2, 2, 0], [2, 4, 0, 0]])
    d = dice_per_class(pred, ref, [0, 1, 2, 3, 4])
    assert d[0] == pytest.approx(2 * 3 / (3 + 3))
    assert d[1] == pytest.approx(2 * 1 / (2 + 1))
    assert d[2] == pytest.approx(2 * 2 / (3 + 3))
    assert math.isnan(d[3])  # absent from both: NaN, not 0 or 1
    assert d[4] == 0.0  # in the reference only


def test_dice_ignore_mask_excludes_voxels():
    ref = box((6, 6), (0, 3), (0, 3)).astype(int)
    pred = box((6, 6), (0, 3), (0, 5)).astype(int)  # 6 false-positive voxels in columns 3-4
    assert dice_per_class(pred, ref, [1])[1] == pytest.approx(18 / 24)
    ignore = box((6, 6), (0, 6), (3, 6))
    assert dice_per_class(pred, ref, [1], ignore_mask=ignore)[1] == 1.0
    # ignoring everything leaves nothing to score
    assert math.isnan(dice_per_class(pred, ref, [1], ignore_mask=np.ones((6, 6), bool))[1])


# ---------------------------------------------------------------- HD95

def test_hd95_identical_masks_is_zero():
    m = box((10, 12, 9), (2, 7), (3, 9), (1, 5))
    assert hausdorff95(m, m, (3.0, 0.5, 0.7)) == 0.0


@pytest.mark.parametrize(
    "axis, k, spacing",
    [(0, 1, (3.0, 0.5, 0.5)), (0, 2, (3.0, 0.5, 0.5)), (1, 3, (3.0, 0.5, 0.5)), (2, 2, (1.0, 1.0, 0.8))],
)
def test_hd95_plate_shifted_along_its_normal(axis, k, spacing):
    # A one-voxel-thick plate is all surface; each voxel's nearest surface voxel in the shifted plate lies
    # straight along the normal, so every distance, and hence the 95th percentile, is k * spacing[axis].
    ranges = [(2, 8), (2, 8), (2, 8)]
    ranges[axis] = (3, 4)
    a = box((12, 12, 12), *ranges)
    b = np.roll(a, k, axis)
    assert hausdorff95(a, b, spacing) == pytest.approx(k * spacing[axis])
    assert hausdorff95(b, a, spacing) == pytest.approx(k * spacing[axis])


def test_hd95_single_outlier_voxel_is_beyond_the_95th_percentile():
    # Two identical big plates (all distances 0) plus one stray predicted voxel far away: the 95th percentile
    # ignores a lone outlier, unlike the maximum (Hausdorff) distance.
    a = box((20, 20, 12), (0, 20), (0, 20), (1, 2))
    b = a.copy()
    b[10, 10, 11] = True  # 10 voxels above the plate: 1 distance of 10 among 801 zeros
    assert hausdorff95(a, b, (1.0, 1.0, 1.0)) == 0.0
    assert brute_force_hd95(a, b, (1.0, 1.0, 1.0)) == 0.0


def test_hd95_is_the_larger_directed_percentile_not_the_pooled_one():
    # Thin lines are all surface. Reference: row 0, 20 voxels. Prediction: the same row plus 2 stray voxels
    # 10 rows below its ends, 10 * 2 mm = 20 mm from the reference. Prediction -> reference: 20 zeros and two
    # 20s; numpy's 95th percentile of 22 values sits at rank 0.95 * 21 = 19.95, between a 0 and a 20: 19 mm.
    # Reference -> prediction: all 0. MONAI / surface-distance take the larger direction: 19 mm. Pooling both
    # directions (42 values, two of them 20, as medpy does) would give rank 38.95 among zeros: 0.
    ref = np.zeros((11, 20), bool)
    ref[0] = True
    pred = ref.copy()
    pred[10, 0] = pred[10, 19] = True
    spacing = (2.0, 0.5)
    assert hausdorff95(pred, ref, spacing) == pytest.approx(19.0)
    assert hausdorff95(ref, pred, spacing) == pytest.approx(19.0)  # symmetric
    d = np.concatenate([np.zeros(40), [20.0, 20.0]])
    assert np.percentile(d, 95) == 0.0  # the pooled definition, which this no longer is


@pytest.mark.parametrize("seed", range(4))
def test_hd95_matches_brute_force_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    shape = (14, 16, 12)
    spacing = tuple(rng.uniform(0.4, 3.0, 3))
    a = box(shape, (2, 9), (3, 12), (2, 8)) & (rng.random(shape) > 0.15)
    b = box(shape, (4, 12), (1, 10), (0, 10)) & (rng.random(shape) > 0.15)
    assert hausdorff95(a, b, spacing) == pytest.approx(brute_force_hd95(a, b, spacing))


def test_hd95_crop_matches_full_image_in_a_corner_and_far_inside():
    spacing = (2.0, 0.5, 1.0)
    for offset in (0, 30):  # touching the image border, then deep inside a large image
        a = np.zeros((40, 40, 40), bool)
        b = np.zeros_like(a)
        a[offset:offset + 5, offset:offset + 6, offset:offset + 4] = True
        b[offset:offset + 4, offset + 2:offset + 9, offset:offset + 5] = True
        assert hausdorff95(a, b, spacing) == pytest.approx(brute_force_hd95(a, b, spacing))


def test_hd95_2d():
    a = box((10, 10), (2, 5), (2, 5))
    b = np.roll(a, 4, 1)
    assert hausdorff95(a, b, (1.0, 2.0)) == pytest.approx(brute_force_hd95(a, b, (1.0, 2.0)))


def test_hd95_empty_conventions():
    empty, full = np.zeros((5, 5, 5), bool), box((5, 5, 5), (1, 3), (1, 3), (1, 3))
    assert math.isnan(hausdorff95(empty, empty, (1, 1, 1)))
    assert hausdorff95(full, empty, (1, 1, 1)) == math.inf
    assert hausdorff95(empty, full, (1, 1, 1)) == math.inf


def test_hd95_rejects_bad_spacing_and_shapes():
    with pytest.raises(ValueError):
        hausdorff95(np.ones((3, 3), bool), np.ones((3, 3), bool), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        hausdorff95(np.ones((3, 3), bool), np.ones((3, 4), bool), (1.0, 1.0))


# ---------------------------------------------------------------- evaluate / aggregate

def test_evaluate_segmentation_per_structure():
    shape = (10, 10, 10)
    ref = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    ref[box(shape, (0, 4), (0, 4), (0, 4))] = 1  # 64 voxels
    pred[box(shape, (2, 6), (0, 4), (0, 4))] = 1  # 64 voxels, 32 shared
    ref[box(shape, (6, 8), (6, 8), (6, 10))] = 2  # 16 voxels, predicted exactly
    pred[box(shape, (6, 8), (6, 8), (6, 10))] = 2
    ref[box(shape, (0, 10), (8, 10), (0, 2))] = 9  # ignore region ...
    pred[box(shape, (0, 10), (8, 10), (0, 2))] = 2  # ... where the prediction says 2: must not count
    labels = {"background": 0, "bone": 1, "cartilage": 2, "meniscus": 3}
    spacing = (2.0, 1.0, 0.5)  # 1 mm^3 per voxel
    r = evaluate_segmentation(pred, ref, labels, spacing, ignore_label=9)
    assert list(r) == ["bone", "cartilage", "meniscus"]
    assert r["bone"]["dice"] == pytest.approx(0.5)
    assert r["bone"]["volume_ref_ml"] == pytest.approx(0.064) and r["bone"]["volume_pred_ml"] == pytest.approx(0.064)
    assert r["bone"]["hd95"] == pytest.approx(brute_force_hd95(ref == 1, pred == 1, spacing))
    assert r["cartilage"] == {"dice": 1.0, "hd95": 0.0, "volume_ref_ml": pytest.approx(0.016),
                              "volume_pred_ml": pytest.approx(0.016)}
    assert math.isnan(r["meniscus"]["dice"]) and math.isnan(r["meniscus"]["hd95"])
    assert r["meniscus"]["volume_ref_ml"] == 0.0
    # Without the ignore label the stray prediction counts against cartilage.
    assert evaluate_segmentation(pred, ref, labels, spacing)["cartilage"]["dice"] < 1.0


def test_aggregate_statistics_skip_nan():
    cases = [
        {"bone": {"dice": 0.8, "hd95": 2.0}, "cartilage": {"dice": 0.6, "hd95": 4.0}},
        {"bone": {"dice": 0.6, "hd95": 4.0}, "cartilage": {"dice": NAN, "hd95": NAN}},
        {"bone": {"dice": 1.0, "hd95": 0.0}, "cartilage": {"dice": 0.2, "hd95": math.inf}},
    ]
    agg = aggregate(cases)
    assert agg["bone"]["dice"] == {"mean": pytest.approx(0.8), "median": pytest.approx(0.8),
                                   "std": pytest.approx(np.std([0.8, 0.6, 1.0])), "n": 3}
    assert agg["cartilage"]["dice"]["mean"] == pytest.approx(0.4) and agg["cartilage"]["dice"]["n"] == 2
    assert agg["cartilage"]["hd95"]["mean"] == math.inf and agg["cartilage"]["hd95"]["median"] == math.inf
    # Across structures: per-case means [0.7, 0.6 (NaN skipped), 0.6] -> their statistics
    assert agg["mean"]["dice"]["mean"] == pytest.approx(np.mean([0.7, 0.6, 0.6]))
    assert agg["mean"]["dice"]["median"] == pytest.approx(0.6)
    assert agg["mean"]["hd95"]["median"] == pytest.approx(4.0)  # [3, 4, inf]


def test_aggregate_all_nan_and_missing_structures():
    agg = aggregate([{"a": {"dice": NAN}}, {"b": {"dice": 0.5}}])
    assert math.isnan(agg["a"]["dice"]["mean"]) and agg["a"]["dice"]["n"] == 0
    assert agg["b"]["dice"]["n"] == 1
    assert agg["mean"]["dice"]["n"] == 1  # case 0 has no valid structure
    with pytest.raises(ValueError):
        aggregate([{"mean": {"dice": 1.0}}])
