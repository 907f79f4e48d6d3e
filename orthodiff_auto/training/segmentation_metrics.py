"""Segmentation metrics: Dice, 95th-percentile Hausdorff distance and volumes, per case and aggregated.

Conventions (nnU-Net / medpy):
  * Dice is NaN when a structure is absent from both prediction and reference (nothing to score; aggregation
    skips it), and 0 when it is in only one of them.
  * HD95 is NaN when both masks are empty, and +inf when exactly one is (a missed or hallucinated structure has
    no finite surface distance; mean aggregates then become inf, medians stay informative).
  * HD95 is the larger of the two directed 95th percentiles of surface distances (prediction to reference and
    reference to prediction), as MONAI's ``compute_hausdorff_distance(percentile=95)`` and the Hausdorff
    distance's own max-of-directions define it, in the units of ``spacing`` (mm). Pooling both directions
    before one percentile (medpy's ``hd95``) gives a smaller value when one direction has the far outliers.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage


def _dice_from_masks(pred: np.ndarray, ref: np.ndarray) -> float:
    n_pred, n_ref = np.count_nonzero(pred), np.count_nonzero(ref)
    if n_pred + n_ref == 0:
        return float("nan")
    return 2.0 * np.count_nonzero(pred & ref) / (n_pred + n_ref)


def _check_same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {a.shape} vs {b.shape}")


def dice_per_class(
    pred: np.ndarray, ref: np.ndarray, labels: Sequence[int], ignore_mask: np.ndarray | None = None
) -> dict[int, float]:
    """Dice 2|P∩R| / (|P| + |R|) per label value; NaN where the label is absent from both maps.

    Voxels where ``ignore_mask`` is True count for neither map.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    _check_same_shape(pred, ref, "dice_per_class")
    if ignore_mask is not None:
        ignore_mask = np.asarray(ignore_mask, dtype=bool)
        _check_same_shape(pred, ignore_mask, "dice_per_class ignore_mask")
        keep = ~ignore_mask
        pred, ref = pred[keep], ref[keep]  # Dice only needs counts, so a flat selection is enough
    return {int(label): _dice_from_masks(pred == label, ref == label) for label in labels}


def _surface(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with a face neighbour outside the mask (the array border counts as outside)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def hausdorff95(pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance between two binary masks, in the units of ``spacing``.

    Distances go from each surface voxel of one mask to the nearest surface voxel of the other (exact Euclidean
    distance transform with anisotropic sampling); the result is the larger of the two directions' 95th
    percentiles (MONAI's definition). NaN when
    both masks are empty, inf when exactly one is. Computed on the bounding box of both masks plus a 1-voxel
    margin, which gives the same result as the full image at a fraction of the cost.
    """
    pred_mask, ref_mask = np.asarray(pred_mask, dtype=bool), np.asarray(ref_mask, dtype=bool)
    _check_same_shape(pred_mask, ref_mask, "hausdorff95")
    spacing = [float(s) for s in spacing]
    if len(spacing) != pred_mask.ndim:
        raise ValueError(f"spacing {spacing} does not match the {pred_mask.ndim} dims of the masks")
    has_pred, has_ref = pred_mask.any(), ref_mask.any()
    if not has_pred and not has_ref:
        return float("nan")
    if not has_pred or not has_ref:
        return float("inf")
    union = pred_mask | ref_mask
    box = []
    for axis in range(union.ndim):
        present = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        # The box alone gives the same surfaces (a box-edge voxel's outer neighbour is outside both masks); the
        # margin keeps that true whatever erosion assumes beyond the array. At the image border the crop stops,
        # as the image does, so such voxels are treated as in the full image.
        box.append(slice(max(present[0] - 1, 0), min(present[-1] + 2, union.shape[axis])))
    box = tuple(box)
    pred_surface, ref_surface = _surface(pred_mask[box]), _surface(ref_mask[box])
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[ref_surface]
    return float(max(np.percentile(to_ref, 95), np.percentile(to_pred, 95)))


def evaluate_segmentation(
    pred: np.ndarray, ref: np.ndarray, labels: Mapping[str, int], spacing: Sequence[float],
    ignore_label: int | None = None,
) -> dict[str, dict[str, float]]:
    """Per structure: ``dice``, ``hd95`` (mm), ``volume_ref_ml`` and ``volume_pred_ml``.

    ``labels`` maps names to values as dataset.json does; value 0 (background) and the ignore label are not
    scored. Voxels the reference marks with ``ignore_label`` are excluded from the prediction too (they have
    no ground truth). ``spacing`` is in mm per array axis, so volumes are voxel counts * prod(spacing) / 1000.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    _check_same_shape(pred, ref, "evaluate_segmentation")
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    keep = None if ignore_label is None else ref != ignore_label
    results: dict[str, dict[str, float]] = {}
    for name, value in labels.items():
        if value == 0 or value == ignore_label:
            continue
        pred_mask, ref_mask = pred == value, ref == value
        if keep is not None:
            pred_mask &= keep
        results[name] = {
            "dice": _dice_from_masks(pred_mask, ref_mask),
            "hd95": hausdorff95(pred_mask, ref_mask, spacing),
            "volume_ref_ml": np.count_nonzero(ref_mask) * voxel_ml,
            "volume_pred_ml": np.count_nonzero(pred_mask) * voxel_ml,
        }
    return results


def _nan_stats(values: Sequence[float]) -> dict[str, float]:
    """mean / median / std (population) / n over the non-NaN values; NaN statistics when there are none."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "std": float("nan"), "n": 0}
    with np.errstate(invalid="ignore"):  # inf - inf in std: NaN is the right answer there
        return {"mean": float(arr.mean()), "median": float(np.median(arr)), "std": float(arr.std()), "n": int(arr.size)}


def aggregate(per_case: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Statistics over cases of ``evaluate_segmentation`` results: ``{structure: {metric: {mean, median, std, n}}}``.

    NaN values (structure absent from a case) are skipped and ``n`` counts the values used. The extra entry
    ``"mean"`` holds the statistics of each case's mean over structures (NaN-aware), i.e. the usual
    "foreground mean" per metric.
    """
    structures: list[str] = []
    metrics: list[str] = []
    for case in per_case:
        for structure, values in case.items():
            if structure not in structures:
                structures.append(structure)
            metrics.extend(m for m in values if m not in metrics)
    if "mean" in structures:
        raise ValueError('a structure is named "mean", which clashes with the across-structure summary')
    # table[c, s, m]: NaN where a case lacks a structure or metric.
    table = np.array(
        [[[float(case.get(s, {}).get(m, np.nan)) for m in metrics] for s in structures] for case in per_case],
        dtype=float,
    ).reshape(len(per_case), len(structures), len(metrics))
    out: dict[str, dict[str, dict[str, float]]] = {
        s: {m: _nan_stats(table[:, i, j]) for j, m in enumerate(metrics)} for i, s in enumerate(structures)
    }
    valid = ~np.isnan(table)
    counts = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN for a case with no valid structure
        case_means = np.where(valid, table, 0.0).sum(axis=1) / counts
    case_means[counts == 0] = np.nan
    out["mean"] = {m: _nan_stats(case_means[:, j]) for j, m in enumerate(metrics)}
    return out
