"""Checkpoints: plain containers (tensors, numbers, strings, lists, dicts) that load with weights_only=True."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.utils.atomic import atomic_path


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    """Atomic: a kill during the write leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise UserInputError(f"{path}: cannot load checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None


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
