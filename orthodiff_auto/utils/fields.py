"""Reading typed records from JSON: each helper checks one field and raises ``FieldError`` naming it.

Plans (``plans.schema``) and the architecture spec (``networks.spec``) are frozen dataclasses read back from
hand-editable JSON; these helpers turn a wrong field into a message that says which field and why.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any


class FieldError(ValueError):
    """A field of a record is missing or invalid (``Plans.load`` turns it into a UserInputError naming the file)."""


def ints(v: Any, name: str, n: int | None = 3) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in v)
        if any(float(x) != int(x) for x in v):
            raise ValueError
    except (TypeError, ValueError):
        raise FieldError(f"{name} must be a list of integers, got {v!r}") from None
    if n is not None and len(out) != n:
        raise FieldError(f"{name} must have {n} entries, got {v!r}")
    return out


def floats(v: Any, name: str, n: int | None = 3) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise FieldError(f"{name} must be a list of numbers, got {v!r}") from None
    if n is not None and len(out) != n:
        raise FieldError(f"{name} must have {n} entries, got {v!r}")
    if not all(math.isfinite(x) for x in out):
        raise FieldError(f"{name} must be finite, got {v!r}")
    return out


def take(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise FieldError(f"{where} must be a JSON object, got {type(d).__name__}")
    if key not in d:
        raise FieldError(f"{where}.{key} is missing")
    return d[key]


def check_known_keys(d: dict, cls: type, where: str) -> None:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise FieldError(f"{where}: unknown keys {unknown} (allowed: {sorted(allowed)})")
