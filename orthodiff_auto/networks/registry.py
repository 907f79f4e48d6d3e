"""Network classes a plan may name, looked up by a short name.

Plans store ``ArchitectureSpec.network_class`` as a plain string (e.g. ``"PlainConvUNet"``) so that a plan
file never holds import paths. Only dynamic-network-architectures' U-Net module is imported here: its other
modules pull in timm/torchvision, which this project never imports.
"""

from __future__ import annotations

from typing import Callable

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks import orthodiffusion

_REGISTRY: dict[str, Callable[[], type]] = {}


def _plain_conv_unet() -> type:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet  # imports torch, only when built

    return PlainConvUNet


_REGISTRY["PlainConvUNet"] = _plain_conv_unet


def _orthodiffusion_unet() -> type:
    """The OrthoDiffusion authors' diffusion U-Net: its encoder with a segmentation decoder."""
    return orthodiffusion.OrthoDiffusionSegmentationNet  # the package loads it (and torch) on first use


_REGISTRY["OrthoDiffusionUNet"] = _orthodiffusion_unet


def register_network(name: str, loader: Callable[[], type]) -> None:
    """Add a network class under ``name``; ``loader`` returns the class (imported lazily)."""
    _REGISTRY[name] = loader


def network_class_names() -> list[str]:
    return sorted(_REGISTRY)


def get_network_class(name: str) -> type:
    """The class registered as ``name``; UserInputError (exit 2) for an unknown name, e.g. in an edited plan."""
    try:
        loader = _REGISTRY[name]
    except KeyError:
        raise UserInputError(f"unknown network class {name!r}; known: {network_class_names()}") from None
    return loader()
