"""What the Python API accepts as a scan, and the SimpleITK images it returns.

A scan is a file path (any format ``read_image`` reads, or a DICOM series folder), a ``SimpleITK.Image``, or a
numpy array in SimpleITK's array order (z, y, x: what ``SimpleITK.GetArrayFromImage`` returns) with its
spacing, origin and direction in SimpleITK's order (x, y, z: what ``GetSpacing()``, ``GetOrigin()`` and
``GetDirection()`` return), so an array and its header can be passed on from SimpleITK, nibabel-through-ITK or
MONAI's ITK reader without reordering.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import SimpleITK as sitk

from orthodiff_auto.data.image_io import ImageGeometry, read_image
from orthodiff_auto.errors import UserInputError

ScanInput = Union[str, Path, sitk.Image, np.ndarray]
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def scan_from_input(scan: ScanInput, spacing: Sequence[float] | None = None, origin: Sequence[float] | None = None,
                    direction: Sequence[float] | None = None, name: str = "scan") -> tuple[np.ndarray, ImageGeometry]:
    """(float32 array in SimpleITK order, geometry) of a path, a SimpleITK image, or an array with its spacing
    (required), origin (default 0, 0, 0) and direction (default identity). ``name`` names the scan in errors."""
    if isinstance(scan, (str, Path)):
        return read_image(scan)
    if isinstance(scan, sitk.Image):
        if scan.GetDimension() != 3 or scan.GetNumberOfComponentsPerPixel() != 1:
            raise UserInputError(f"{name}: expected a 3D scalar SimpleITK image, got {scan.GetDimension()}D with "
                                 f"{scan.GetNumberOfComponentsPerPixel()} components")
        return sitk.GetArrayFromImage(scan).astype(np.float32, copy=False), ImageGeometry.from_sitk(scan)
    if isinstance(scan, np.ndarray):
        return scan.astype(np.float32, copy=False), array_geometry(scan, spacing, origin, direction, name)
    raise UserInputError(f"{name}: expected a file path, a SimpleITK.Image or a numpy array, got "
                         f"{type(scan).__name__}")


def array_geometry(array: np.ndarray, spacing: Sequence[float] | None, origin: Sequence[float] | None,
                   direction: Sequence[float] | None, name: str = "scan") -> ImageGeometry:
    """The geometry of a (z, y, x) array from SimpleITK-ordered (x, y, z) spacing, origin and direction."""
    if array.ndim != 3 or min(array.shape) < 1:
        raise UserInputError(f"{name}: expected a 3D array (z, y, x), got shape {array.shape}")
    if spacing is None:
        raise UserInputError(f"{name}: a numpy array needs its spacing (x, y, z in mm, as SimpleITK's GetSpacing)")
    spacing = _floats(spacing, 3, "spacing", name)
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise UserInputError(f"{name}: spacing must be positive and finite, got {tuple(spacing)}")
    origin = _floats(origin if origin is not None else (0.0, 0.0, 0.0), 3, "origin", name)
    direction = _floats(direction if direction is not None else IDENTITY, 9, "direction", name)
    matrix = np.asarray(direction).reshape(3, 3)
    if not np.all(np.isfinite(matrix)) or abs(abs(np.linalg.det(matrix)) - 1) > 1e-3:
        raise UserInputError(f"{name}: direction must be a 3x3 rotation (row-major, as SimpleITK's GetDirection)")
    return ImageGeometry(shape=tuple(int(s) for s in array.shape), spacing=tuple(reversed(spacing)),
                         origin=tuple(origin), direction=tuple(direction))


def _floats(values: Sequence[float], count: int, what: str, name: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise UserInputError(f"{name}: {what} must be {count} numbers, got {values!r}") from None
    if len(out) != count:
        raise UserInputError(f"{name}: {what} must be {count} numbers, got {len(out)}")
    return out


def image_in_geometry(array: np.ndarray, geometry: ImageGeometry) -> sitk.Image:
    """A SimpleITK image of a (z, y, x) array, or of (C, z, y, x) channels as a vector image, with ``geometry``."""
    vector = array.ndim == 4
    image = sitk.GetImageFromArray(np.moveaxis(array, 0, -1) if vector else array, isVector=vector)
    geometry.apply_to(image)
    return image


__all__ = ["IDENTITY", "ScanInput", "array_geometry", "image_in_geometry", "scan_from_input"]
