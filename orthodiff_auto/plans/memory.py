"""Memory estimate of a network from dna's own feature-map count.

dna's ``compute_conv_feature_map_size(patch)`` counts the voxels of every feature map a forward pass stores
(convolution outputs of encoder and decoder, transposed-convolution outputs, segmentation heads), for one
sample. Memory for training is taken proportional to that count times the batch size, calibrated as nnU-Net
calibrates it: a count of ``REFERENCE_FEATURE_MAP_3D`` (nnU-Net's ``UNet_reference_val_3d`` = 560e6) at batch
size ``REFERENCE_BATCH_SIZE`` (2) corresponds to ``REFERENCE_GB`` (8 GB), hence

    memory_gb = feature_map_count(patch) * batch_size * 8 / (2 * 560e6)

The calibration already covers weights, optimizer state, mixed precision and the CUDA context as nnU-Net
measured them; the number is a planning estimate, not a measurement. It is non-decreasing in every patch axis
and strictly increasing in batch size for a fixed architecture. Networks are instantiated on PyTorch's meta
device (no memory, no initialisation) and counts are cached.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from orthodiff_auto.networks.builder import build_encoder, build_segmentation_network
from orthodiff_auto.networks.spec import ArchitectureSpec

REFERENCE_FEATURE_MAP_3D = 560_000_000
REFERENCE_FEATURE_MAP_2D = 85_000_000
REFERENCE_BATCH_SIZE = 2
REFERENCE_BATCH_SIZE_2D = 12
REFERENCE_GB = 8.0


def gb_per_feature_voxel(conv_dim: int = 3) -> float:
    """GB per feature-map voxel per sample: the reference count at the reference batch size is REFERENCE_GB."""
    if conv_dim == 3:
        return REFERENCE_GB / (REFERENCE_FEATURE_MAP_3D * REFERENCE_BATCH_SIZE)
    return REFERENCE_GB / (REFERENCE_FEATURE_MAP_2D * REFERENCE_BATCH_SIZE_2D)


@lru_cache(maxsize=4096)
def _unet_count(spec: ArchitectureSpec, patch: tuple[int, ...], in_ch: int, n_cls: int, ds: bool) -> int:
    import torch  # only when a network is measured: importing the planner does not import torch

    with torch.device("meta"):
        net = build_segmentation_network(spec, in_ch, n_cls, deep_supervision=ds, initialize=False)
    return int(net.compute_conv_feature_map_size(list(patch)))


@lru_cache(maxsize=4096)
def _encoder_count(spec: ArchitectureSpec, size: tuple[int, ...], in_ch: int) -> int:
    import torch  # only when a network is measured: importing the planner does not import torch

    with torch.device("meta"):
        enc = build_encoder(spec, in_ch, return_skips=False, initialize=False)
    return int(enc.compute_conv_feature_map_size(list(size)))


def feature_map_count(arch: ArchitectureSpec, patch_size: Sequence[int], num_input_channels: int = 1,
                      num_classes: int = 2, deep_supervision: bool = True) -> int:
    """dna's ``PlainConvUNet.compute_conv_feature_map_size`` for one sample."""
    return _unet_count(arch, tuple(int(p) for p in patch_size), int(num_input_channels), int(num_classes),
                       bool(deep_supervision))


def encoder_feature_map_count(arch: ArchitectureSpec, input_size: Sequence[int], num_input_channels: int = 1) -> int:
    """dna's ``PlainConvEncoder.compute_conv_feature_map_size`` for one sample (classifier: encoder only)."""
    return _encoder_count(arch, tuple(int(p) for p in input_size), int(num_input_channels))


def count_to_gb(count: int, batch_size: int, conv_dim: int = 3) -> float:
    """Feature-map count of one sample -> GB for ``batch_size`` samples (nnU-Net calibration)."""
    return float(count) * int(batch_size) * gb_per_feature_voxel(conv_dim)


