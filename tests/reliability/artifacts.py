"""What a run left in a folder: is every final-named file complete, and what is its content's digest.

Two runs are "identical" when the digests of their folders are equal file for file. A digest is taken of the
content, not of the bytes, and leaves out what legitimately differs between two correct runs (``EXCLUDED``):
- the content of ``training_log.txt`` (an appended log; it holds timings, and a resumed run adds its "resumed
  from" line), of ``progress.png`` (it plots the epoch times) and of ``prediction_provenance.json`` (a dated
  record per run): compared by presence only;
- the timing fields of checkpoints and summaries (``TIMING_KEYS``): wall-clock measurements;
- absolute paths of the run's own folders: the caller names them (``aliases``) and they are replaced by a
  placeholder (summaries record e.g. the encoder checkpoint they were trained from).
File names starting with "." are temporaries, the lock file or the findings parts of predict_folder; they are
not final artifacts and are not compared (``check_complete`` still checks that a temporary never has a final
name).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

EXCLUDED = {"training_log.txt": "appended log with timings and resume notes",
            "progress.png": "plots the epoch times",
            "prediction_provenance.json": "a dated record per run: a resumed run adds its own"}
TIMING_KEYS = frozenset({"epoch_time_s", "data_wait_s", "compute_s", "timing", "seconds_per_iteration_median",
                         "seconds", "elapsed_s", "time_s"})


def final_files(root: Path) -> list[Path]:
    """Files under ``root`` whose names (and folders' names) do not start with "."."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def check_complete(root: Path) -> list[str]:
    """One line per final-named file that cannot be read back completely (empty when all are complete)."""
    problems = []
    for path in final_files(root):
        try:
            _load(path)
        except Exception as e:  # any reader error means a partial or corrupt file under a final name
            problems.append(f"{path.relative_to(root)}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return problems


def digest_tree(root: Path, aliases: dict[str, str] | None = None) -> dict[str, str]:
    """{relative path: content digest} of the final files, without timing fields ("present" for ``EXCLUDED``
    files); ``aliases`` maps absolute paths to the placeholders that replace them in file contents."""
    root = Path(root)
    aliases = {str(Path(k)): v for k, v in (aliases or {}).items()}
    out = {}
    for path in final_files(root):
        if path.name in EXCLUDED:  # compared by presence only
            out[str(path.relative_to(root))] = "present"
            continue
        value = _normalise(_load(path), aliases)
        out[str(path.relative_to(root))] = hashlib.sha256(_canonical(value)).hexdigest()[:16]
    return out


def differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """What differs between two digests, one line per file."""
    lines = [f"only in the first: {k}" for k in sorted(set(a) - set(b))]
    lines += [f"only in the second: {k}" for k in sorted(set(b) - set(a))]
    lines += [f"content differs: {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    return lines


# ---------------------------------------------------------------- readers, one per kind of final artifact

def _load(path: Path) -> Any:
    name = path.name
    if name.endswith(".json"):
        return json.loads(path.read_text())
    if name.endswith(".pt"):
        import torch  # only where checkpoints are compared

        return torch.load(path, map_location="cpu", weights_only=True)
    if name.endswith(".b2nd"):
        import blosc2  # only where preprocessed arrays are compared

        return np.asarray(blosc2.open(str(path), mode="r")[...])
    if name.endswith((".nii.gz", ".nii", ".mha", ".nrrd")):
        from orthodiff_auto.data.image_io import read_image

        array, geometry = read_image(path, dtype=None)
        return {"array": array, "geometry": geometry.to_dict()}
    if name.endswith(".png"):
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            return np.asarray(im)
    if name.endswith(".csv"):
        import pandas as pd

        return pd.read_csv(path).to_dict(orient="list")
    return path.read_bytes()  # text logs and anything else: complete by construction, compared as bytes


def _normalise(value: Any, aliases: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {str(k): _normalise(v, aliases) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, (list, tuple)):
        return [_normalise(v, aliases) for v in value]
    if isinstance(value, str):
        for path, placeholder in sorted(aliases.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(path, placeholder)
        return value
    if isinstance(value, bytes):
        text = value
        for path, placeholder in sorted(aliases.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(path.encode(), placeholder.encode())
        return text
    return value


def _canonical(value: Any) -> bytes:
    """Bytes that identify ``value`` exactly (tensors and arrays by dtype, shape and raw data)."""
    h = hashlib.sha256()

    def feed(v: Any) -> None:
        if isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v):
                h.update(k.encode() + b":")
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, list):
            h.update(b"[")
            for x in v:
                feed(x)
            h.update(b"]")
        elif hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor
            feed(v.detach().cpu().contiguous().numpy())
        elif isinstance(v, np.ndarray):
            h.update(f"nd{v.dtype}{v.shape}".encode())
            h.update(np.ascontiguousarray(v).tobytes())
        elif isinstance(v, float) and math.isnan(v):
            h.update(b"nan")
        elif isinstance(v, bytes):
            h.update(b"b" + v)
        else:
            h.update(repr(v).encode())

    feed(value)
    return h.digest()
