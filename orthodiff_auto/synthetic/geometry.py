"""Scan geometry: size presets, view orientations and per-scan grids in physical (ITK LPS) space.

Every view is a 2D multi-slice acquisition: the slice axis is ITK's k axis (array axis 0), its normal runs
along the view's physical axis (sag: L-R, cor: A-P, ax: S-I) up to a few degrees of obliquity, and the
in-plane axes are oriented the way radiologists display them (superior up on sag/cor, anterior up on ax,
patient's right on the left of cor/ax, anterior on the left of sag).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.synthetic.spec import SiteProfile


@dataclass(frozen=True)
class SizePreset:
    name: str
    fov_mm: tuple[float, float]  # in-plane field of view range
    coverage_mm: tuple[float, float]  # through-plane coverage range (n_slices * thickness)
    max_slices: int
    sub_through: float  # target through-plane supersampling step (mm)
    sub_inplane: int  # in-plane supersampling factor per axis
    tile: int  # in-plane tile size (voxels) for chunked evaluation


PRESETS: dict[str, SizePreset] = {
    "tiny": SizePreset("tiny", (146.0, 156.0), (104.0, 116.0), 14, 2.5, 2, 40),
    "demo": SizePreset("demo", (144.0, 154.0), (116.0, 128.0), 24, 1.0, 2, 32),
    # diagnostic resolution: about 1 mm in-plane, 3.5-4.5 mm slices, a clinical knee's field of view and coverage
    "standard": SizePreset("standard", (140.0, 160.0), (110.0, 124.0), 36, 1.35, 1, 64),
    "clinical": SizePreset("clinical", (140.0, 160.0), (110.0, 124.0), 40, 0.8, 1, 48),
}

# Base in-plane (i, j) directions per view in LPS before obliquity; k = i x j.
_BASE_AXES = {
    "sag": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),  # columns run anterior->posterior, rows superior->inferior
    "cor": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),  # columns run right->left, rows superior->inferior
    "ax": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),  # columns run right->left, rows anterior->posterior
}


def rotation(axis: int, degrees: float) -> np.ndarray:
    """Right-handed rotation about coordinate axis 0, 1 or 2."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    r = np.eye(3)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def base_direction(view: str) -> np.ndarray:
    """3x3 matrix whose columns are the physical directions of ITK axes i, j, k."""
    i, j = (np.asarray(v, dtype=float) for v in _BASE_AXES[view])
    return np.stack([i, j, np.cross(i, j)], axis=1)


def sample_view_geometry(
    view: str,
    size: str,
    site: SiteProfile,
    center: np.ndarray,
    plan_angle_z: float,
    rng: np.random.Generator,
) -> ImageGeometry:
    """A scan grid centred near ``center`` (world mm) with the site's protocol for this size preset, its
    planes turned about the scanner's S-I axis by most of ``plan_angle_z`` (degrees; see ``plan_angle``)."""
    preset = PRESETS[size]
    matrix, thickness = site.protocol[size]
    fov = rng.uniform(*preset.fov_mm)
    in_plane = fov / matrix
    n_slices = int(np.clip(round(rng.uniform(*preset.coverage_mm) / thickness), 4, preset.max_slices))
    # Technologists align the planes to the anatomy (following most of its rotation about the scanner's
    # z axis, e.g. the knee's posterior condylar line for coronal, the shoulder's scapular plane for oblique
    # coronal), plus a few degrees of random obliquity.
    obliquity = (
        rotation(2, plan_angle_z * rng.uniform(0.8, 1.0) + rng.uniform(-3, 3))
        @ rotation(0, rng.uniform(-3, 3))
        @ rotation(1, rng.uniform(-3, 3))
    )
    direction = obliquity @ base_direction(view)
    spacing_itk = np.array([in_plane, in_plane, thickness])
    size_itk = np.array([matrix, matrix, n_slices])
    extent = direction @ (spacing_itk * (size_itk - 1) / 2.0)
    origin = np.asarray(center, dtype=float) - extent
    return ImageGeometry(
        shape=(int(n_slices), int(matrix), int(matrix)),
        spacing=(float(thickness), float(in_plane), float(in_plane)),
        origin=tuple(float(o) for o in origin),
        direction=tuple(float(d) for d in direction.reshape(-1)),
    )


def plan_angle(rotation_matrix: np.ndarray, axis) -> float:
    """The rotation about the scanner's z axis (degrees) that turns the scanner's posterior (+y) towards the
    world direction of the joint-frame vector ``axis`` (placed by ``rotation_matrix``), for planning slices."""
    direction = rotation_matrix @ np.asarray(axis, dtype=float)
    return float(np.degrees(np.arctan2(-direction[0], direction[1])))


def supersampling(size: str, geometry: ImageGeometry) -> tuple[int, int]:
    """(through-plane subsamples per slice, in-plane subsamples per axis) for this preset and grid."""
    preset = PRESETS[size]
    n_through = max(2, int(np.ceil(geometry.spacing[0] / preset.sub_through)))
    return n_through, preset.sub_inplane

