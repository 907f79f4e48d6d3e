"""Where-in-the-structure anatomy features: regions in millimetres, halves along each structure's own axes,
mirror-invariance, and what is measured in unlabelled tissue."""

import numpy as np
import pytest

from orthodiff_auto.classification.anatomy import anatomy_features, feature_names
from orthodiff_auto.classification.anatomy_features import (
    left_right_axis,
    mirror_signs,
    principal_axes,
    where_feature_names,
    where_features,
)

VALUES = [1, 2, 3]
LR = 2  # the mirror (left-right) axis of the scenes


def _joint(spacing=(1.0, 1.0, 1.0), blob_mm=None, blob_side=+1, blob_gap_mm=2.5):
    """A bone-like block (label 1, 30 x 20 x 16 mm), a second bone below it (label 3) and a small block beside
    them (label 2) on the +x side, which fixes the side along x (axis 2, the mirror axis); optionally a bright 2 mm blob of unlabelled tissue ``blob_gap_mm`` outside the bone's
    +x (``blob_side=+1``) or -x face. Physical size fixed: the grid follows ``spacing``."""
    sp = np.asarray(spacing, float)
    shape = np.round(np.array([50.0, 50.0, 60.0]) / sp).astype(int)
    z, y, x = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, sp)], indexing="ij")
    labels = np.zeros(shape, np.uint8)
    labels[(np.abs(z - 25) < 15) & (np.abs(y - 25) < 10) & (np.abs(x - 30) < 8)] = 1
    labels[(np.abs(z - 25) < 4) & (np.abs(y - 25) < 4) & (np.abs(x - 46) < 3)] = 2
    labels[(np.abs(z - 45) < 4) & (np.abs(y - 25) < 8) & (np.abs(x - 30) < 8)] = 3
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.3, shape).astype(np.float32)
    if blob_mm is not None:
        cx = 30 + blob_side * (8 + blob_gap_mm)
        blob = (np.abs(z - blob_mm) < 1.5) & (np.abs(y - 25) < 1.5) & (np.abs(x - cx) < 1.0) & (labels == 0)
        image[blob] = 4.0
    return image, labels, sp


def _column(name, features, values=VALUES):
    return features[where_feature_names(values).index(name)]


def test_a_change_beside_one_face_lands_in_that_half_only():
    image, labels, sp = _joint(blob_mm=25, blob_side=+1)
    plus = where_features(image, labels, sp, VALUES, LR)
    image, labels, sp = _joint(blob_mm=25, blob_side=-1)
    minus = where_features(image, labels, sp, VALUES, LR)
    # the small block off to +x fixes the sign of x: + is its side
    assert _column("label1_axis2_pos_shell2_bright", plus) > 1.0 and _column("label1_axis2_neg_shell2_bright", plus) == 0
    assert _column("label1_axis2_neg_shell2_bright", minus) > 1.0 and _column("label1_axis2_pos_shell2_bright", minus) == 0


def test_mirror_images_give_the_same_features():
    """A left and a right joint are mirror images along the left-right axis: the anatomy fixes its sign."""
    image, labels, sp = _joint(blob_mm=20)
    f = where_features(image, labels, sp, VALUES, LR)
    mirrored = where_features(image[:, :, ::-1].copy(), labels[:, :, ::-1].copy(), sp, VALUES, LR)
    np.testing.assert_allclose(mirrored, f, atol=1e-6)
    assert list(mirror_signs(labels, sp, LR)) == [1, 1, 1] and list(mirror_signs(labels[:, :, ::-1], sp, LR)) == [1, 1, -1]
    # without a mirror axis nothing is flipped, and the mirrored joint's halves swap
    plain = where_features(image[:, :, ::-1].copy(), labels[:, :, ::-1].copy(), sp, VALUES)
    assert _column("label1_axis2_neg_shell1_mean", plain) == pytest.approx(_column("label1_axis2_pos_shell1_mean", f))


@pytest.mark.parametrize("gap, region", [(0.8, "shell1"), (2.5, "shell2"), (5.5, "shell3")])
def test_shells_are_measured_in_millimetres(gap, region):
    """The same physical blob lands in the same shell at 1 mm and at 0.5 x 0.5 x 2 mm voxels."""
    for spacing in ((1.0, 1.0, 1.0), (2.0, 0.5, 0.5)):
        image, labels, sp = _joint(spacing, blob_mm=35, blob_gap_mm=gap)
        f = where_features(image, labels, sp, VALUES, LR)
        bright = {r: _column(f"label1_axis2_pos_{r}_bright", f) for r in ("shell1", "shell2", "shell3")}
        assert max(bright, key=bright.get) == region, (spacing, bright)


def test_principal_axes_follow_the_image_axes_and_point_along_them():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(4000, 3)) * [1.0, 6.0, 3.0]  # longest along axis 1
    tilt = np.deg2rad(20)
    rot = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    axes = principal_axes(points @ rot.T)
    assert np.all(np.diag(axes) > 0.9)  # row k is the axis closest to image axis k, pointing along +k
    np.testing.assert_allclose(np.abs(axes[1] @ rot[:, 1]), 1.0, atol=0.02)


def test_missing_structures_and_empty_labels_give_zeros_and_names_match():
    image, labels, sp = _joint()
    f = where_features(image, labels, sp, [1, 2, 3, 4], LR)
    assert len(f) == len(where_feature_names([1, 2, 3, 4]))
    assert not _column("label4_axis0_pos_inside_mean", f, [1, 2, 3, 4]) and np.isfinite(f).all()
    assert not where_features(image, np.zeros_like(labels), sp, VALUES).any()
    full = anatomy_features(image, labels, sp, VALUES, LR, feature_set="where")
    assert len(full) == len(feature_names(VALUES, "where"))


@pytest.mark.parametrize("view, expected", [("sag", 0), ("cor", 2), ("ax", 2)])
def test_left_right_axis_of_each_view_in_canonical_orientation(view, expected):
    from orthodiff_auto.data.image_io import ImageGeometry
    from orthodiff_auto.data.orientation import canonical_orientation
    from orthodiff_auto.synthetic.geometry import base_direction

    direction = base_direction(view)  # columns: physical directions of ITK axes i, j, k
    geometry = ImageGeometry(spacing=(3.0, 0.5, 0.5), origin=(0.0, 0.0, 0.0),
                             direction=tuple(direction.ravel()), shape=(20, 64, 64))
    assert left_right_axis(geometry, canonical_orientation(geometry)) == expected


@pytest.mark.parametrize("blob_mm, tercile", [(14, 0), (25, 1), (36, 2)])
def test_sectors_place_a_change_in_one_ninth_of_a_face(blob_mm, tercile):
    """Feature set "sectors": a blob beside the bone's +x face at the low, middle or high third of its long axis
    (axis 0) lands in that sector's column alone, and a mirrored joint gives the same sector columns."""
    image, labels, sp = _joint(blob_mm=blob_mm, blob_side=+1)
    f = where_features(image, labels, sp, VALUES, LR, sectors=True)
    names = where_feature_names(VALUES, sectors=True)
    assert len(f) == len(names) == len(where_feature_names(VALUES)) + 3 * 4 * 27 * 2
    bright = {n: v for n, v in zip(names, f) if n.startswith("label1_sector") and n.endswith("_shell2_bright")}
    assert max(bright, key=bright.get) == f"label1_sector{tercile}12_shell2_bright", bright
    assert sum(v > 0 for v in bright.values()) == 1
    mirrored = where_features(image[:, :, ::-1].copy(), labels[:, :, ::-1].copy(), sp, VALUES, LR, sectors=True)
    np.testing.assert_allclose(mirrored, f, atol=1e-6)
    # the where columns are the same with or without the sectors appended
    np.testing.assert_array_equal(f[: len(where_feature_names(VALUES))], where_features(image, labels, sp, VALUES, LR))
    assert len(anatomy_features(image, labels, sp, VALUES, LR, feature_set="sectors")) == len(feature_names(VALUES, "sectors"))
