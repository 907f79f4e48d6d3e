"""The device a run computes on, and mixed precision there."""

from __future__ import annotations

import contextlib

import torch

from orthodiff_auto.errors import UserInputError


def resolve_device(requested: str | None, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """"auto" or None (CUDA when available, else the CPU), "cpu", "cuda" or "cuda:N".

    A CUDA device is ``cuda:<local_rank>`` unless a number is given outside torchrun; under torchrun
    (``distributed``) it is always the process's own GPU. UserInputError for an unknown name, or for CUDA on a
    machine without a CUDA device."""
    name = (requested or "auto").strip().lower()
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name not in ("auto", "cuda") and not name.startswith("cuda:"):
        raise UserInputError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserInputError(f"--device {name}: no CUDA device available")
    if ":" in name and not distributed:
        return torch.device(name)
    return torch.device("cuda", local_rank)


def autocast_for(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA where supported (fp16 otherwise); nothing on the CPU."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


__all__ = ["autocast_for", "resolve_device"]
