import itertools

import numpy as np
import pytest

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.plans.schema import ResamplingPlan
from orthodiff_auto.data.cropping import crop, nonzero_bbox, paste
from orthodiff_auto.data.orientation import Orientation, canonical_orientation
from orthodiff_auto.preprocessing.resampling import (
    axis_orders,
    compute_new_shape,
    resample_axis,
    resample_image,
    resample_labels,
)
from tests.preprocessing.synth import VIEW_DIRECTIONS

PLAN = ResamplingPlan()


def test_same_shape_is_bit_identical():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 7, 9)).astype(np.float32)
    assert resample_image(a, a.shape, (3, 1, 1), (3, 1, 1), PLAN) is a
    lab = rng.integers(0, 3, size=(5, 7, 9)).astype(np.uint8)
    assert resample_labels(lab, lab.shape, (3, 1, 1), (3, 1, 1), PLAN) is lab
    # An axis that keeps its size is untouched even when others change.
    out = resample_axis(a, 1, 7, 3)
    assert out is a


@pytest.mark.parametrize("order", [1])
def test_linear_ramp_is_reproduced_inside(order):
    # Linear interpolation reproduces a linear function exactly away from the edges (order 3: see
    # test_resampling_nnunet_rule.py, which checks it against scipy's B-spline).
    old, new = 20, 33
    x_old = np.arange(old) + 0.5
    ramp = np.tile((2.0 * x_old)[:, None, None], (1, 2, 2)).astype(np.float32)
    out = resample_axis(ramp, 0, new, order)
    x_new = (np.arange(new) + 0.5) * old / new
    inside = (x_new > 2.5) & (x_new < old - 2.5)
    assert np.allclose(out[inside, 0, 0], 2.0 * x_new[inside], atol=1e-4)


def test_nearest_through_plane_for_anisotropic_data():
    assert axis_orders((3.0, 0.5, 0.5), (3.0, 0.4, 0.4), 3, PLAN) == (0, 3, 3)
    assert axis_orders((0.5, 3.0, 0.5), (0.5, 2.0, 0.5), 1, PLAN) == (1, 0, 1)
    assert axis_orders((1.0, 1.0, 1.0), (1.2, 1.2, 1.2), 3, PLAN) == (3, 3, 3)
    assert axis_orders((3.0, 0.5, 0.5), (3.0, 0.4, 0.4), 3, ResamplingPlan(separate_through_plane=False)) == (3, 3, 3)
    # With order 0 through-plane, every output slice is one of the input slices.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 10, 10)).astype(np.float32)
    out = resample_image(a, (9, 10, 10), (3.0, 0.5, 0.5), (2.0, 0.5, 0.5), PLAN)
    assert all(any(np.array_equal(o, s) for s in a) for o in out)


def test_label_resampling_is_one_hot_and_keeps_values():
    lab = np.zeros((4, 40, 40), np.uint8)
    lab[:, 10:30, 10:30] = 1
    lab[:, 15:25, 15:25] = 7
    out = resample_labels(lab, (4, 60, 60), (3, 1, 1), (3, 2 / 3, 2 / 3), PLAN)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1, 7}
    # Areas scale with the zoom (1.5^2).
    for v in (1, 7):
        assert (out == v).sum() / (lab == v).sum() == pytest.approx(2.25, rel=0.08)
    assert compute_new_shape((4, 40, 40), (3, 1, 1), (3, 2 / 3, 2 / 3)) == (4, 60, 60)


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_orientation_round_trip(perm):
    rng = np.random.default_rng(2)
    for flip in [(False, False, False), (True, False, True), (False, True, True)]:
        o = Orientation(perm, flip)
        a = rng.normal(size=(3, 4, 5))
        c = o.to_canonical(a)
        assert c.shape == o.shape_to_canonical(a.shape)
        assert np.array_equal(o.from_canonical(c), a)
        multi = np.stack([a, a + 1])
        assert np.array_equal(o.from_canonical(o.to_canonical(multi)), multi)


def _geometry(direction, spacing):
    return ImageGeometry((4, 5, 6), tuple(spacing), (0.0, 0.0, 0.0), tuple(float(d) for d in direction))


def test_canonical_orientation_puts_through_plane_first():
    # Conventional layouts (slices along array axis 0) stay as they are, up to flips.
    for view, d in VIEW_DIRECTIONS.items():
        o = canonical_orientation(_geometry(d, (3.0, 0.5, 0.5)))
        assert o.transpose[0] == 0
    # A sagittal scan stored with its slices along array axis 2 (ITK i along L-R, spacing 3 mm there).
    d = np.zeros((3, 3))
    d[0, 0] = 1  # ITK i -> L-R
    d[2, 1] = -1  # ITK j -> inferior
    d[1, 2] = 1  # ITK k -> posterior
    g = _geometry(d.ravel(), (0.5, 0.5, 3.0))  # array axis 2 = ITK i = thick
    o = canonical_orientation(g)
    assert o.transpose == (2, 1, 0)  # through-plane, then S-I (ITK j = array 1), then A-P (array 0)
    assert o.flip == (False, True, False)  # ITK j runs inferior: flipped to run superior
    assert o.spacing_to_canonical(g.spacing) == (3.0, 0.5, 0.5)
    # Same physical layout, stored the conventional way: the same canonical order.
    d2 = np.zeros((3, 3))
    d2[1, 0] = 1  # ITK i -> posterior
    d2[2, 1] = 1  # ITK j -> superior
    d2[0, 2] = 1  # ITK k -> L-R
    o2 = canonical_orientation(_geometry(d2.ravel(), (3.0, 0.5, 0.5)))
    assert o2.transpose == (0, 1, 2) and o2.flip == (False, False, False)


def test_crop_and_paste():
    a = np.zeros((6, 8, 10), np.float32)
    a[1:4, 2:7, 3:5] = 1
    a[2, 3, 4] = 0  # holes do not change the box
    box = nonzero_bbox(a)
    assert box == ((1, 4), (2, 7), (3, 5))
    c = crop(a, box)
    assert c.shape == (3, 5, 2)
    assert np.array_equal(paste(c, box, a.shape), a)
    assert nonzero_bbox(np.zeros((2, 3, 4))) == ((0, 2), (0, 3), (0, 4))
    probs = np.stack([c, 1 - c])
    pasted = paste(probs, box, a.shape, fill=[0.0, 1.0])
    assert pasted.shape == (2, 6, 8, 10) and pasted[1, 0, 0, 0] == 1.0 and pasted[0, 0, 0, 0] == 0.0
