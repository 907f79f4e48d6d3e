"""Intensity normalisation (see ``plans.schema.NormalizationPlan`` for the schemes).

MRI intensities have no absolute scale, so each image is z-scored on its own ("zscore"): mean and standard
deviation over its non-zero region (holes filled) when the plan says ``use_mask_for_norm`` (nnU-Net's rule:
cropping to the non-zero region removed more than a quarter of the median image, i.e. there is a real zero
background), otherwise over the whole cropped image. CT ("ct") uses the dataset's foreground statistics:
clip to [p005, p995], then subtract the foreground mean and divide by its std.
"""

from __future__ import annotations

import numpy as np

from orthodiff_auto.plans.subplans import NormalizationPlan

_EPS = 1e-8


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """Non-zero voxels with enclosed holes filled (nnU-Net's mask for normalisation)."""
    mask = image != 0
    if mask.all():
        return mask
    from scipy import ndimage  # only for masks with holes: preprocessing workers start faster

    return ndimage.binary_fill_holes(mask)


def normalize_image(image: np.ndarray, plan: NormalizationPlan) -> tuple[np.ndarray, dict[str, float]]:
    """Normalise a 3D image; returns (float32 image, {"mean", "std"} actually used)."""
    image = image.astype(np.float32, copy=False)
    if plan.scheme == "ct":
        out = np.clip(image, plan.p005, plan.p995)
        out = (out - np.float32(plan.mean)) / np.float32(max(plan.std, _EPS))
        return out.astype(np.float32, copy=False), {"mean": float(plan.mean), "std": float(plan.std)}
    if plan.scheme == "range":  # [min, max] -> [-1, 1], reported as the (mean, std) of the same affine map
        low, high = float(image.min()), float(image.max())
        half = max((high - low) / 2, _EPS)
        out = (image - np.float32(low + half)) / np.float32(half)
        return out.astype(np.float32, copy=False), {"mean": low + half, "std": half}
    if plan.use_mask_for_norm:
        mask = nonzero_mask(image)
        values = image[mask] if mask.any() else image.ravel()
    else:
        mask = None
        values = image.ravel()
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    out = (image - np.float32(mean)) / np.float32(max(std, _EPS))
    if mask is not None and not mask.all():
        out[~mask] = 0
    return out.astype(np.float32, copy=False), {"mean": mean, "std": std}
