"""Deterministic seeds from strings (Python's ``hash()`` is salted per process, so it cannot be used)."""

from __future__ import annotations

import zlib


def stable_seed(*parts: str) -> int:
    """The same seed for the same parts, in every process and on every run."""
    return zlib.crc32("/".join(parts).encode())
