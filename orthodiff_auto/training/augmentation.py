"""Data augmentation with batchgenerators, nnU-Net's proven recipe, aware of anisotropy.

For strongly anisotropic patches ("dummy 2D") spatial transforms act in-plane only: the through-plane
axis is folded into the channel axis, rotated/scaled in 2D, and unfolded again; low-resolution
simulation leaves the through-plane axis alone. Randomness comes from numpy's global generator, which
the batch datasets seed per batch, so a batch is reproducible from (seed, rank, iteration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from batchgenerators.augmentations.utils import rotate_coords_2d, rotate_coords_3d
from batchgenerators.transforms.abstract_transforms import AbstractTransform, Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform
from batchgenerators.transforms.utility_transforms import RemoveLabelTransform

# nnU-Net's threshold (the planner's): an axis this much coarser than the others makes the patch "dummy 2D"
from orthodiff_auto.plans.planner import ANISOTROPY_THRESHOLD



@dataclass(frozen=True)
class AugmentationParams:
    rotation_degrees_3d: float = 30.0
    rotation_degrees_2d: float = 180.0
    scale_range: tuple[float, float] = (0.7, 1.4)
    p_rotation: float = 0.2
    p_scale: float = 0.2
    p_noise: float = 0.1
    p_blur: float = 0.2
    p_brightness: float = 0.15
    p_contrast: float = 0.15
    p_low_resolution: float = 0.25
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    mirror: bool = True


def through_plane_axis_for_dummy_2d(spacing: Sequence[float], patch_size: Sequence[int]) -> int | None:
    """The spatial axis to keep out of spatial augmentation, or None when the data is near-isotropic."""
    spacing = np.asarray(spacing, dtype=float)
    axis = int(np.argmax(spacing))
    others = np.delete(spacing, axis)
    if spacing[axis] / others.max() > ANISOTROPY_THRESHOLD or patch_size[axis] * ANISOTROPY_THRESHOLD < min(np.delete(np.asarray(patch_size), axis)):
        return axis
    return None


def rotated_patch_size(final_patch: Sequence[int], dummy_2d_axis: int | None, params: AugmentationParams) -> tuple[int, ...]:
    """The larger patch to sample so rotation and down-scaling never pull in padding (nnU-Net's rule).

    The bounding box of the final patch rotated by the largest angle about each axis, divided by the
    smallest scale factor; the through-plane axis of a dummy-2D patch is left as it is.
    """
    final = np.asarray(final_patch, dtype=float)
    if dummy_2d_axis is not None:
        inplane = [a for a in range(len(final)) if a != dummy_2d_axis]
        angle = min(np.pi / 2, np.deg2rad(params.rotation_degrees_2d))
        grown = np.maximum(np.abs(rotate_coords_2d(final[inplane], angle)), final[inplane])
        out = final.copy()
        out[inplane] = grown / min(params.scale_range)
    else:
        angle = min(np.pi / 2, np.deg2rad(params.rotation_degrees_3d))
        out = final.copy()
        for rot in ((angle, 0, 0), (0, angle, 0), (0, 0, angle)):
            out = np.maximum(out, np.abs(rotate_coords_3d(final, *rot)))
        out = out / min(params.scale_range)
    return tuple(int(np.ceil(v)) for v in out)


class _FoldAxisIntoChannels(AbstractTransform):
    """(B, C, *spatial) -> (B, C * n_axis, *spatial without axis) so 2D transforms act in-plane."""

    def __init__(self, axis: int, keys=("data", "seg")):
        self.axis, self.keys = axis, keys

    def __call__(self, **d):
        for k in self.keys:
            if k in d and d[k] is not None:
                a = np.moveaxis(d[k], 2 + self.axis, 2)
                d[f"_{k}_shape"] = a.shape
                d[k] = a.reshape(a.shape[0], a.shape[1] * a.shape[2], *a.shape[3:])
        return d


class _UnfoldAxisFromChannels(AbstractTransform):
    def __init__(self, axis: int, keys=("data", "seg")):
        self.axis, self.keys = axis, keys

    def __call__(self, **d):
        for k in self.keys:
            if k in d and d[k] is not None:
                b, c, n = d.pop(f"_{k}_shape")[:3]
                a = d[k].reshape(b, c, n, *d[k].shape[2:])
                d[k] = np.moveaxis(a, 2, 2 + self.axis)
        return d


def build_training_transforms(
    patch_size: Sequence[int], dummy_2d_axis: int | None, params: AugmentationParams = AugmentationParams(),
    probability_scale: float = 1.0, with_seg: bool = True,
) -> Compose:
    """The training augmentation pipeline; input patches come at ``rotated_patch_size``, output at ``patch_size``."""
    p = probability_scale
    ndim = len(patch_size)
    transforms: list[AbstractTransform] = []
    if dummy_2d_axis is not None:
        transforms.append(_FoldAxisIntoChannels(dummy_2d_axis))
        spatial_patch = [s for a, s in enumerate(patch_size) if a != dummy_2d_axis]
        angle = np.deg2rad(params.rotation_degrees_2d)
        angles = dict(angle_x=(-angle, angle), angle_y=(0, 0), angle_z=(0, 0))
    else:
        spatial_patch = list(patch_size)
        angle = np.deg2rad(params.rotation_degrees_3d)
        angles = dict(angle_x=(-angle, angle), angle_y=(-angle, angle), angle_z=(-angle, angle))
    transforms.append(
        SpatialTransform(
            spatial_patch, patch_center_dist_from_border=None, do_elastic_deform=False,
            do_rotation=p > 0, **angles, p_rot_per_axis=1, do_scale=p > 0, scale=params.scale_range,
            border_mode_data="constant", border_cval_data=0, order_data=3,
            border_mode_seg="constant", border_cval_seg=-1, order_seg=1, random_crop=False,
            p_el_per_sample=0, p_scale_per_sample=min(1.0, params.p_scale * p),
            p_rot_per_sample=min(1.0, params.p_rotation * p), independent_scale_for_each_axis=False,
        )
    )
    if dummy_2d_axis is not None:
        transforms.append(_UnfoldAxisFromChannels(dummy_2d_axis))
    if p > 0:
        transforms += [
            GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_sample=min(1.0, params.p_noise * p)),
            GaussianBlurTransform((0.5, 1.0), different_sigma_per_channel=True, p_per_sample=min(1.0, params.p_blur * p),
                                  p_per_channel=0.5),
            BrightnessMultiplicativeTransform(multiplier_range=(0.75, 1.25), p_per_sample=min(1.0, params.p_brightness * p)),
            ContrastAugmentationTransform(p_per_sample=min(1.0, params.p_contrast * p)),
            SimulateLowResolutionTransform(zoom_range=(0.5, 1), per_channel=True, p_per_channel=0.5, order_downsample=0,
                                           order_upsample=3, p_per_sample=min(1.0, params.p_low_resolution * p),
                                           ignore_axes=(dummy_2d_axis,) if dummy_2d_axis is not None else None),
            GammaTransform((0.7, 1.5), invert_image=True, per_channel=True, retain_stats=True,
                           p_per_sample=min(1.0, params.p_gamma_inverted * p)),
            GammaTransform((0.7, 1.5), invert_image=False, per_channel=True, retain_stats=True,
                           p_per_sample=min(1.0, params.p_gamma * p)),
        ]
        if params.mirror:
            transforms.append(MirrorTransform(tuple(range(ndim))))
    if with_seg:
        transforms.append(RemoveLabelTransform(-1, 0))
    return Compose(transforms)
