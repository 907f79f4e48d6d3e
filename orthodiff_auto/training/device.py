"""The device a run computes on, and mixed precision there."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SpeedOptions:
    """Speed settings that leave the arithmetic's meaning alone, each off by default until measured on the card it
    is meant for (documentation/benchmarks.md): cuDNN's autotuner (``cudnn_benchmark``: tries the convolution
    algorithms on the first batch of each shape, then keeps the fastest), ``channels_last`` (channels_last_3d
    weights and activations; tensor cores prefer it) and ``compile`` (``torch.compile``: the first batches are
    slow while it compiles). All three matter on CUDA only; on the CPU they are accepted and ignored, so the
    same command runs on any machine."""

    cudnn_benchmark: bool = False
    channels_last: bool = False
    compile: bool = False


def apply_speed_options(model: torch.nn.Module, device: torch.device, options: SpeedOptions) -> torch.nn.Module:
    """``model`` (already on ``device``) with ``options`` applied; the returned module is the one to call (a
    compiled wrapper when ``compile``: checkpoints still save the module inside, ``checkpoint.unwrap``)."""
    if device.type != "cuda":
        return model
    if options.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if options.compile:
        model = torch.compile(model)
    return model


__all__ = ["SpeedOptions", "apply_speed_options", "autocast_for", "resolve_device"]
