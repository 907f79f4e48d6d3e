"""Preprocessed case storage (blosc2) and the loader API.

Layout of ``PREPROCESSED_DIR``::

    dataset.json                 the raw dataset's description (DatasetDescription.to_dict()) + "raw_dataset"
    findings.csv                 the validated training findings table (datasets with findings only)
    fingerprint.json             DatasetFingerprint
    plans.json                   Plans
    <view>/<case>.b2nd           float32 image, shape (1, z, y, x) in the view's canonical orientation
    <view>/<case>_seg.b2nd       label map, shape (1, z, y, x), uint8 (uint16 when a value exceeds 255);
                                 only for labelled scans
    <view>/<case>.json           CaseProperties (written last: a case counts as done only when it exists)

Arrays are blosc2 NDArrays (ZSTD level 3 with byte shuffle) chunked about the size of a training patch and
split into blocks of <= 64 KiB, so reading a patch decompresses only the blocks it touches.
Writes are atomic: each file is written under a temporary name beside its final one and renamed.
"""

from __future__ import annotations

import errno
import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.preprocessing.properties import CaseProperties
from orthodiff_auto.utils.atomic import first_line

BLOCK_BYTES = 64 * 1024
TMP_MARKER = ".tmp"


def case_paths(view_dir: Path | str, case_id: str) -> tuple[Path, Path, Path]:
    """(image, segmentation, properties) paths of a case."""
    view_dir = Path(view_dir)
    return view_dir / f"{case_id}.b2nd", view_dir / f"{case_id}_seg.b2nd", view_dir / f"{case_id}.json"


def chunks_and_blocks(shape: Sequence[int], patch_size: Sequence[int] | None,
                      itemsize: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunks: the patch size clipped to the array (whole array when no patch given); blocks: the chunk halved
    along its largest axis until it holds at most ``BLOCK_BYTES``. Shapes include the leading channel axis."""
    spatial = list(shape[1:])
    chunk = [min(s, int(p)) for s, p in zip(spatial, patch_size)] if patch_size is not None else list(spatial)
    chunk = [max(1, c) for c in chunk]
    block = list(chunk)
    while math.prod(block) * itemsize > BLOCK_BYTES and max(block) > 1:
        a = int(np.argmax(block))
        block[a] = (block[a] + 1) // 2
    return (1, *chunk), (1, *block)


def _tmp_path(target: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_MARKER + "".join(target.suffixes),
                                dir=target.parent)
    os.close(fd)
    os.unlink(name)  # blosc2 writes a new file; only the unique name is needed
    return Path(name)


def _write_b2nd(path: Path, array: np.ndarray, patch_size: Sequence[int] | None) -> None:
    import blosc2  # only when arrays are written or read: importing this module stays light

    array = np.ascontiguousarray(array)
    chunks, blocks = chunks_and_blocks(array.shape, patch_size, array.itemsize)
    cparams = {"codec": blosc2.Codec.ZSTD, "clevel": 3, "nthreads": 1}
    blosc2.asarray(array, urlpath=str(path), mode="w", chunks=chunks, blocks=blocks, cparams=cparams)


def open_array(path: Path | str):
    """Open a .b2nd file read-only and memory-mapped; slicing it returns numpy arrays."""
    import blosc2  # only when arrays are written or read: importing this module stays light

    try:
        return blosc2.open(str(path), mode="r", mmap_mode="r")
    except TypeError:  # pragma: no cover - older blosc2 without mmap support
        return blosc2.open(str(path), mode="r")


def write_case(view_dir: Path | str, case_id: str, data: np.ndarray, seg: np.ndarray | None,
               properties: CaseProperties, patch_size: Sequence[int] | None = None) -> None:
    """Store one case atomically.

    Any old properties file is removed first (so a half-rewritten case never looks finished); then every file is
    written completely under a temporary name, and only then are they renamed to their final names, image and
    segmentation first and the properties file last. An interruption while writing leaves no file under a final
    name (temporaries are deleted, or removed by the next run); a case counts as finished only once its
    properties file exists.
    """
    view_dir = Path(view_dir)
    image_path, seg_path, props_path = case_paths(view_dir, case_id)
    view_dir.mkdir(parents=True, exist_ok=True)
    props_path.unlink(missing_ok=True)
    temps: list[tuple[Path, Path]] = []
    current = image_path  # the file being written, for the message when that fails
    try:
        tmp = _tmp_path(image_path)
        temps.append((tmp, image_path))
        _write_b2nd(tmp, data.astype(np.float32, copy=False), patch_size)
        if seg is not None:
            current = seg_path
            tmp = _tmp_path(seg_path)
            temps.append((tmp, seg_path))
            _write_b2nd(tmp, seg, patch_size)
        current = props_path
        tmp = _tmp_path(props_path)
        temps.append((tmp, props_path))
        properties.save(tmp)
        if seg is None:
            seg_path.unlink(missing_ok=True)
        for tmp, final in temps:
            current = final
            os.replace(tmp, final)
    except (OSError, RuntimeError) as e:  # a full disk (blosc2 raises RuntimeError): name the case's file
        reason = (e.strerror if isinstance(e, OSError) and e.strerror
                  else f"write failed, the disk may be full ({first_line(e)})")
        raise OSError(getattr(e, "errno", None) or errno.EIO, reason, str(current)) from e
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def remove_case(view_dir: Path | str, case_id: str) -> None:
    for p in reversed(case_paths(view_dir, case_id)):  # properties first
        p.unlink(missing_ok=True)


def remove_temporaries(view_dir: Path | str) -> int:
    """Delete temporary files an interrupted run left behind; returns how many."""
    view_dir = Path(view_dir)
    if not view_dir.is_dir():
        return 0
    n = 0
    for p in view_dir.iterdir():
        if p.name.startswith(".") and TMP_MARKER in p.name:
            try:
                if p.is_dir():
                    continue
                p.unlink()
                n += 1
            except FileNotFoundError:
                pass
    return n


class PreprocessedDataset:
    """Read access to the preprocessed cases of one view.

    ``load(case_id)`` returns ``(data, seg, properties)``: ``data`` and ``seg`` are read-only blosc2 arrays of
    shape (1, z, y, x) (``seg`` None for unlabelled scans); index them like numpy arrays (``data[:, a:b, c:d,
    e:f]``) to decompress only that region, or ``data[...]`` for all of it. ``properties`` is a
    ``CaseProperties``.
    """

    def __init__(self, preprocessed_dir: Path | str, view: str):
        self.root = Path(preprocessed_dir)
        self.view = view
        self.folder = self.root / view
        if not self.folder.is_dir():
            raise UserInputError(f"{self.folder}: no preprocessed data for view {view!r} (run `orthodiff preprocess`)")
        self._props: dict[str, CaseProperties] = {}

    def _all_ids(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json") if not p.name.startswith("."))

    def properties(self, case_id: str) -> CaseProperties:
        if case_id not in self._props:
            self._props[case_id] = CaseProperties.load(case_paths(self.folder, case_id)[2])
        return self._props[case_id]

    def case_ids(self, subset: str | None = None, labelled: bool | None = None) -> list[str]:
        """Sorted ids of finished cases, optionally only one subset (train | unlabeled) and/or only those with
        (labelled=True) or without (False) a segmentation."""
        out = []
        for cid in self._all_ids():
            if subset is None and labelled is None:
                out.append(cid)
                continue
            p = self.properties(cid)
            if subset is not None and p.subset != subset:
                continue
            if labelled is not None and p.has_seg != labelled:
                continue
            out.append(cid)
        return out

    def load(self, case_id: str):
        props = self.properties(case_id)
        image_path, seg_path, _ = case_paths(self.folder, case_id)
        data = open_array(image_path)
        seg = open_array(seg_path) if props.has_seg else None
        return data, seg, props

    def load_numpy(self, case_id: str) -> tuple[np.ndarray, np.ndarray | None, CaseProperties]:
        """Like ``load`` but fully decompressed into numpy arrays."""
        data, seg, props = self.load(case_id)
        return np.asarray(data[...]), (None if seg is None else np.asarray(seg[...])), props

    def __len__(self) -> int:
        return len(self._all_ids())

    def __contains__(self, case_id: str) -> bool:
        return case_paths(self.folder, case_id)[2].is_file()

