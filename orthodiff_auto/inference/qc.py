"""``predict_folder --qc``: one PNG per case for a reader who checks results by eye: the middle slice of each
view with the segmentation's contours, and the findings table (probability, threshold, call).

Slices are shown in the radiological convention after the view's canonical orientation (data.orientation):
sagittal anterior left and superior up, coronal and axial the patient's right on the image's left, axial
anterior up; pixels keep their physical aspect ratio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.data.orientation import canonical_orientation
from orthodiff_auto.data.views import VIEW_NAMES, VIEWS
from orthodiff_auto.utils.atomic import atomic_path

QC_FOLDER = "qc"
# the PNG's size in pixels is fixed (inches x dpi), whatever the case holds, so QC images tile and compare
QC_FIGSIZE = (16.0, 5.0)
QC_DPI = 100


def middle_slice(image: np.ndarray, labels: np.ndarray | None, geometry: ImageGeometry
                 ) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(image slice, label slice, row/column pixel aspect) of the middle slice across the through-plane axis,
    in the view's canonical layout."""
    orientation = canonical_orientation(geometry)
    image = orientation.to_canonical(image)
    mid = image.shape[0] // 2
    spacing = orientation.spacing_to_canonical(geometry.spacing)
    label_slice = None if labels is None else orientation.to_canonical(labels)[mid]
    return image[mid], label_slice, spacing[1] / spacing[2]


def contour_colours(names: list[str]) -> dict[str, tuple[float, float, float, float]]:
    """A colour per structure: matplotlib's tab10 (strong, distinct) up to ten structures, tab20 beyond."""
    import matplotlib  # only when --qc asks for figures: importing matplotlib takes about half a second

    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def write_qc_png(path: Path, case_id: str, scans: Mapping[str, tuple[np.ndarray, ImageGeometry]],
                 segmentations: Mapping[str, np.ndarray], labels: Mapping[str, int],
                 findings: Mapping[str, Mapping[str, float]], thresholds: Mapping[str, float],
                 note: str | None = None) -> None:
    """Draw and write (atomically) the QC figure of one case. ``labels``: name -> value of the label maps in
    ``segmentations`` (view -> label map in the scan's geometry); ``findings``: finding -> probability, call."""
    import matplotlib  # only when --qc asks for figures: importing matplotlib takes about half a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    foreground = {name: value for name, value in labels.items() if value != 0}
    colours = contour_colours(list(foreground))
    fig = plt.figure(figsize=QC_FIGSIZE, dpi=QC_DPI)
    grid = fig.add_gridspec(1, 4, width_ratios=(1, 1, 1, 1.1))
    drawn: set[str] = set()
    for column, view in enumerate(VIEWS):
        ax = fig.add_subplot(grid[0, column])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(VIEW_NAMES[view], fontsize=10)
        if view not in scans:
            ax.text(0.5, 0.5, "no scan", ha="center", va="center", transform=ax.transAxes, color="0.5")
            continue
        image, geometry = scans[view]
        image_slice, label_slice, aspect = middle_slice(image, segmentations.get(view), geometry)
        low, high = np.percentile(image_slice, [1, 99])
        origin = "upper" if view == "ax" else "lower"
        ax.imshow(image_slice, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), aspect=aspect, origin=origin,
                  interpolation="nearest")
        if label_slice is None:
            continue
        limits = ax.get_xlim(), ax.get_ylim()
        # padded by one pixel so that a structure touching the edge gets a closed contour
        xs, ys = np.arange(-1, label_slice.shape[1] + 1), np.arange(-1, label_slice.shape[0] + 1)
        for name, value in foreground.items():
            mask = label_slice == value
            if mask.any():
                ax.contour(xs, ys, np.pad(mask, 1).astype(np.float32), levels=[0.5], colors=[colours[name]],
                           linewidths=1.2)
                drawn.add(name)
        ax.set_xlim(limits[0])
        ax.set_ylim(limits[1])
    if drawn:
        handles = [Line2D([], [], color=colours[n], lw=2) for n in foreground if n in drawn]
        fig.legend(handles, [n for n in foreground if n in drawn], loc="lower center", ncol=min(8, len(drawn)),
                   fontsize=8, frameon=False)
    table_ax = fig.add_subplot(grid[0, 3])
    table_ax.axis("off")
    table_ax.set_title(f"case {case_id}: findings", fontsize=10)
    if findings:
        rows = [[name, f"{v['probability']:.3f}", f"{thresholds.get(name, float('nan')):.3f}",
                 "yes" if v["call"] else "no"] for name, v in findings.items()]
        table = table_ax.table(cellText=rows, colLabels=["finding", "probability", "threshold", "call"],
                               loc="upper center", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        for (row, _), cell in table.get_celld().items():
            if row > 0 and rows[row - 1][3] == "yes":
                cell.set_facecolor("#fde0dd")
    else:
        table_ax.text(0.5, 0.5, note or "no findings model", ha="center", va="center", wrap=True, fontsize=9,
                      transform=table_ax.transAxes)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.1, wspace=0.05)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=QC_DPI)
    plt.close(fig)
