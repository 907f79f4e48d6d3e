"""Networks built from plans: ``build_segmentation_network`` (dna PlainConvUNet) and ``build_encoder`` (its encoder).

Importing this package does not import torch; the builders do, when called.
"""

from orthodiff_auto.networks.builder import build_encoder, build_segmentation_network
from orthodiff_auto.networks.registry import get_network_class, network_class_names, register_network

__all__ = [
    "build_encoder",
    "build_segmentation_network",
    "get_network_class",
    "network_class_names",
    "register_network",
]
