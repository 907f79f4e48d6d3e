"""Small raw datasets written on the fly for the planning/preprocessing tests (no shared synthetic generator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry, write_image

# ITK direction (row-major, column c = physical direction of ITK axis c = array axis 2 - c) whose array axis 0
# is the slice normal of each view.
VIEW_DIRECTIONS = {
    "sag": (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "cor": (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0),
    "ax": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
}

LABELS = {"background": 0, "ball": 1, "slab": 2}


def phantom(shape: Sequence[int], spacing: Sequence[float], rng: np.random.Generator, border: int = 0,
            values=(100.0, 400.0, 700.0)):
    """An image with an ellipsoid (label 1) and a box (label 2) on a noisy background; ``border`` voxels of
    zeros around everything (the non-zero crop removes them). Structures are sized in mm so that they keep
    their physical size whatever the spacing."""
    shape = tuple(int(s) for s in shape)
    zz, yy, xx = np.meshgrid(*[(np.arange(s) + 0.5) * sp for s, sp in zip(shape, spacing)], indexing="ij")
    ext = np.array(shape) * np.array(spacing)
    c = ext / 2
    ball = (((zz - c[0]) / (0.3 * ext[0])) ** 2 + ((yy - c[1]) / (0.25 * ext[1])) ** 2
            + ((xx - c[2]) / (0.25 * ext[2])) ** 2) < 1
    slab = (yy > 0.72 * ext[1]) & (yy < 0.9 * ext[1]) & (xx > 0.1 * ext[2]) & (xx < 0.9 * ext[2]) & \
           (zz > 0.2 * ext[0]) & (zz < 0.8 * ext[0])
    label = np.zeros(shape, np.uint8)
    label[ball] = 1
    label[slab] = 2
    image = rng.normal(values[0], 5.0, size=shape).astype(np.float32)
    image[ball] = rng.normal(values[1], 5.0, size=int(ball.sum()))
    image[slab] = rng.normal(values[2], 5.0, size=int(slab.sum()))
    if border:
        b = border
        mask = np.zeros(shape, bool)
        mask[b:-b, b:-b, b:-b] = True
        image[~mask] = 0
        label[~mask] = 0
    return image, label


def write_dataset(root: Path, scans: list[dict], labels=None, findings: Sequence[str] = ("tear",),
                  sites: bool = True, seed: int = 0) -> Path:
    """Write a native dataset. Each scan dict: case, view, shape, spacing, optional subset (train), labelled
    (True), direction (the view's), border (0)."""
    root = Path(root)
    labels = labels or LABELS
    rng = np.random.default_rng(seed)
    views = sorted({s["view"] for s in scans}, key=["sag", "cor", "ax"].index)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    json.dump({"name": "PlanTest", "anatomy": "knee", "views": views, "labels": labels,
               "findings": list(findings), "file_ending": ".nii.gz"}, open(root / "dataset.json", "w"))
    folders = {"train": "imagesTr", "test": "imagesTs", "unlabeled": "unlabeled"}
    for s in scans:
        subset = s.get("subset", "train")
        g = ImageGeometry(tuple(s["shape"]), tuple(float(v) for v in s["spacing"]), (0.0, 0.0, 0.0),
                          tuple(s.get("direction", VIEW_DIRECTIONS[s["view"]])))
        image, label = phantom(g.shape, g.spacing, rng, s.get("border", 0))
        name = f"{s['case']}_{s['view']}.nii.gz"
        write_image(root / folders[subset] / name, image, g)
        if subset != "unlabeled" and s.get("labelled", True):
            write_image(root / ("labelsTr" if subset == "train" else "labelsTs") / name, label, g)
    train_cases = sorted({s["case"] for s in scans if s.get("subset", "train") == "train"})
    if findings:
        header = "case_id," + ",".join(findings) + (",site" if sites else "")
        rows = [header]
        for i, case in enumerate(train_cases):
            vals = ",".join(str((i + j) % 2) for j in range(len(findings)))
            rows.append(f"{case},{vals}" + (f",site{i % 2}" if sites else ""))
        (root / "findings.csv").write_text("\n".join(rows) + "\n")
    return root


def simple_scans(n: int = 3, views=("sag",), shape=(8, 32, 28), spacing=(3.0, 0.5, 0.5), jitter: float = 0.0,
                 **extra) -> list[dict]:
    out = []
    for i in range(n):
        for v in views:
            sp = (spacing[0] * (1 + jitter * i), spacing[1], spacing[2] * (1 + jitter * i))
            out.append({"case": f"c{i:03d}", "view": v, "shape": shape, "spacing": sp, **extra})
    return out
