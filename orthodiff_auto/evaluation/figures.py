"""The evaluation's figures, drawn once from summary.json's numbers and returned as PNG bytes: written beside
the summary as files and embedded in report.html."""

from __future__ import annotations

import io
import math
from typing import Any


def _pyplot():
    import matplotlib  # only when a figure is drawn: importing matplotlib takes about half a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: int = 90) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = _pyplot()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def roc_figure(findings: dict[str, Any]):
    """One small ROC plot per finding, from the points summary.json stores (``findings["roc"]``: one point per
    distinct score, so tied cases form one diagonal step and the area under the points is the AUROC)."""
    plt = _pyplot()
    names = list(findings["roc"])
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        points = findings["roc"][name]
        auc = findings["per_finding"][name]["auroc"]
        ax.plot(points["fpr"], points["tpr"], "-o", ms=2.5, lw=1.2)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"{name}\nAUROC {auc:.3f}" if auc == auc else f"{name}\nAUROC undefined", fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("1 - specificity", fontsize=8)
        ax.set_ylabel("sensitivity", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return fig


def dice_boxplot_figure(per_case: dict[str, Any]):
    """Dice per structure over the scored scans (a structure absent from a scan and its prediction is left out)."""
    plt = _pyplot()
    names = list(next(iter(per_case.values()))["metrics"])
    values = [[c["metrics"][n]["dice"] for c in per_case.values() if c["metrics"][n]["dice"] == c["metrics"][n]["dice"]]
              for n in names]
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.7), 4))
    ax.boxplot(values, showfliers=True)
    slanted = max(len(n) for n in names) > 4  # long structure names would overlap when upright
    ax.set_xticks(range(1, len(names) + 1), names, rotation=45 if slanted else 0, ha="right" if slanted else "center",
                  fontsize=8 if slanted else 10)
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    return fig


def evaluation_figures(summary: dict[str, Any]) -> dict[str, bytes]:
    """{file name: PNG bytes} of the figures the summary has data for."""
    figures = {}
    findings = summary.get("findings")
    if findings and findings.get("roc"):
        figures["roc_curves.png"] = png_bytes(roc_figure(findings))
    seg = summary.get("segmentation")
    if seg and seg.get("per_case"):
        figures["dice_boxplot.png"] = png_bytes(dice_boxplot_figure(seg["per_case"]))
    return figures
