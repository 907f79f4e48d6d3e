"""The default logger of long-running stages."""

from __future__ import annotations


def log_line(message: str) -> None:
    """Print a line, flushed at once, so piped or redirected logs show progress live."""
    print(message, flush=True)


__all__ = ["log_line"]
