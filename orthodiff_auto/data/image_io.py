"""Image I/O with SimpleITK.

Conventions used everywhere in orthodiff_auto:
- arrays are in SimpleITK's numpy order: array axis 0 is the ITK k axis, 1 is j, 2 is i;
- ``ImageGeometry.spacing`` is given in *array* order, so it lines up with ``array.shape``;
- ``origin`` and ``direction`` stay in ITK's physical convention (LPS, direction row-major, column a is
  the physical direction of ITK axis a), exactly as SimpleITK reports them, so that writing back
  reproduces the header bit for bit.
"""

from __future__ import annotations

import errno
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from orthodiff_auto.data.nifti_check import is_nifti, nifti_size_problem
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.utils.atomic import atomic_path


@dataclass(frozen=True)
class ImageGeometry:
    shape: tuple[int, int, int]  # array order
    spacing: tuple[float, float, float]  # array order, mm
    origin: tuple[float, float, float]  # ITK physical (x, y, z)
    direction: tuple[float, ...]  # ITK 3x3 row-major

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImageGeometry":
        return cls(
            shape=tuple(int(v) for v in d["shape"]),
            spacing=tuple(float(v) for v in d["spacing"]),
            origin=tuple(float(v) for v in d["origin"]),
            direction=tuple(float(v) for v in d["direction"]),
        )

    @classmethod
    def from_sitk(cls, img: "sitk.Image") -> "ImageGeometry":
        size = img.GetSize()
        return cls(
            shape=tuple(int(s) for s in reversed(size)),
            spacing=tuple(float(s) for s in reversed(img.GetSpacing())),
            origin=tuple(float(o) for o in img.GetOrigin()),
            direction=tuple(float(d) for d in img.GetDirection()),
        )

    def apply_to(self, img: "sitk.Image") -> None:
        img.SetSpacing(tuple(reversed(self.spacing)))
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)

    def same_grid(self, other: "ImageGeometry", tol: float = 1e-4) -> bool:
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, rtol=tol, atol=tol)
            and np.allclose(self.origin, other.origin, rtol=tol, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )


GZIP_MAGIC = b"\x1f\x8b"


def gzip_name_problem(path: Path | str) -> str | None:
    """A gzip-compressed file whose name does not end in ``.gz`` (SimpleITK then finds no reader for it, and says
    only that): the problem and the fix, or None."""
    path = Path(path)
    if path.name.endswith(".gz") or not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            if f.read(2) != GZIP_MAGIC:
                return None
    except OSError:
        return None
    return f"the file is gzip-compressed but its name does not end in .gz; rename it to {path.name}.gz"


def read_geometry(path: Path | str) -> ImageGeometry:
    """Read only the header (fast: no voxel data)."""
    if (problem := gzip_name_problem(path)) is not None:
        raise UserInputError(f"{path}: {problem}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise UserInputError(f"{path}: cannot read image header ({_first_line(e)})") from None
    if reader.GetDimension() != 3:
        raise UserInputError(f"{path}: expected a 3D image, got {reader.GetDimension()}D")
    if reader.GetNumberOfComponents() != 1:
        raise UserInputError(f"{path}: expected a scalar image, got {reader.GetNumberOfComponents()} components")
    size = reader.GetSize()
    return ImageGeometry(
        shape=tuple(int(s) for s in reversed(size)),
        spacing=tuple(float(s) for s in reversed(reader.GetSpacing())),
        origin=tuple(float(o) for o in reader.GetOrigin()),
        direction=tuple(float(d) for d in reader.GetDirection()),
    )


def read_image(path: Path | str, dtype: Any = np.float32) -> tuple[np.ndarray, ImageGeometry]:
    """Read a 3D scalar image (NIfTI, NRRD, MHA, ... or a DICOM series folder)."""
    path = Path(path)
    if not path.exists():
        link = " (a symbolic link to a missing file)" if path.is_symlink() else ""
        raise UserInputError(f"{path}: not found{link}")
    if is_nifti(path) and path.is_file() and (problem := nifti_size_problem(path)) is not None:
        raise UserInputError(f"{path}: {problem}")  # before SimpleITK reads zeros for missing data
    if (problem := gzip_name_problem(path)) is not None:
        raise UserInputError(f"{path}: {problem}")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(path))
            if not files:
                raise UserInputError(f"{path}: folder holds no DICOM series")
            reader.SetFileNames(files)
            img = reader.Execute()
        else:
            img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise UserInputError(f"{path}: cannot read image ({_first_line(e)})") from None
    return image_to_array(img, path, dtype)


def image_to_array(img: "sitk.Image", source: Path | str, dtype: Any = np.float32) -> tuple[np.ndarray, ImageGeometry]:
    """(array, geometry) of a SimpleITK image read from ``source``, which must be 3D and scalar."""
    if img.GetDimension() != 3:
        raise UserInputError(f"{source}: expected a 3D image, got {img.GetDimension()}D")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise UserInputError(f"{source}: expected a scalar image, got {img.GetNumberOfComponentsPerPixel()} components")
    array = sitk.GetArrayFromImage(img)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array, ImageGeometry.from_sitk(img)


def write_image(path: Path | str, array: np.ndarray, geometry: ImageGeometry, compress: bool = True) -> None:
    """Write atomically; the geometry's shape must match the array."""
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match geometry shape {geometry.shape}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    geometry.apply_to(img)
    with atomic_path(path, write_errors=(RuntimeError,)) as tmp:
        sitk.WriteImage(img, str(tmp), compress)
        # SimpleITK's NIfTI writer does not raise when the disk is full: check before the rename publishes it
        if is_nifti(path) and (problem := nifti_size_problem(tmp)) is not None:
            raise OSError(errno.EIO, f"written incompletely, the disk may be full ({problem})", str(path))


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # ITK messages start with file/line noise; the last line carries the reason.
    return lines[-1] if lines else type(e).__name__
