"""Imaging planes (views) and how to recognise them from an image header.

A 2D multi-slice MRI series is stored with its slices along one voxel axis (the through-plane axis,
usually the thickest spacing). The physical direction of that axis decides the plane: along
left-right -> sagittal, anterior-posterior -> coronal, superior-inferior -> axial.
"""

from __future__ import annotations

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry

VIEWS: tuple[str, ...] = ("sag", "cor", "ax")
VIEW_NAMES = {"sag": "sagittal", "cor": "coronal", "ax": "axial"}
# Physical LPS axis (x = L-R, y = A-P, z = S-I) that is the slice normal of each view.
VIEW_NORMAL_AXIS = {"sag": 0, "cor": 1, "ax": 2}

# A spacing this much larger than the others marks the through-plane axis; below it the data is
# treated as isotropic and the ITK k axis (how every converter stacks slices) is the slice axis.
_THROUGH_PLANE_RATIO = 1.2


def through_plane_axis(geometry: ImageGeometry) -> int:
    """Array axis (0, 1, 2 in numpy order) that runs across slices."""
    spacing = np.asarray(geometry.spacing, dtype=float)
    order = np.argsort(spacing)
    if spacing[order[-1]] >= _THROUGH_PLANE_RATIO * spacing[order[-2]]:
        return int(order[-1])
    return 0  # array axis 0 is ITK's k axis


def infer_view(geometry: ImageGeometry) -> str:
    """The view whose slice normal matches the through-plane axis' physical direction."""
    array_axis = through_plane_axis(geometry)
    itk_axis = 2 - array_axis
    column = np.abs(geometry.direction_matrix[:, itk_axis])
    physical_axis = int(np.argmax(column))
    return {0: "sag", 1: "cor", 2: "ax"}[physical_axis]
