"""Dataset fingerprint: per-case analysis (``analyze_case``), reduction per view, ``extract_fingerprint``.

Names are imported lazily, so that worker processes importing ``fingerprint.analyzer`` do not pay for the
reducer's pandas import.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CaseResult": "orthodiff_auto.fingerprint.analyzer",
    "CaseTask": "orthodiff_auto.fingerprint.analyzer",
    "analyze_case": "orthodiff_auto.fingerprint.analyzer",
    "extract_fingerprint": "orthodiff_auto.fingerprint.extract",
    "CaseFingerprint": "orthodiff_auto.fingerprint.schema",
    "DatasetFingerprint": "orthodiff_auto.fingerprint.schema",
    "IntensityStats": "orthodiff_auto.fingerprint.schema",
    "ViewFingerprint": "orthodiff_auto.fingerprint.schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
