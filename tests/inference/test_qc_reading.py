"""The QC picture reads without help (issue 27, item 10): a distinct colour per structure, orientation letters
that match the anatomy, finding names in full."""

from __future__ import annotations

import colorsys
import itertools

import numpy as np
import pytest

from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.inference.qc import contour_colours, findings_table, image_origin, middle_slice, orientation_letters
from tests.conftest import view_geometry


def _hue(colour) -> float:
    return colorsys.rgb_to_hsv(*colour[:3])[0]


@pytest.mark.parametrize("n", [2, 3, 8, 11, 14, 20])
def test_every_two_structures_have_clearly_different_hues(n):
    colours = list(contour_colours([f"s{i}" for i in range(n)]).values())
    for a, b in itertools.combinations(colours, 2):
        gap = abs(_hue(a) - _hue(b))
        assert min(gap, 1 - gap) >= 1 / n - 1e-6
    assert all(colorsys.rgb_to_hsv(*c[:3])[1] == 1.0 for c in colours)  # saturated: no grey contour on a grey scan
    if n >= 4:  # neighbours in the label list (femur, tibia) are far apart on the hue circle
        gap = abs(_hue(colours[0]) - _hue(colours[1]))
        assert min(gap, 1 - gap) >= 0.25


# LPS: +x is the patient's left, +y posterior, +z superior
_AXIS_OF = {"R": (0, -1), "L": (0, 1), "A": (1, -1), "P": (1, 1), "I": (2, -1), "S": (2, 1)}


@pytest.mark.parametrize("view", VIEWS)
def test_orientation_letters_name_the_anatomy_at_each_edge(view):
    g = view_geometry(view, shape=(9, 20, 24), spacing=(3.0, 0.5, 0.6))
    # each voxel's physical (x, y, z): ITK index (i, j, k) is array index (axis 2, 1, 0)
    k, j, i = np.meshgrid(*[np.arange(s) for s in g.shape], indexing="ij")
    index = np.stack([i, j, k], axis=-1) * np.array(g.spacing[::-1])
    physical = index @ g.direction_matrix.T + np.array(g.origin)
    letters = orientation_letters(view)
    for axis in range(3):
        shown, _, _ = middle_slice(physical[..., axis], None, g)
        if image_origin(view) == "lower":  # row 0 drawn at the bottom
            shown = shown[::-1]
        edges = {"top": shown[0].mean(), "bottom": shown[-1].mean(), "left": shown[:, 0].mean(),
                 "right": shown[:, -1].mean()}
        for first, second in (("left", "right"), ("top", "bottom")):
            a, b = _AXIS_OF[letters[first]], _AXIS_OF[letters[second]]
            assert a[0] == b[0] and a[1] == -b[1]  # opposite ends of one axis
            if a[0] == axis:  # the edge named towards + lies further along + than the other
                assert (edges[first] - edges[second]) * a[1] > 0, (view, letters)


def test_long_finding_names_are_printed_in_full():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.0, 5.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    names = ["medial_meniscus_tear", "patellar_dislocation_with_bone_bruise", "acl_tear"]
    table = findings_table(ax, [[n, "0.500", "0.400", "yes"] for n in names])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for (row, column), cell in table.get_celld().items():
        text = cell.get_text().get_window_extent(renderer)
        box = cell.get_window_extent(renderer)
        assert text.x0 >= box.x0 - 0.5 and text.x1 <= box.x1 + 0.5, cell.get_text().get_text()
    plt.close(fig)
