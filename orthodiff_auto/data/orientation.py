"""Canonical orientation per view: a pure permutation and flip of array axes (no interpolation, exact inverse).

Scans of one view may be stored with their slices along different array axes and with different axis signs
(what each converter or scanner wrote). Preprocessing brings every scan into one layout so that per-axis
statistics, target spacings, patch sizes and network kernels mean the same thing for every case:

- canonical axis 0 is the through-plane axis (``data.views.through_plane_axis``: the coarsest spacing; the ITK
  k axis for isotropic data);
- canonical axes 1 and 2 are the in-plane axes, matched to the two remaining physical (LPS) axes in the order
  z, y, x (ax: z|y,x; cor: y|z,x; sag: x|z,y), choosing the matching that best follows the direction cosines;
- each canonical axis is flipped, if needed, so that its index increases along its physical axis' + direction
  (towards Left, Posterior, Superior).

For oblique scans the matching picks the closest physical axes; the data is never resampled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.data.views import through_plane_axis


@dataclass(frozen=True)
class Orientation:
    """``transpose[i]``: the original array axis that becomes canonical axis i; ``flip[i]``: canonical axis i is
    reversed after transposing. Works on arrays whose last three axes are spatial (leading channels allowed)."""

    transpose: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        lead = array.ndim - 3
        out = np.transpose(array, tuple(range(lead)) + tuple(lead + t for t in self.transpose))
        flips = tuple(lead + i for i, f in enumerate(self.flip) if f)
        if flips:
            out = np.flip(out, flips)
        return out

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        lead = array.ndim - 3
        flips = tuple(lead + i for i, f in enumerate(self.flip) if f)
        if flips:
            array = np.flip(array, flips)
        inverse = np.argsort(self.transpose)
        return np.transpose(array, tuple(range(lead)) + tuple(lead + int(t) for t in inverse))

    def spacing_to_canonical(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        return tuple(float(spacing[t]) for t in self.transpose)

    def shape_to_canonical(self, shape: Sequence[int]) -> tuple[int, int, int]:
        return tuple(int(shape[t]) for t in self.transpose)

    def to_dict(self) -> dict:
        return {"transpose": list(self.transpose), "flip": list(self.flip)}

    @classmethod
    def from_dict(cls, d: dict) -> "Orientation":
        return cls(tuple(int(t) for t in d["transpose"]), tuple(bool(f) for f in d["flip"]))


def canonical_orientation(geometry: ImageGeometry) -> Orientation:
    """The permutation/flip that brings an image of this geometry into its view's canonical layout."""
    direction = geometry.direction_matrix  # column c: physical direction of ITK axis c = array axis 2 - c
    cols = {a: direction[:, 2 - a] for a in range(3)}
    tp = through_plane_axis(geometry)
    p0 = int(np.argmax(np.abs(cols[tp])))
    remaining_phys = [p for p in (2, 1, 0) if p != p0]  # z, y, x order
    a, b = [ax for ax in range(3) if ax != tp]
    keep = abs(cols[a][remaining_phys[0]]) + abs(cols[b][remaining_phys[1]])
    swap = abs(cols[b][remaining_phys[0]]) + abs(cols[a][remaining_phys[1]])
    in_plane = (a, b) if keep >= swap else (b, a)
    transpose = (tp, in_plane[0], in_plane[1])
    phys = (p0, remaining_phys[0], remaining_phys[1])
    flip = tuple(bool(cols[ax][p] < 0) for ax, p in zip(transpose, phys))
    return Orientation(transpose, flip)


def orientation_code(geometry: ImageGeometry) -> str:
    """Three-letter DICOM-style orientation of the ITK axes (i, j, k), e.g. 'LPS' or 'PSL'."""
    import SimpleITK as sitk  # here, not at the top: the fingerprint's worker processes start faster

    return str(sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(tuple(geometry.direction)))
