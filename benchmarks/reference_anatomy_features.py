"""Cheap per-view features of a raw dataset's labelled scans, from its reference label maps: the base
classifiers of the fusion-head benchmark (bench_classification_fusion.py --base reference-anatomy).

Per view and declared label: volume (mm^3), mean intensity inside, mean intensity in a one-voxel shell around
it, and the label's centroid relative to the centroid of all labelled voxels (mm, world axes); per view the
fraction of the field of view brighter than half the 99.5th intensity percentile (fluid). Intensities are
divided by the median of the labelled voxels, so a scanner's gain cancels. Nothing here knows the
generator's findings or label names: it reads dataset.json's labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def scan_features(image: np.ndarray, label: np.ndarray, spacing, direction, label_values) -> np.ndarray:
    """Features of one scan (see the module doc)."""
    # imported here: scipy is only needed when the benchmark computes features
    from scipy import ndimage

    voxel_mm3 = float(np.prod(spacing))
    fg = label > 0
    scale = float(np.median(image[fg])) if fg.any() else 1.0
    img = image / max(scale, 1e-6)
    zz, yy, xx = np.indices(label.shape, dtype=np.float64)
    # array axes are (z, y, x) = ITK (k, j, i); world offsets through the direction matrix
    sp = np.asarray(spacing, dtype=np.float64)  # (z, y, x) order
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)

    def centroid(mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return np.zeros(3)
        ijk = np.array([xx[mask].mean() * sp[2], yy[mask].mean() * sp[1], zz[mask].mean() * sp[0]])
        return d @ ijk

    centre = centroid(fg)
    feats = []
    for value in label_values:
        mask = label == value
        n = int(mask.sum())
        shell = ndimage.binary_dilation(mask) & ~mask
        feats += [n * voxel_mm3, float(img[mask].mean()) if n else 0.0,
                  float(img[shell].mean()) if shell.any() else 0.0, *(centroid(mask) - centre)]
    bright = img > 0.5 * np.percentile(img, 99.5)
    feats.append(float(bright.mean()))
    return np.asarray(feats, dtype=np.float64)


def dataset_features(raw: Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """(case ids, views, {view: (N, D) features}) of the labelled training scans; NaN rows where a case
    lacks a view."""
    from orthodiff_auto.data.dataset import load_raw_dataset
    from orthodiff_auto.data.image_io import read_image

    ds = load_raw_dataset(raw)
    values = sorted(v for v in ds.description.labels.values() if v != 0)
    cases = ds.case_ids("train")
    views = ds.views_present()
    out: dict[str, np.ndarray] = {}
    for view in views:
        rows = {}
        for scan in ds.select("train", view, labelled=True):
            image, geometry = read_image(scan.image)
            label, _ = read_image(scan.label, dtype=np.int16)
            rows[scan.case_id] = scan_features(image, label, geometry.spacing, geometry.direction, values)
        width = len(next(iter(rows.values())))
        out[view] = np.stack([rows.get(c, np.full(width, np.nan)) for c in cases])
    return cases, views, out
