"""The bad-input corpus beyond ``tests/data/test_validation.py``'s CORRUPTIONS (which the suite reuses):
broken NIfTI files, CSVs in encodings and dialects that cannot be read, path-like case ids, a dangling
symbolic link. Each function corrupts a dataset made by the ``make_native_dataset`` fixture and returns
(the file's path relative to the dataset, a regular expression the problem's message matches).

``broken_nifti`` writes one broken image file of each kind into a folder (the predict_folder inputs).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _cut(path: Path, fraction: float = 0.75) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _patch_header(path: Path, patch) -> None:
    """Rewrite a .nii.gz with ``patch(bytearray)`` applied to its uncompressed bytes."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    patch(raw)
    path.write_bytes(gzip.compress(bytes(raw)))


def set_dims(raw: bytearray, dims) -> None:
    struct.pack_into("<8h", raw, 40, len(dims), *dims, *([1] * (7 - len(dims))))


def shear_sform(raw: bytearray) -> None:
    """A sheared (non-orthogonal) sform, used instead of the qform."""
    struct.pack_into("<hh", raw, 252, 0, 1)  # qform_code 0, sform_code 1
    struct.pack_into("<12f", raw, 280, 0.5, 0.45, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0)


def truncated_image(root):
    _cut(root / "imagesTr/c001_sag.nii.gz")
    return "imagesTr/c001_sag.nii.gz", "truncated"


def truncated_label(root):
    _cut(root / "labelsTr/c002_cor.nii.gz", 0.5)
    return "labelsTr/c002_cor.nii.gz", "truncated"


def gzip_corrupt_image(root):
    path = root / "imagesTr/c001_ax.nii.gz"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0x5A for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))
    return "imagesTr/c001_ax.nii.gz", "cannot read image|corrupt"


def empty_image(root):
    (root / "imagesTr/c002_sag.nii.gz").write_bytes(b"")
    return "imagesTr/c002_sag.nii.gz", "truncated"


def four_d_image(root):
    four_d = sitk.GetImageFromArray(np.zeros((2, 6, 20, 20), np.float32), isVector=False)
    sitk.WriteImage(four_d, str(root / "imagesTr/c002_ax.nii.gz"))
    return "imagesTr/c002_ax.nii.gz", "expected a 3D image, got 4D"


def zero_size_axis(root):
    _patch_header(root / "imagesTr/c003_cor.nii.gz", lambda raw: set_dims(raw, (20, 20, 0)))
    return "imagesTr/c003_cor.nii.gz", "axis of size 0"


def non_orthogonal_direction(root):
    _patch_header(root / "imagesTr/c003_ax.nii.gz", shear_sform)
    return "imagesTr/c003_ax.nii.gz", "orthonormal"


def huge_header_size(root):
    # 32767^3 voxels (140 TB) declared by a 10 kB file: refused before anything is allocated
    _patch_header(root / "imagesTr/c004_cor.nii.gz", lambda raw: set_dims(raw, (32767, 32767, 32767)))
    return "imagesTr/c004_cor.nii.gz", "truncated: the header declares"


def voxel_offset_beyond_end(root):
    _patch_header(root / "imagesTr/c004_ax.nii.gz", lambda raw: struct.pack_into("<f", raw, 108, 3.0e9))
    return "imagesTr/c004_ax.nii.gz", "truncated"


def findings_utf16(root):
    path = root / "findings.csv"
    path.write_bytes(path.read_text().encode("utf-16"))
    return "findings.csv", "cannot parse CSV"


def findings_latin1(root):
    path = root / "findings.csv"
    path.write_bytes(path.read_text().replace("site0", "sit\u00e9").encode("latin-1"))
    return "findings.csv", "cannot parse CSV"


def findings_semicolons(root):
    path = root / "findings.csv"
    path.write_text(path.read_text().replace(",", ";"))
    return "findings.csv", "missing the case_id column"


def findings_unbalanced_quote(root):
    path = root / "findings.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], '"' + lines[1], *lines[2:]]) + "\n")
    return "findings.csv", "cannot parse CSV"


def path_like_case_ids(root):
    # case ids come from file names; findings rows that look like paths match no scan and are refused
    with open(root / "findings.csv", "a") as f:
        f.write("../x,0,1,site0\n/abs/c001,1,0,site1\nc 001,0,0,site0\n")
    return "findings.csv", r"rows for cases without images \['\.\./x', '/abs/c001', 'c 001'\]"


def dangling_symlink(root):
    path = root / "imagesTr/c004_sag.nii.gz"
    path.unlink()
    path.symlink_to(root.parent / "nowhere" / "c004_sag.nii.gz")
    return "imagesTr/c004_sag.nii.gz", "symbolic link to a missing file"


NEW_CORRUPTIONS = [truncated_image, truncated_label, gzip_corrupt_image, empty_image, four_d_image, zero_size_axis,
                   non_orthogonal_direction, huge_header_size, voxel_offset_beyond_end, findings_utf16,
                   findings_latin1, findings_semicolons, findings_unbalanced_quote, path_like_case_ids,
                   dangling_symlink]


def broken_nifti(folder: Path, good: Path, view: str) -> dict[str, str]:
    """One broken copy of ``good`` per kind, named ``<kind>_<view>.nii.gz``: {file name: message regex}."""
    kinds = {
        "truncated": (lambda p: _cut(p), "truncated"),
        "gzipcorrupt": (lambda p: p.write_bytes(p.read_bytes()[:40] + bytes(200) + p.read_bytes()[240:]),
                        "cannot read image|corrupt"),
        "empty": (lambda p: p.write_bytes(b""), "truncated"),
        "zeroaxis": (lambda p: _patch_header(p, lambda raw: set_dims(raw, (20, 0, 20))), "axis of size 0"),
        "sheared": (lambda p: _patch_header(p, shear_sform), "orthonormal"),
        "huge": (lambda p: _patch_header(p, lambda raw: set_dims(raw, (32767, 32767, 32767))), "truncated"),
        "fourd": (lambda p: sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 8, 8), np.float32),
                                                                   isVector=False), str(p)), "expected a 3D image"),
    }
    expected = {}
    for kind, (corrupt, message) in kinds.items():
        path = folder / f"{kind}_{view}.nii.gz"
        path.write_bytes(good.read_bytes())
        corrupt(path)
        expected[path.name] = message
    dangling = folder / f"dangling_{view}.nii.gz"
    dangling.symlink_to(folder.parent / "nowhere.nii.gz")
    expected[dangling.name] = "symbolic link to a missing file"
    return expected
