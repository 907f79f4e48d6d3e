import numpy as np
import pytest

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.data.views import infer_view, through_plane_axis
from tests.conftest import VIEW_DIRECTIONS, view_geometry


@pytest.mark.parametrize("view", ["sag", "cor", "ax"])
def test_view_from_direction_of_thick_axis(view):
    assert infer_view(view_geometry(view)) == view


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


@pytest.mark.parametrize("view", ["sag", "cor", "ax"])
def test_oblique_acquisition_keeps_its_view(view):
    d = np.asarray(VIEW_DIRECTIONS[view]).reshape(3, 3)
    d = _rotation(0, 12) @ _rotation(2, -15) @ d
    g = ImageGeometry((6, 20, 20), (3.0, 0.5, 0.5), (0, 0, 0), tuple(d.ravel()))
    assert infer_view(g) == view


def test_thick_axis_need_not_be_k():
    # slices stacked along ITK i (array axis 2) with the thick spacing there: an axial scan stored "sideways"
    g = ImageGeometry((20, 20, 6), (0.5, 0.5, 3.0), (0, 0, 0), (0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0))
    assert through_plane_axis(g) == 2
    # ITK axis i points along physical z here (column 0 = (0, 0, 1)) -> axial
    assert infer_view(g) == "ax"


def test_isotropic_scan_uses_k_axis():
    g = ImageGeometry((20, 20, 20), (1.0, 1.0, 1.0), (0, 0, 0), VIEW_DIRECTIONS["cor"])
    assert through_plane_axis(g) == 0
    assert infer_view(g) == "cor"
