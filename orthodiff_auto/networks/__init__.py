"""Networks built from an ``ArchitectureSpec`` (``spec``, the architecture part of the plans):
``build_segmentation_network`` (dna PlainConvUNet) and ``build_encoder`` (its encoder).

Importing this package does not import torch; the builders do, when called.
"""

from orthodiff_auto.networks.builder import build_encoder, build_segmentation_network
from orthodiff_auto.networks.registry import get_network_class, network_class_names, register_network
from orthodiff_auto.networks.spec import ArchitectureSpec

__all__ = [
    "ArchitectureSpec",
    "build_encoder",
    "build_segmentation_network",
    "get_network_class",
    "network_class_names",
    "register_network",
]
