"""Shared test helpers: tiny raw datasets written on the fly (no files are kept between tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

# One intra-op thread: on a busy 2-core machine two threads per process were measured 4-7x slower (the tests
# also start worker and torchrun processes of their own).
torch.set_num_threads(1)

from orthodiff_auto.data.image_io import ImageGeometry, write_image

# Direction matrices (ITK row-major) whose ITK k axis (array axis 0) is each view's slice normal.
VIEW_DIRECTIONS = {
    "sag": (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "cor": (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0),
    "ax": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
}


def view_geometry(view: str, shape=(6, 20, 20), spacing=(3.0, 0.5, 0.5), origin=(0.0, 0.0, 0.0)) -> ImageGeometry:
    return ImageGeometry(tuple(shape), tuple(spacing), tuple(origin), VIEW_DIRECTIONS[view])


def sphere_scan(shape, rng: np.random.Generator, n_labels: int = 2):
    """An image with a bright ball (label 1) and a box (label 2) on a noisy background."""
    image = rng.normal(100.0, 5.0, size=shape).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = np.array(shape) / 2.0
    ball = ((zz - c[0]) / max(shape[0] / 3, 1)) ** 2 + ((yy - c[1]) / (shape[1] / 4)) ** 2 + ((xx - c[2]) / (shape[2] / 4)) ** 2 < 1
    label[ball] = 1
    image[ball] += 200
    if n_labels >= 2:
        box = (yy < shape[1] // 5) & (xx < shape[2] // 5)
        label[box] = 2
        image[box] += 400
    return image, label


def write_sphere_dataset(root: Path, cases, views, labels: dict, findings: dict, scan) -> Path:
    """A raw training set: dataset.json, ``scan(i, view) -> (image, label, geometry)`` written to
    imagesTr/labelsTr for case ``i`` of ``cases``, and findings.csv from ``findings`` ({column: value of case
    i}: a callable per column)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    names = [c for c in findings if c != "site"]
    json.dump({"name": "T", "labels": labels, "findings": names, "views": list(views)}, open(root / "dataset.json", "w"))
    rows = ["case_id," + ",".join(findings)]
    for i, case in enumerate(cases):
        for view in views:
            image, label, g = scan(i, view)
            write_image(root / "imagesTr" / f"{case}_{view}.nii.gz", image, g)
            write_image(root / "labelsTr" / f"{case}_{view}.nii.gz", label, g)
        rows.append(",".join([case] + [str(value(i)) for value in findings.values()]))
    (root / "findings.csv").write_text("\n".join(rows) + "\n")
    return root


def write_native_dataset(
    root: Path,
    cases=("c001", "c002", "c003", "c004"),
    views=("sag", "cor", "ax"),
    findings=("tear", "effusion"),
    test_cases=(),
    unlabeled_cases=(),
    seed: int = 0,
    file_ending: str = ".nii.gz",
) -> Path:
    """A small valid native dataset at ``root``; keyword arguments vary its content."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    labels = {"background": 0, "bone": 1, "cartilage": 2}
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    json.dump(
        {"name": "Tiny", "anatomy": "knee", "views": list(views), "labels": labels,
         "findings": list(findings), "file_ending": file_ending},
        open(root / "dataset.json", "w"),
    )
    for subset, folder, ids in (("train", "imagesTr", cases), ("test", "imagesTs", test_cases),
                                ("unlabeled", "unlabeled", unlabeled_cases)):
        for case in ids:
            for view in views:
                g = view_geometry(view)
                image, label = sphere_scan(g.shape, rng)
                write_image(root / folder / f"{case}_{view}{file_ending}", image, g)
                if subset != "unlabeled":
                    label_folder = "labelsTr" if subset == "train" else "labelsTs"
                    write_image(root / label_folder / f"{case}_{view}{file_ending}", label, g)
    if findings:
        for name, ids in (("findings.csv", cases), ("findingsTs.csv", test_cases)):
            if not ids:
                continue
            rows = ["case_id," + ",".join(findings) + ",site"]
            for i, case in enumerate(ids):
                rows.append(f"{case}," + ",".join(str((i + j) % 2) for j in range(len(findings))) + f",site{i % 2}")
            (root / name).write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def make_native_dataset(tmp_path):
    """Factory: ``write_native_dataset`` under tmp_path (``raw`` unless a root is given)."""

    def make(root: Path | None = None, **kwargs) -> Path:
        return write_native_dataset(Path(root or tmp_path / "raw"), **kwargs)

    return make
