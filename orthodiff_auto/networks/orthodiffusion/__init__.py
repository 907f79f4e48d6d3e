"""The OrthoDiffusion authors' 3D diffusion U-Net, written for this project so that their checkpoints load key
for key: the blocks (``blocks``), the network and its hyper-parameters (``unet``), its encoder and a segmentation
network on it (``encoder``: the registry's "OrthoDiffusionUNet"), hyper-parameters read off a state dict
(``state``).

Names are imported lazily: the registry imports this package when ``networks`` is imported, which must not
import torch (the planner and the preprocessing workers never build a network).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "OrthoDiffusionEncoder": "orthodiff_auto.networks.orthodiffusion.encoder",
    "OrthoDiffusionSegmentationNet": "orthodiff_auto.networks.orthodiffusion.encoder",
    "OrthoDiffusionHyperParameters": "orthodiff_auto.networks.orthodiffusion.unet",
    "OrthoDiffusionUNet": "orthodiff_auto.networks.orthodiffusion.unet",
    "infer_hyper_parameters": "orthodiff_auto.networks.orthodiffusion.state",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
