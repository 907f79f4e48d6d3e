"""U-Net topology from spacing and patch size, following nnU-Net's rules.

Stages are added while some axis can still be pooled. At each stage an axis is pooled (stride 2) when
- its feature map is at least ``2 * min_feature_map_size`` voxels (so it stays >= min size after pooling), and
- its current spacing is within a factor 2 of the finest current spacing among those axes (an anisotropic,
  coarse axis waits until the others have been pooled enough to catch up);
when only one axis qualifies it must be at least ``3 * min_feature_map_size`` voxels.
Kernels are 1 along an axis while its spacing is >= 2x the finest spacing (in-plane-only 1x3x3 convolutions for
thick-slice data, as nnU-Net does), and 3 once it is within a factor 2 (then it stays 3). The bottleneck uses 3s.
The patch is padded up to a multiple of ``2 ** pools`` per axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Topology:
    pool_per_axis: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]  # one per stage, strides[0] all ones
    kernel_sizes: tuple[tuple[int, ...], ...]  # one per stage
    patch_size: tuple[int, ...]  # padded to a multiple of shape_divisor
    shape_divisor: tuple[int, ...]

    @property
    def n_stages(self) -> int:
        return len(self.strides)


def pad_to_multiple(shape: Sequence[int], divisor: Sequence[int]) -> tuple[int, ...]:
    """Round each size up to a multiple of its divisor (sizes already divisible stay)."""
    return tuple(int(-(-int(s) // int(d)) * int(d)) for s, d in zip(shape, divisor))


def get_topology(spacing: Sequence[float], patch_size: Sequence[int], min_feature_map_size: int = 4,
                 max_pools: int = 999) -> Topology:
    """Per-stage strides and kernels for ``patch_size`` at ``spacing`` (see module docstring)."""
    dim = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = [float(s) for s in patch_size]
    pools = [0] * dim
    kernel = [1] * dim
    strides: list[tuple[int, ...]] = [tuple([1] * dim)]
    kernels: list[tuple[int, ...]] = []
    while True:
        candidates = [a for a in range(dim) if cur_size[a] >= 2 * min_feature_map_size and pools[a] < max_pools]
        if candidates:
            finest = min(cur_spacing[a] for a in candidates)
            candidates = [a for a in candidates if cur_spacing[a] / finest < 2]
        if len(candidates) == 1 and cur_size[candidates[0]] < 3 * min_feature_map_size:
            candidates = []
        if not candidates:
            break
        finest_all = min(cur_spacing)
        for a in range(dim):
            if kernel[a] != 3 and cur_spacing[a] / finest_all < 2:
                kernel[a] = 3
        kernels.append(tuple(kernel))
        stride = [1] * dim
        for a in candidates:
            stride[a] = 2
            pools[a] += 1
            cur_spacing[a] *= 2
            cur_size[a] = float(np.ceil(cur_size[a] / 2))
        strides.append(tuple(stride))
    kernels.append(tuple([3] * dim))
    divisor = tuple(2**p for p in pools)
    return Topology(tuple(pools), tuple(strides), tuple(kernels), pad_to_multiple(patch_size, divisor), divisor)
