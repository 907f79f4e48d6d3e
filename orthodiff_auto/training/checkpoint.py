"""Checkpoints: plain containers (tensors, numbers, strings, lists, dicts) that load with weights_only=True."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.utils.atomic import atomic_path


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    """Atomic: a kill during the write leaves the previous checkpoint intact.

    Written through a file object: given a path, torch names the archive inside the file after it, so the bytes
    would depend on the temporary name and two saves of the same payload would differ (and so would the sha256
    that runs record of the encoder they start from)."""
    with atomic_path(path, write_errors=(RuntimeError,)) as tmp, open(tmp, "wb") as f:
        out = _KeepsWriteError(f)
        try:
            torch.save(payload, out)
        except RuntimeError:
            if out.error is not None:  # a full disk: its reason, not torch's "unexpected pos"
                raise out.error from None
            raise


class _KeepsWriteError:
    """A file that keeps its first failed write: torch reports it as a RuntimeError without the reason."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """The checkpoint's payload (``weights_only``); ``mmap``: tensors are mapped, not read, until used (cheap
    when only the settings are wanted)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises several types for corrupt, truncated or unsafe files
        message = str(e)
        if isinstance(e, pickle.UnpicklingError) and "weights only load failed" in message.lower():
            # weights_only refused a pickled object (a class, a function): this product never runs one, so the
            # message stops here instead of repeating torch's advice to reload with weights_only=False
            what = _refused_global(message)
            raise UserInputError(f"{path}: not a plain-weights checkpoint (it holds a pickled Python object"
                                 f"{f' ({what})' if what else ''}); refused, nothing was loaded") from None
        first_line = message.splitlines()[0] if message else ""
        raise UserInputError(f"{path}: cannot load checkpoint ({type(e).__name__}: {first_line})") from None


def _refused_global(message: str) -> str | None:
    """The name of the object torch's weights-only unpickler refused (``GLOBAL module.name``), when it says."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return match.group(1) if match else None


def refuse_to_overwrite(out: Path, resume: bool) -> None:
    """A run folder holding a finished or an interrupted run is only touched with ``--continue`` (``resume``)."""
    if resume:
        return
    if (out / "checkpoint_final.pt").is_file():
        raise UserInputError(f"{out}: this fold is already trained; use --continue to finish it or delete the folder")
    if (out / "checkpoint_latest.pt").is_file():
        raise UserInputError(f"{out}: a previous run left checkpoints; use --continue to resume it or delete the folder")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
