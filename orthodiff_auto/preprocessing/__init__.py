"""Preprocessing: reorient, crop to non-zero, normalise, resample, store (blosc2); and the exact inverse.

Public API:

- ``preprocess_case(image, geometry, view_plan, label=None)`` -> ``(data, seg, properties)`` for one scan in
  memory (what the predictor calls for test scans);
- ``revert_to_original(array, properties, view_plan)`` -> array on the original image grid;
- ``preprocess_dataset(dataset, plans, out_dir, num_workers)`` -> ``PreprocessSummary`` (parallel, resumable);
- ``PreprocessedDataset(preprocessed_dir, view)`` with ``case_ids(subset=)`` and ``load(case_id)``.

Names are imported lazily (worker processes import only the modules they use).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "preprocess_case": "orthodiff_auto.preprocessing.case",
    "revert_to_original": "orthodiff_auto.preprocessing.case",
    "Orientation": "orthodiff_auto.data.orientation",
    "canonical_orientation": "orthodiff_auto.data.orientation",
    "CaseProperties": "orthodiff_auto.preprocessing.properties",
    "PreprocessSummary": "orthodiff_auto.preprocessing.runner",
    "preprocess_dataset": "orthodiff_auto.preprocessing.runner",
    "PreprocessedDataset": "orthodiff_auto.preprocessing.storage",
    "case_paths": "orthodiff_auto.preprocessing.storage",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
