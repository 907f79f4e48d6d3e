"""orthodiff_auto: self-configuring musculoskeletal MRI segmentation and diagnosis on diffusion pretraining.

The Python API: ``from orthodiff_auto import Predictor`` (documentation/python_api.md). Its names are loaded on
first use, so ``import orthodiff_auto`` (and ``orthodiff --help``) imports no torch, SimpleITK or numpy.
"""

import importlib
import os

# Before torch is imported (it reads this once): OpenMP threads that wait passively instead of spinning.
# On a CPU shared with other processes (data-loader workers, parallel runs) spinning threads made a training
# step 11x slower (documentation/benchmarks.md); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.4.0"

# The public facade: the names a user imports from the package root, each from the stage that owns it.
_PUBLIC_EXPORTS = {
    "Predictor": "orthodiff_auto.inference.predictor",
    "Prediction": "orthodiff_auto.inference.results",
    "Finding": "orthodiff_auto.inference.results",
}

__all__ = ["__version__", *sorted(_PUBLIC_EXPORTS)]


def __getattr__(name: str):
    if name in _PUBLIC_EXPORTS:
        return getattr(importlib.import_module(_PUBLIC_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC_EXPORTS))
