"""A DatasetFingerprint built directly from spacings and shapes (planner tests need no images)."""

from __future__ import annotations

import numpy as np

from orthodiff_auto.fingerprint.schema import DatasetFingerprint, IntensityStats, ViewFingerprint


def fake_view(view: str, cases, relative_size: float = 1.0) -> ViewFingerprint:
    spacings = [tuple(float(v) for v in sp) for sp, _ in cases]
    shapes = [tuple(int(v) for v in sh) for _, sh in cases]
    return ViewFingerprint(
        view=view, num_train=len(cases), num_labelled=len(cases), num_unlabeled=0, spacings=spacings,
        shapes_after_crop=shapes, median_spacing=tuple(np.median(spacings, 0)),
        median_shape_after_crop=tuple(np.median(shapes, 0)), median_relative_size_after_crop=relative_size,
        foreground_intensity=IntensityStats(300.0, 50.0, 300.0, 10.0, 900.0, 120.0, 800.0, 1000),
        foreground_intensity_source="labels", label_volumes_mm3={}, orientations={}, findings_prevalence={},
        cases=[],
    )


def fake_fingerprint(views: dict, labels=None, findings=("tear",), modality: str = "MRI") -> DatasetFingerprint:
    return DatasetFingerprint(
        dataset_name="Fake", modality=modality, labels=labels or {"background": 0, "a": 1, "b": 2},
        ignore_label=None, findings=tuple(findings), views={v: fake_view(v, c) for v, c in views.items()},
    )
