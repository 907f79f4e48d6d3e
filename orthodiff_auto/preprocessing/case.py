"""Preprocess one in-memory case, and map network output back onto the original image.

Order of operations (as nnU-Net): reorient to the view's canonical layout -> crop to the non-zero region ->
normalise -> resample to the target spacing. ``revert_to_original`` undoes them in reverse order: resample
back to the cropped shape -> paste into the full (reoriented) shape -> undo the reorientation. The result has
exactly the original image's shape, so it is written with the original ``ImageGeometry`` unchanged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.data.label_values import to_class_indices
from orthodiff_auto.plans.schema import ViewPlan
from orthodiff_auto.data.cropping import crop, nonzero_bbox, paste
from orthodiff_auto.preprocessing.normalization import normalize_image
from orthodiff_auto.data.orientation import canonical_orientation
from orthodiff_auto.preprocessing.properties import CaseProperties
from orthodiff_auto.preprocessing.resampling import compute_new_shape, present_labels, resample_image, resample_labels

MAX_LOCATIONS_PER_CLASS = 2000  # foreground voxels stored per class for oversampling (a uniform random sample)


def label_dtype(max_value: int) -> np.dtype:
    return np.dtype(np.uint8) if max_value <= 255 else np.dtype(np.uint16)


def sample_class_locations(seg: np.ndarray, classes, seed: int = 1234,
                           max_per_class: int = MAX_LOCATIONS_PER_CLASS) -> dict[int, np.ndarray]:
    """For each class value, up to ``max_per_class`` voxel indices (N, 3) drawn uniformly without replacement."""
    rng = np.random.default_rng(seed)
    flat = seg.ravel()
    out: dict[int, np.ndarray] = {}
    for c in classes:
        idx = np.flatnonzero(flat == c)
        if idx.size > max_per_class:
            idx = np.sort(rng.choice(idx, max_per_class, replace=False))
        out[int(c)] = np.stack(np.unravel_index(idx, seg.shape), axis=1).astype(np.int32)
    return out


def preprocess_case(image: np.ndarray, geometry: ImageGeometry, view_plan: ViewPlan,
                    label: np.ndarray | None = None, *, case_id: str = "case", ignore_label: int | None = None,
                    seed: int = 1234, label_values: Sequence[int] | None = None,
                    ) -> tuple[np.ndarray, np.ndarray | None, CaseProperties]:
    """Preprocess one scan held in memory (array in SimpleITK order, its geometry, optional label map).

    Returns ``(data, seg, properties)``: ``data`` float32 (1, z, y, x) at the view's target spacing in its
    canonical orientation; ``seg`` uint8/uint16 (1, z, y, x) or None; ``properties`` (``CaseProperties``,
    without source/subset information) for ``revert_to_original``. With ``label_values`` (the plans'
    ``label_values``, channel order) ``seg`` holds class indices (``data.label_values.to_class_indices``), what
    training uses; without, the label values as given.
    """
    if tuple(image.shape) != tuple(geometry.shape):
        raise ValueError(f"image shape {image.shape} does not match its geometry {geometry.shape}")
    if label is not None and tuple(label.shape) != tuple(image.shape):
        raise ValueError(f"label shape {label.shape} does not match the image's {image.shape}")
    orient = canonical_orientation(geometry)
    img = orient.to_canonical(image)
    shape_before = tuple(int(s) for s in img.shape)
    bbox = nonzero_bbox(img)
    img = np.ascontiguousarray(crop(img, bbox), dtype=np.float32)
    spacing = orient.spacing_to_canonical(geometry.spacing)
    target = tuple(float(t) for t in view_plan.target_spacing)
    new_shape = compute_new_shape(img.shape, spacing, target)

    img, norm_stats = normalize_image(img, view_plan.normalization)
    data = resample_image(img, new_shape, spacing, target, view_plan.resampling)

    seg = None
    locations: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    if label is not None:
        lab = crop(orient.to_canonical(label), bbox)
        if np.issubdtype(lab.dtype, np.floating):
            lab = np.rint(lab)
        if label_values is not None:
            lab = to_class_indices(lab, label_values, ignore_label)
        values = present_labels(lab.astype(np.int64, copy=False)) if lab.size else [0]
        lab = np.ascontiguousarray(lab, dtype=label_dtype(max(values)))
        seg = resample_labels(lab, new_shape, spacing, target, view_plan.resampling)
        foreground = [v for v in present_labels(seg) if v != 0 and v != ignore_label]
        locations = sample_class_locations(seg, foreground, seed)
        per_value = np.bincount(seg.ravel(), minlength=max(foreground, default=0) + 1)
        counts = {int(c): int(per_value[c]) for c in foreground}

    props = CaseProperties(
        case_id=case_id,
        view=view_plan.view,
        subset=None,
        original_geometry=geometry,
        orientation=orient,
        shape_before_cropping=shape_before,
        crop_bbox=tuple(tuple(int(v) for v in b) for b in bbox),
        shape_after_cropping=tuple(int(s) for s in img.shape),
        spacing=spacing,
        spacing_after_resampling=target,
        shape_after_resampling=tuple(int(s) for s in data.shape),
        normalization=norm_stats,
        has_seg=seg is not None,
        class_locations=locations,
        class_voxel_counts=counts,
    )
    return data[None], (None if seg is None else seg[None]), props


def revert_to_original(array: np.ndarray, properties: CaseProperties, view_plan: ViewPlan,
                       kind: str | None = None) -> np.ndarray:
    """Map an array on the preprocessed grid back onto the original image grid.

    ``kind``: "probabilities" (C, z, y, x) float, resampled with ``probabilities_order``; outside the crop
    box channel 0 (background) is 1 and the others 0. "segmentation" (z, y, x) or (1, z, y, x) integer labels,
    resampled one-hot; 0 outside the crop box. "image" (z, y, x) float, resampled with ``image_order``; 0
    outside. Default: 4D with more than one channel -> probabilities, integer -> segmentation, else image.
    Returns an array shaped like ``properties.original_geometry.shape`` (leading channel axis kept for
    probabilities) in the original array order.
    """
    if kind is None:
        if array.ndim == 4 and array.shape[0] > 1:
            kind = "probabilities"
        elif np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
            kind = "segmentation"
        else:
            kind = "image"
    if kind not in ("probabilities", "segmentation", "image"):
        raise ValueError(f"kind must be probabilities, segmentation or image, got {kind!r}")
    if kind != "probabilities" and array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"a {kind} must be (z, y, x) or (1, z, y, x), got {array.shape}")
        array = array[0]
    expected = tuple(properties.shape_after_resampling)
    if tuple(array.shape[-3:]) != expected:
        raise ValueError(f"array spatial shape {array.shape[-3:]} does not match the preprocessed shape {expected}")
    plan = view_plan.resampling
    src, dst = properties.spacing_after_resampling, properties.spacing
    cropped_shape = properties.shape_after_cropping
    if kind == "segmentation":
        if array.dtype == bool:
            array = array.astype(np.uint8)
        back = resample_labels(array, cropped_shape, src, dst, plan)
        full = paste(back, properties.crop_bbox, properties.shape_before_cropping, 0)
    elif kind == "probabilities":
        back = resample_image(array, cropped_shape, src, dst, plan, order=plan.probabilities_order)
        fill = np.zeros(back.shape[0], dtype=back.dtype)
        fill[0] = 1
        full = paste(back, properties.crop_bbox, properties.shape_before_cropping, fill)
    else:
        back = resample_image(array, cropped_shape, src, dst, plan)
        full = paste(back, properties.crop_bbox, properties.shape_before_cropping, 0)
    out = np.ascontiguousarray(properties.orientation.from_canonical(full))
    if tuple(out.shape[-3:]) != tuple(properties.original_geometry.shape):  # pragma: no cover - internal check
        raise AssertionError(f"reverted shape {out.shape} != original {properties.original_geometry.shape}")
    return out


def place_in_original(indices: np.ndarray, properties: CaseProperties) -> np.ndarray:
    """Class indices on the cropped grid (``shape_after_cropping``, canonical order) -> the original image grid:
    0 (background) outside the crop box, then the reorientation undone."""
    full = paste(indices, properties.crop_bbox, properties.shape_before_cropping, 0)
    out = np.ascontiguousarray(properties.orientation.from_canonical(full))
    if tuple(out.shape) != tuple(properties.original_geometry.shape):  # pragma: no cover - internal check
        raise AssertionError(f"reverted shape {out.shape} != original {properties.original_geometry.shape}")
    return out
