"""Parse ``--budget``: ``gpu:<GB>``, ``gpu`` (the detected GPU's memory, else 8 GB) or ``cpu``.

No value at all means ``gpu``. The budget and the memory estimate it led to are recorded in the plans.
"""

from __future__ import annotations

import re

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.subplans import Budget

DEFAULT_GPU_GB = 8.0  # nnU-Net's default GPU memory target
CPU_BUDGET_GB = 0.25  # memory-estimate target of the cpu preset (see plans.planner.CPU_PRESET)

_GPU = re.compile(r"^gpu(?::(?P<gb>[0-9]*\.?[0-9]+)\s*(?:gb|g)?)?$", re.IGNORECASE)


def detected_gpu_memory_gb() -> float | None:
    """Total memory of CUDA device 0 in GB (GiB), or None without a usable GPU."""
    try:
        import torch  # only when the GPU is asked about: planning imports no torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_properties(0).total_memory / 1024**3
    except Exception:  # pragma: no cover - broken CUDA setups behave like no GPU
        return None


def parse_budget(text: str | None) -> Budget:
    """``"gpu:24"`` -> 24 GB; ``"gpu"``/None -> detected GPU memory or 8 GB; ``"cpu"`` -> the cpu preset."""
    if text is None or text.strip() == "":
        text = "gpu"
    t = text.strip().lower()
    if t == "cpu":
        return Budget("cpu", CPU_BUDGET_GB, "preset")
    m = _GPU.match(t)
    if not m:
        raise UserInputError(f"--budget: expected 'gpu:<GB>', 'gpu' or 'cpu', got {text!r}")
    if m.group("gb") is not None:
        gb = float(m.group("gb"))
        if not gb > 0:
            raise UserInputError(f"--budget: GPU memory must be > 0 GB, got {text!r}")
        return Budget("gpu", gb, "user")
    detected = detected_gpu_memory_gb()
    if detected is not None:
        return Budget("gpu", round(detected, 1), "detected")
    return Budget("gpu", DEFAULT_GPU_GB, "default")
