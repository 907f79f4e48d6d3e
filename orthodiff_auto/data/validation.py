"""``validate_dataset``: check everything a later stage relies on and report every problem at once.

Nothing is changed on disk. Each problem names its file and what is wrong with it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orthodiff_auto.data.clinical import clinical_summary
from orthodiff_auto.data.dataset import RawDataset, ScanEntry, scan_raw_dataset
from orthodiff_auto.data.image_io import ImageGeometry, read_image
from orthodiff_auto.data.views import VIEW_NAMES, infer_view
from orthodiff_auto.errors import DatasetError, Problem, UserInputError


@dataclass
class ScanCheck:
    scan: ScanEntry
    geometry: ImageGeometry | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class ValidationReport:
    root: Path
    dataset: RawDataset | None
    problems: list[Problem]
    checks: list[ScanCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problems_text(self) -> str:
        return "\n".join(f"  {p}" for p in self.problems)

    def summary_text(self) -> str:
        """Cases per view, labelled cases, finding prevalence, spacings."""
        ds = self.dataset
        if ds is None:
            return ""
        desc = ds.description
        lines = [f"Dataset {desc.name!r} ({desc.anatomy}, {desc.modality}, {desc.source_format} format) at {ds.root}"]
        n_fg = len(desc.foreground_labels)
        lines.append(f"  labels: {n_fg} structures" + (f", ignore label {desc.ignore_label}" if desc.ignore_label is not None else ""))
        for subset in ("train", "test", "unlabeled"):
            cases = ds.case_ids(subset)
            if cases:
                lines.append(f"  {subset}: {len(cases)} cases")
        lines.append(f"  {'view':<10} {'train':>6} {'labelled':>9} {'test':>5} {'unlab.':>7}  median spacing (mm, array order)  median shape")
        geometries = {c.scan.key + c.scan.subset: c.geometry for c in self.checks if c.geometry is not None}
        for view in ds.views_present():
            scans = ds.select(view=view)
            spacings = [geometries[s.key + s.subset].spacing for s in scans if s.key + s.subset in geometries]
            shapes = [geometries[s.key + s.subset].shape for s in scans if s.key + s.subset in geometries]
            med_sp = "x".join(f"{v:.2f}" for v in np.median(spacings, axis=0)) if spacings else "?"
            med_sh = "x".join(str(int(v)) for v in np.median(shapes, axis=0)) if shapes else "?"
            lines.append(
                f"  {VIEW_NAMES[view]:<10} {len(ds.select('train', view)):>6} {len(ds.select('train', view, labelled=True)):>9}"
                f" {len(ds.select('test', view)):>5} {len(ds.select('unlabeled', view)):>7}  {med_sp:<32} {med_sh}"
            )
        if ds.findings is not None and desc.findings:
            prevalence = ds.findings[list(desc.findings)].mean()
            lines.append("  finding prevalence (train): " + ", ".join(f"{k} {v:.0%}" for k, v in prevalence.items()))
            if "site" in ds.findings.columns:
                sites = ds.findings["site"].value_counts().sort_index()
                lines.append("  sites: " + ", ".join(f"{k} ({v})" for k, v in sites.items()))
            if desc.clinical:
                lines.append("  clinical (train): " + clinical_summary(ds.findings, desc.clinical))
        return "\n".join(lines)


def validate_dataset(root: Path | str, num_workers: int = 2) -> ValidationReport:
    """Check a raw dataset folder; never raises for dataset problems, returns them all in the report."""
    root = Path(root)
    try:
        ds = scan_raw_dataset(root)
    except DatasetError as e:
        return ValidationReport(root, None, e.problems)
    except UserInputError as e:
        return ValidationReport(root, None, [Problem(root, str(e).split(": ", 1)[-1])])
    problems = list(ds.problems)
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        checks = list(pool.map(lambda s: check_scan(s, ds), ds.scans))
    for c in checks:
        problems.extend(c.problems)
    return ValidationReport(root, ds, problems, checks)


def check_scan(scan: ScanEntry, ds: RawDataset) -> ScanCheck:
    """Read one scan (and its label) and check content and geometry."""
    check = ScanCheck(scan)
    try:
        image, geometry = read_image(scan.image, dtype=None)
    except UserInputError as e:
        check.problems.append(Problem(scan.image, str(e).split(": ", 1)[-1]))
        return check
    check.geometry = geometry
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        n_bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        check.problems.append(Problem(scan.image, f"{n_bad} NaN/Inf voxels"))
    if ds.description.source_format == "orthodiff":
        header_view = infer_view(geometry)
        if header_view != scan.view:
            check.problems.append(
                Problem(scan.image, f"named as view {scan.view!r} but its header orientation says {header_view!r} "
                        f"(through-plane axis direction)")
            )
    if scan.label is not None:
        check.problems.extend(_check_label(scan.label, geometry, ds))
    return check


def _check_label(path: Path, image_geometry: ImageGeometry, ds: RawDataset) -> list[Problem]:
    try:
        label, geometry = read_image(path, dtype=None)
    except UserInputError as e:
        return [Problem(path, str(e).split(": ", 1)[-1])]
    problems = []
    for name in ("shape", "spacing", "origin", "direction"):
        a, b = getattr(geometry, name), getattr(image_geometry, name)
        if name == "shape":
            same = a == b
        else:
            same = np.allclose(a, b, rtol=1e-4, atol=1e-4)
        if not same:
            problems.append(Problem(path, f"{name} {_fmt(a)} differs from its image's {_fmt(b)}"))
    values = _label_values(label)
    if values is None:
        problems.append(Problem(path, "label map holds non-integer or non-finite values"))
    else:
        undeclared = sorted(set(values) - ds.description.allowed_label_values)
        if undeclared:
            problems.append(Problem(path, f"label values {undeclared} are not declared in dataset.json"))
    return problems


def _label_values(label: np.ndarray) -> list[int] | None:
    if np.issubdtype(label.dtype, np.floating):
        if not np.isfinite(label).all() or not np.array_equal(label, np.round(label)):
            return None
        label = label.astype(np.int64)
    lo, hi = int(label.min()), int(label.max())
    if lo >= 0 and hi < 65536:
        # bincount is linear time; np.unique would sort the whole volume.
        counts = np.bincount(label.ravel().astype(np.intp, copy=False), minlength=hi + 1)
        return [int(v) for v in np.flatnonzero(counts)]
    return [int(v) for v in np.unique(label)]


def _fmt(v) -> str:
    if isinstance(v, tuple) and v and isinstance(v[0], float):
        return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
    return str(v)
