"""Reduce per-case results into per-view fingerprints."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd

from orthodiff_auto.data.dataset import DatasetDescription
from orthodiff_auto.fingerprint.analyzer import CaseResult, intensity_stats
from orthodiff_auto.fingerprint.schema import DatasetFingerprint, ViewFingerprint


def findings_prevalence(findings: pd.DataFrame | None, names: Sequence[str], case_ids: Sequence[str]) -> dict:
    """Prevalence of each finding among ``case_ids``: overall ("all") and per site (when a site column exists)."""
    if findings is None or not names:
        return {}
    table = findings.loc[[c for c in case_ids if c in findings.index]]
    if table.empty:
        return {}
    out: dict[str, dict[str, float]] = {}

    def row(t: pd.DataFrame) -> dict[str, float]:
        r: dict[str, float] = {"num_cases": int(len(t))}
        for f in names:
            r[f] = float(t[f].mean())
        return r

    out["all"] = row(table)
    if "site" in table.columns:
        for site in sorted(table["site"].astype(str).unique()):
            out[f"site:{site}"] = row(table[table["site"].astype(str) == site])
    return out


def reduce_view(view: str, results: list[CaseResult], description: DatasetDescription,
                findings: pd.DataFrame | None) -> ViewFingerprint:
    results = sorted(results, key=lambda r: (r.fingerprint.subset, r.fingerprint.case_id))
    cases = [r.fingerprint for r in results]
    train = [r for r in results if r.fingerprint.subset == "train"]
    planning = train or results
    spacings = [c.fingerprint.spacing for c in planning]
    shapes = [c.fingerprint.shape_after_crop for c in planning]

    labelled = [r for r in train if r.fingerprint.labelled and r.foreground_samples.size]
    if labelled:
        fg = intensity_stats(np.concatenate([r.foreground_samples for r in labelled]))
        source = "labels"
    else:
        nz = [r.nonzero_samples for r in planning if r.nonzero_samples.size]
        fg = intensity_stats(np.concatenate(nz)) if nz else None
        source = "nonzero"

    volumes: dict[str, dict[str, float]] = {}
    with_labels = [c for c in cases if c.labelled and c.subset == "train"]
    for name in description.labels:
        v = np.array([c.label_volumes_mm3.get(name, 0.0) for c in with_labels], dtype=float)
        if v.size == 0:
            continue
        volumes[name] = {
            "median": float(np.median(v)), "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "num_cases_present": int((v > 0).sum()),
        }

    train_ids = sorted({c.case_id for c in cases if c.subset == "train"})
    return ViewFingerprint(
        view=view,
        num_train=len(train),
        num_labelled=sum(1 for c in cases if c.subset == "train" and c.labelled),
        num_unlabeled=sum(1 for c in cases if c.subset == "unlabeled"),
        spacings=spacings,
        shapes_after_crop=shapes,
        median_spacing=tuple(float(v) for v in np.median(np.array(spacings), axis=0)),
        median_shape_after_crop=tuple(float(v) for v in np.median(np.array(shapes), axis=0)),
        median_relative_size_after_crop=float(np.median([c.fingerprint.relative_size_after_crop for c in planning])),
        foreground_intensity=fg,
        foreground_intensity_source=source,
        label_volumes_mm3=volumes,
        orientations=dict(sorted(Counter(c.orientation_code for c in cases).items())),
        findings_prevalence=findings_prevalence(findings, description.findings, train_ids),
        cases=cases,
    )


def reduce_dataset(results: list[CaseResult], description: DatasetDescription,
                   findings: pd.DataFrame | None, view_order: Sequence[str]) -> DatasetFingerprint:
    by_view: dict[str, list[CaseResult]] = {}
    for r in results:
        by_view.setdefault(r.fingerprint.view, []).append(r)
    views = {v: reduce_view(v, by_view[v], description, findings) for v in view_order if v in by_view}
    return DatasetFingerprint(
        dataset_name=description.name,
        modality=description.modality,
        labels=dict(description.labels),
        ignore_label=description.ignore_label,
        findings=tuple(description.findings),
        views=views,
    )
