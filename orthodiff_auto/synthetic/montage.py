"""A PNG montage of one case: its views (rows), a middle slice with the label overlay, and a slice through
each of the case's findings.

Works on any dataset in the raw format. Where a finding's location is known (synthetic datasets record
it in their marker file) the slice goes through it and a circle marks it; otherwise, for findings tied to
a labelled structure (e.g. ``acl_tear`` -> ``acl``), the slice holding the most of that structure is shown.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orthodiff_auto.data.dataset import SUBSETS, DatasetDescription, ScanEntry, scan_raw_dataset
from orthodiff_auto.data.image_io import ImageGeometry, read_image
from orthodiff_auto.data.views import VIEW_NAMES, VIEWS
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.synthetic.generator import read_marker
from orthodiff_auto.synthetic.joints import JOINTS
from orthodiff_auto.utils.atomic import atomic_path

# Finding -> label whose largest cross-section is a good slice when no location is recorded (every joint's).
HINT_LABELS = {finding: label for joint in JOINTS.values() for finding, label in joint.hint_labels.items()}
MAX_FINDING_COLUMNS = 4


def world_to_index(geometry: ImageGeometry, point) -> np.ndarray:
    """World (LPS) point -> continuous array index (k, j, i)."""
    d = geometry.direction_matrix
    spacing_itk = np.asarray(geometry.spacing[::-1])
    ijk = np.linalg.solve(d, np.asarray(point, dtype=float) - np.asarray(geometry.origin)) / spacing_itk
    return ijk[::-1]


def _label_colors(n: int) -> np.ndarray:
    import matplotlib  # only when a montage is drawn: importing matplotlib takes about half a second

    cmap = matplotlib.colormaps["tab20"]
    colors = np.array([cmap(i % 20) for i in range(max(n, 1))])
    return colors


@dataclass
class MontageCase:
    """What a montage of one case shows: its scans by view, its findings and where they are (when known)."""

    case_id: str
    subset: str
    description: DatasetDescription
    scans: dict[str, ScanEntry]  # view -> scan, in VIEWS order
    table: pd.DataFrame | None  # the findings table of the case's subset
    present: list[str]  # the case's findings
    regions: dict[str, list[float]]  # finding -> world point, from a synthetic dataset's marker file


def montage_case(dataset: Path | str, case_id: str, subset: str | None = None) -> MontageCase:
    """The case's scans and findings; UserInputError for an unknown subset or case."""
    if subset is not None and subset not in SUBSETS:
        raise UserInputError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    root = Path(dataset)
    ds = scan_raw_dataset(root)
    scans = [s for s in ds.scans if s.case_id == case_id and (subset is None or s.subset == subset)]
    if not scans:
        known = ds.case_ids(subset) if subset else sorted({s.case_id for s in ds.scans})
        where = f" in subset {subset!r}" if subset else ""
        raise UserInputError(f"{root}: no case {case_id!r}{where}; cases are e.g. {known[:8]}")
    case_subset = scans[0].subset
    desc = ds.description
    table = ds.findings if case_subset == "train" else ds.test_findings if case_subset == "test" else None
    present: list[str] = []
    if table is not None and case_id in table.index:
        present = [f for f in desc.findings if int(table.loc[case_id, f]) == 1]
    marker = read_marker(root) or {}
    regions = (marker.get("cases", {}).get(case_id) or {}).get("regions", {})
    by_view = {s.view: s for s in scans}
    return MontageCase(case_id, case_subset, desc, {v: by_view[v] for v in VIEWS if v in by_view}, table, present,
                       regions)


def render_montage(
    dataset: Path | str,
    case_id: str,
    out_png: Path | str,
    subset: str | None = None,
    dpi: int = 72,
    zoom_mm: float | None = 40.0,
) -> Path:
    """Write the montage PNG for ``case_id``; returns its path.

    Finding columns are zoomed to ``zoom_mm`` around the finding where its location is known."""
    import matplotlib  # only when a montage is drawn: importing matplotlib takes about half a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    case = montage_case(dataset, case_id, subset)
    finding_cols = case.present[:MAX_FINDING_COLUMNS]
    n_cols = 1 + len(finding_cols)
    colors = _label_colors(max(case.description.labels.values()) + 1)
    fig, axes = plt.subplots(len(case.scans), n_cols, figsize=(3.1 * n_cols, 3.2 * len(case.scans) + 0.9),
                             squeeze=False)
    fig.patch.set_facecolor("black")
    used_labels: set[int] = set()
    for r, (view, scan) in enumerate(case.scans.items()):
        used_labels |= _draw_view_row(axes[r], view, scan, finding_cols, case, colors, zoom_mm)
    handles = _add_legend_and_title(fig, case, used_labels, colors)
    fig.tight_layout(rect=(0, 0.05 if handles else 0, 1, 0.96))
    out_png = Path(out_png)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, facecolor="black", format="png")
    plt.close(fig)
    buffer.seek(0)
    _write_png(buffer, out_png)
    return out_png


def _draw_view_row(axes, view: str, scan: ScanEntry, finding_cols: list[str], case: MontageCase,
                   colors: np.ndarray, zoom_mm: float | None) -> set[int]:
    """One row: the middle slice with the label overlay, then a slice through each finding; the labels shown."""
    from matplotlib.patches import Circle  # with matplotlib, only when a montage is drawn

    image, geometry = read_image(scan.image)
    label = read_image(scan.label, dtype=np.uint8)[0] if scan.label is not None else None
    lo, hi = np.percentile(image, [1.0, 99.5])
    nk, nj, ni = image.shape
    sk, sj, si = geometry.spacing
    extent = (0.0, ni * si, nj * sj, 0.0)
    used_labels: set[int] = set()
    for c in range(1 + len(finding_cols)):
        ax = axes[c]
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_facecolor("black")
        mark = None
        if c == 0:
            k = nk // 2
            title = f"{VIEW_NAMES[view]} {k + 1}/{nk}"
        else:
            finding = finding_cols[c - 1]
            k, mark = _finding_slice(finding, geometry, image.shape, case.regions, label, case.description.labels)
            title = f"{VIEW_NAMES[view]} {k + 1}/{nk}: {finding}"
        ax.imshow(image[k], cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="bilinear")
        if mark is not None and zoom_mm:  # zoom in on the finding
            cy, cx = mark[0] * sj, mark[1] * si
            ax.set_xlim(max(0.0, cx - zoom_mm), min(ni * si, cx + zoom_mm))
            ax.set_ylim(min(nj * sj, cy + zoom_mm), max(0.0, cy - zoom_mm))
        if c == 0 and label is not None:
            sl = label[k]
            rgba = colors[sl].copy()
            rgba[..., 3] = np.where(sl > 0, 0.45, 0.0)
            ax.imshow(rgba, extent=extent, interpolation="nearest")
            used_labels.update(int(v) for v in np.unique(sl) if v > 0)
        if mark is not None:
            ax.add_patch(Circle((mark[1] * si, mark[0] * sj), radius=7.0, fill=False, color="yellow", lw=1.0,
                                alpha=0.8))
        ax.set_title(title, color="white", fontsize=8)
    return used_labels


def _add_legend_and_title(fig, case: MontageCase, used_labels: set[int], colors: np.ndarray) -> list:
    """The legend of the labels shown and the title (dataset, case, subset, site, findings); the legend handles."""
    from matplotlib.patches import Patch  # with matplotlib, only when a montage is drawn

    desc, table, case_id = case.description, case.table, case.case_id
    label_names = {v: k for k, v in desc.labels.items()}
    handles = [Patch(color=colors[v], label=label_names.get(v, str(v))) for v in sorted(used_labels)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False,
                   labelcolor="white")
    flags = ", ".join(case.present) if case.present else "no findings"
    site = ""
    if table is not None and case_id in table.index and "site" in table.columns:
        site = f" | {table.loc[case_id, 'site']}"
        if "field_strength" in table.columns:
            site += f" {table.loc[case_id, 'field_strength']} T"
    fig.suptitle(f"{desc.name} {case_id} ({case.subset}{site}): {flags}", color="white", fontsize=10)
    return handles


def _write_png(buffer: io.BytesIO, out_png: Path) -> None:
    with atomic_path(out_png) as tmp:
        try:  # a 256-colour palette keeps the file small (grey images lose nothing visible)
            from PIL import Image  # Pillow comes with matplotlib; only needed when a montage is written

            Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(
                tmp, format="PNG", optimize=True)
        except ImportError:  # pragma: no cover - Pillow ships with matplotlib
            tmp.write_bytes(buffer.getvalue())


def _finding_slice(finding, geometry, shape, regions, label, labels):
    """(slice index, in-plane (j, i) mark or None) through a finding."""
    nk = shape[0]
    if finding in regions:
        k, j, i = world_to_index(geometry, regions[finding])
        k_int = int(np.clip(round(k), 0, nk - 1))
        inside = 0 <= j < shape[1] and 0 <= i < shape[2]
        return k_int, ((j, i) if inside else None)
    hint = HINT_LABELS.get(finding)
    if label is not None and hint in labels:
        counts = (label == labels[hint]).reshape(nk, -1).sum(axis=1)
        if counts.max() > 0:
            return int(np.argmax(counts)), None
    return nk // 2, None
