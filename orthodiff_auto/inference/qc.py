"""``predict_folder --qc``: one PNG per case for a reader who checks results by eye: the middle slice of each
view with the segmentation's contours, and the findings table (probability, threshold, call).

Slices are shown in the radiological convention after the view's canonical orientation (data.orientation):
sagittal anterior left and superior up, coronal and axial the patient's right on the image's left, axial
anterior up; letters at the edges say so (A/P, R/L, S/I), and pixels keep their physical aspect ratio. Each
structure has its own saturated colour, and finding names are printed in full.
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
    """A colour per structure, fully saturated (seen on a grey scan) and evenly spaced in hue, so any two are at
    least 1/n of the hue circle apart; hues are dealt by the golden ratio, so structures next to each other in
    the list (often next to each other in the body, femur and tibia) get far-apart hues."""
    import colorsys

    n = len(names)
    spread = np.argsort(np.argsort((np.arange(n) * 0.6180339887) % 1.0))  # rank of each golden-ratio step
    return {name: (*colorsys.hsv_to_rgb(float(spread[i]) / max(n, 1), 1.0, 1.0), 1.0) for i, name in enumerate(names)}


# the canonical in-plane axes of each view (data.orientation: rows, columns) and their low -> high ends (LPS)
_IN_PLANE = {"ax": ("AP", "RL"), "cor": ("IS", "RL"), "sag": ("IS", "AP")}


def image_origin(view: str) -> str:
    """imshow's origin for a view's canonical slice: axial anterior up (row 0, anterior, at the top), the others
    superior up (row 0, inferior, at the bottom)."""
    return "upper" if view == "ax" else "lower"


def orientation_letters(view: str) -> dict[str, str]:
    """The anatomical direction at each edge of a view's QC slice: {"left", "right", "top", "bottom"} -> one of
    A/P/R/L/S/I."""
    rows, columns = _IN_PLANE[view]
    top, bottom = (rows[0], rows[1]) if image_origin(view) == "upper" else (rows[1], rows[0])
    return {"left": columns[0], "right": columns[1], "top": top, "bottom": bottom}


def _label_edges(ax, view: str) -> None:
    letters = orientation_letters(view)
    # white: no structure's contour has it (contour colours are fully saturated)
    style = dict(transform=ax.transAxes, color="white", fontsize=11, fontweight="bold")
    ax.text(0.01, 0.5, letters["left"], ha="left", va="center", **style)
    ax.text(0.99, 0.5, letters["right"], ha="right", va="center", **style)
    ax.text(0.5, 0.99, letters["top"], ha="center", va="top", **style)
    ax.text(0.5, 0.01, letters["bottom"], ha="center", va="bottom", **style)


def findings_table(ax, rows: list[list[str]]):
    """The findings table (finding, probability, threshold, call; calls shaded), its columns as wide as their
    longest text so that no finding name is cut."""
    table = ax.table(cellText=rows, colLabels=["finding", "probability", "threshold", "call"], loc="upper center",
                     cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(4)))
    for (row, _), cell in table.get_celld().items():
        if row > 0 and rows[row - 1][3] == "yes":
            cell.set_facecolor("#fde0dd")
    return table


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
        ax.imshow(image_slice, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), aspect=aspect,
                  origin=image_origin(view), interpolation="nearest")
        _label_edges(ax, view)
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
        findings_table(table_ax, rows)
    else:
        table_ax.text(0.5, 0.5, note or "no findings model", ha="center", va="center", wrap=True, fontsize=9,
                      transform=table_ax.transAxes)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.1, wspace=0.05)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=QC_DPI)
    plt.close(fig)
