"""Does a NIfTI file hold all the voxel data its header declares?

SimpleITK reads a truncated ``.nii.gz`` as an image of zeros, a ``.nii`` cut short or with a voxel offset beyond
its end as whatever it finds, a zero-length axis as length one, and it writes a NIfTI file on a full disk
without raising (it prints "NWAD: wrote only ... bytes"). This check reads the header (348 bytes for NIfTI-1,
540 for NIfTI-2), computes ``vox_offset + prod(dims) * bitpix / 8`` and compares it with what the file holds:
the file size (``.nii``), or the gzip trailer's uncompressed size and, when that does not match, the length of
the whole decompressed stream (``.nii.gz``; also reports a stream cut short or corrupt).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

NIFTI_ENDINGS = (".nii", ".nii.gz")
_CHUNK = 1 << 22


def is_nifti(path: Path | str) -> bool:
    return str(path).endswith(NIFTI_ENDINGS)


def nifti_size_problem(path: Path | str) -> str | None:
    """What is wrong with the file's size, or None (also None when the header cannot be parsed: the image
    reader reports that)."""
    path = Path(path)
    compressed = path.name.endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            header = f.read(540)
    except EOFError:
        return "truncated: the compressed stream ends inside the header"
    except (OSError, zlib.error):  # not gzip data after all, unreadable, ...: the image reader says what
        return None
    if len(header) < 348:
        return f"truncated: {len(header)} bytes, shorter than a NIfTI header (348)"
    parsed = _parse_header(header)
    if parsed is None:
        return None
    dims, bitpix, vox_offset = parsed
    if any(d <= 0 for d in dims):
        return f"the header declares dimensions {list(dims)}: an axis of size 0 or less"
    expected = vox_offset + math.prod(dims) * bitpix // 8
    held = _uncompressed_size(path, expected) if compressed else path.stat().st_size
    if isinstance(held, str):
        return held
    if held < expected:
        return (f"truncated: the header declares {list(dims)} voxels of {bitpix} bits from byte {vox_offset} "
                f"({expected} bytes), the file holds {held}")
    return None


def _parse_header(header: bytes) -> tuple[tuple[int, ...], int, int] | None:
    """(dims, bitpix, vox_offset) of a NIfTI-1 or NIfTI-2 header, either byte order; None when it is neither."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack_from(endian + "i", header, 0)[0] == 348:
            dim = struct.unpack_from(endian + "8h", header, 40)
            bitpix = struct.unpack_from(endian + "h", header, 72)[0]
            vox_offset = int(struct.unpack_from(endian + "f", header, 108)[0])
            break
        if len(header) >= 540 and struct.unpack_from(endian + "i", header, 0)[0] == 540:
            bitpix = struct.unpack_from(endian + "h", header, 14)[0]
            dim = struct.unpack_from(endian + "8q", header, 16)
            vox_offset = struct.unpack_from(endian + "q", header, 168)[0]
            break
    else:
        return None
    ndim = dim[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    return tuple(int(d) for d in dim[1:ndim + 1]), int(bitpix), max(int(vox_offset), 0)


def _uncompressed_size(path: Path, expected: int) -> int | str:
    """The decompressed length: the gzip trailer when it says ``expected`` (mod 2**32), else the whole stream
    (every member) decompressed and counted; a message when the stream is cut short or corrupt."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() >= 4:
            f.seek(-4, 2)
            if struct.unpack("<I", f.read(4))[0] == expected % (1 << 32) and expected < (1 << 32):
                return expected
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                total += len(chunk)
                if total >= expected:  # enough for the header's claim; trailing bytes are allowed
                    return total
    except EOFError:
        return f"truncated: the compressed stream ends before the {expected} bytes the header declares"
    except (OSError, zlib.error) as e:
        return f"corrupt compressed data ({e})"
    return total
