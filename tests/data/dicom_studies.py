"""Small multi-series DICOM studies written with SimpleITK, slice by slice, with the tags a scanner sets
(StudyInstanceUID, SeriesInstanceUID, ImageOrientationPatient, ImagePositionPatient, ...), for the DICOM tests."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from orthodiff_auto.data.image_io import ImageGeometry

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_series(folder: Path, array: np.ndarray, geometry: ImageGeometry, study_uid: str, series_uid: str,
                 description: str = "", image_type: str = "ORIGINAL\\PRIMARY\\M\\NONE", patient: str = "P1") -> Path:
    """One file per slice (ITK's k axis) in ``folder``; the volume is ``array`` (SimpleITK order) stored as int16."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.round(array).astype(np.int16))
    geometry.apply_to(image)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    # ITK's DICOM writer sets the process' locale to C (ASCII) and leaves it so: restore it for the tests after
    saved = locale.setlocale(locale.LC_ALL)
    try:
        _write_slices(writer, image, folder, series_uid, study_uid, description, image_type, patient, geometry)
    finally:
        locale.setlocale(locale.LC_ALL, saved)
    return folder


def _write_slices(writer, image, folder: Path, series_uid: str, study_uid: str, description: str, image_type: str,
                  patient: str, geometry: ImageGeometry) -> None:
    d = geometry.direction
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    for k in range(image.GetDepth()):
        piece = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0008": image_type, "0008|0016": MR_IMAGE_STORAGE, "0008|0018": f"{series_uid}.{k + 1}",
            "0008|0060": "MR", "0008|103e": description, "0010|0020": patient, "0020|000d": study_uid,
            "0020|000e": series_uid, "0020|0013": str(k + 1), "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.6f}" for v in position), "0018|0050": f"{geometry.spacing[0]:.6f}",
        }
        for key, value in tags.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"IM{k + 1:04d}.dcm"))
        writer.Execute(piece)
