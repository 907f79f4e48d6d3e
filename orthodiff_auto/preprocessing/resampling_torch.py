"""The resampling of ``resampling.py`` for tensors on any device, through ``torch.nn.functional.interpolate``.

Orders 0 (nearest) and 1 (linear) only, the orders of probability and logit maps: on a GPU the network's output
is taken back to the scan's grid where it was computed, and only the label map travels to the host. The same
convention as the numpy version: pixel centres aligned (``align_corners=False``), edges clamped, no
anti-aliasing, the orders per axis from ``resampling.axis_orders`` (anisotropic data: nearest along the coarse
axis). Torch's linear modes clamp at the edges as the numpy version does, so both agree to float32 rounding;
nearest takes the numpy version's indices (torch's float32 "nearest-exact" breaks exact ties the other way).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from orthodiff_auto.plans.subplans import ResamplingPlan
from orthodiff_auto.preprocessing.resampling import axis_orders, nearest_indices

_ORDERS = (0, 1)


def _resample_axes(x: torch.Tensor, new_shape: Sequence[int], orders: Sequence[int]) -> torch.Tensor:
    """(C, z, y, x) -> (C, *new_shape), each axis resized with its own order."""
    if all(o == 1 for o in orders):  # one call for the three axes
        return F.interpolate(x[None], size=tuple(new_shape), mode="trilinear", align_corners=False)[0]
    for axis in sorted(range(3), key=lambda a: new_shape[a] / x.shape[a + 1]):  # shrinking axes first
        old, new = x.shape[axis + 1], int(new_shape[axis])
        if old == new:
            continue
        if orders[axis] == 0:  # the numpy version's indices (float64), so ties fall the same way
            index = torch.as_tensor(nearest_indices(old, new), device=x.device)
            x = x.index_select(axis + 1, index)
            continue
        moved = x.movedim(axis + 1, -1)
        lead = moved.shape[:-1]
        flat = F.interpolate(moved.reshape(1, -1, old), size=new, mode="linear", align_corners=False)
        x = flat.reshape(*lead, new).movedim(-1, axis + 1)
    return x


def resample_tensor(x: torch.Tensor, new_shape: Sequence[int], current_spacing: Sequence[float],
                    new_spacing: Sequence[float], plan: ResamplingPlan, order: int) -> torch.Tensor:
    """Resample a (C, z, y, x) floating-point tensor to ``new_shape`` on its own device (``order`` 0 or 1 in plane;
    the coarse axis as ``plan`` says). ValueError for other orders: those stay with the numpy version."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(x.shape[1:]) == new_shape:
        return x
    orders = axis_orders(current_spacing, new_spacing, order, plan)
    if any(o not in _ORDERS for o in orders):
        raise ValueError(f"resample_tensor handles orders 0 and 1, got {orders}")
    return _resample_axes(x, new_shape, orders)


def supports(plan: ResamplingPlan, order: int) -> bool:
    """Whether ``resample_tensor`` can take maps resampled with ``order`` under ``plan``."""
    return order in _ORDERS and (not plan.separate_through_plane or plan.through_plane_order in _ORDERS)


__all__ = ["resample_tensor", "supports"]
