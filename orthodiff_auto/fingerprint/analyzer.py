"""Per-case fingerprint analysis (runs in worker processes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.fingerprint.schema import CaseFingerprint, IntensityStats
from orthodiff_auto.data.cropping import crop, nonzero_bbox
from orthodiff_auto.data.orientation import canonical_orientation, orientation_code
from orthodiff_auto.utils.seeding import stable_seed

SAMPLES_PER_CASE = 10_000  # intensity samples each scan contributes to the pooled statistics (nnU-Net: 10e7 / n)


@dataclass(frozen=True)
class CaseTask:
    """One scan to analyse (plain fields: workers need not import the dataset module)."""

    case_id: str
    view: str
    subset: str
    image: str
    label: str | None
    root: str
    labels: tuple[tuple[str, int], ...]  # (name, value), background included
    num_samples: int = SAMPLES_PER_CASE
    ignore_label: int | None = None


@dataclass
class CaseResult:
    fingerprint: CaseFingerprint
    foreground_samples: np.ndarray  # label > 0 voxels, sampled with replacement; empty when none
    nonzero_samples: np.ndarray  # non-zero voxels, sampled with replacement; empty when none


def intensity_stats(values: np.ndarray) -> IntensityStats | None:
    if values.size == 0:
        return None
    values = values.astype(np.float64, copy=False)
    p005, median, p995 = np.percentile(values, (0.5, 50.0, 99.5))
    return IntensityStats(
        mean=float(values.mean()), std=float(values.std()), median=float(median), min=float(values.min()),
        max=float(values.max()), p005=float(p005), p995=float(p995), num_voxels=int(values.size),
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return Path(path).name


def analyze_case(task: CaseTask) -> CaseResult:
    """Read one scan (and its label) and measure what the planner needs."""
    scan = task
    image, geometry = read_image(scan.image)
    orient = canonical_orientation(geometry)
    image = orient.to_canonical(image)
    bbox = nonzero_bbox(image)
    cropped = crop(image, bbox)
    rng = np.random.default_rng(stable_seed(scan.case_id, scan.view, scan.subset))

    nonzero = cropped[cropped != 0]
    nz_samples = rng.choice(nonzero, task.num_samples, replace=True) if nonzero.size else np.zeros(0, np.float32)

    fg_stats = None
    fg_samples = np.zeros(0, np.float32)
    label_voxels: dict[str, int] = {}
    label_volumes: dict[str, float] = {}
    label_bbox = None
    if scan.label is not None:
        label, _ = read_image(scan.label, dtype=None)
        label = orient.to_canonical(label)
        foreground = cropped[crop(label, bbox) > 0]
        fg_stats = intensity_stats(foreground)
        if foreground.size:
            fg_samples = rng.choice(foreground, task.num_samples, replace=True)
        values = label.ravel()
        if np.issubdtype(values.dtype, np.floating):
            values = np.rint(values)
        anatomy = label > 0
        if task.ignore_label is not None:
            anatomy &= label != task.ignore_label
        if anatomy.any():
            label_bbox = nonzero_bbox(anatomy)
        counts = np.bincount(values.astype(np.intp), minlength=max(v for _, v in task.labels) + 1)
        voxel_mm3 = float(np.prod(geometry.spacing))
        for name, value in task.labels:
            n = int(counts[value]) if value < counts.size else 0
            label_voxels[name] = n
            label_volumes[name] = n * voxel_mm3

    fp = CaseFingerprint(
        case_id=scan.case_id,
        view=scan.view,
        subset=scan.subset,
        labelled=scan.label is not None,
        image=_relative(scan.image, Path(task.root)),
        orientation_code=orientation_code(geometry),
        transpose=orient.transpose,
        flip=orient.flip,
        original_spacing=tuple(geometry.spacing),
        original_shape=tuple(geometry.shape),
        spacing=orient.spacing_to_canonical(geometry.spacing),
        shape_before_crop=tuple(int(s) for s in image.shape),
        shape_after_crop=tuple(int(s) for s in cropped.shape),
        crop_bbox=tuple(bbox),
        foreground_intensity=fg_stats,
        nonzero_intensity=intensity_stats(nonzero),
        label_voxels=label_voxels,
        label_volumes_mm3=label_volumes,
        label_bbox=label_bbox,
    )
    return CaseResult(fp, fg_samples.astype(np.float32), nz_samples.astype(np.float32))
