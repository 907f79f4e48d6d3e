"""Values JSON can hold: JSON has no NaN or infinity, and ``json`` does not know numpy's scalars."""

from __future__ import annotations

from typing import Any

import numpy as np


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN written as null, +/-inf as the strings "inf"/"-inf", numpy scalars as Python numbers,
    tuples as lists and mapping keys as strings (recursively; anything else unchanged)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if v != v else ("inf" if v == float("inf") else ("-inf" if v == float("-inf") else v))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
