"""The default logger of long-running stages, and the timestamped lines of their log files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


def log_line(message: str) -> None:
    """Print a line, flushed at once, so piped or redirected logs show progress live."""
    print(message, flush=True)


def timestamped(message: str, now: datetime | None = None) -> str:
    """``2026-11-30T03:15:02+00:00 message``: local time with its UTC offset, so lines from machines in other
    time zones (a DDP node, a colleague's run) still compare."""
    stamp = (now or datetime.now().astimezone()).isoformat(timespec="seconds")
    return f"{stamp} {message}"


def append_log_line(path: Path | str, message: str) -> None:
    """Append ``message`` with its timestamp to a run's log file (one line per message line)."""
    with open(path, "a") as f:
        for line in message.splitlines() or [""]:
            f.write(timestamped(line) + "\n")


__all__ = ["append_log_line", "log_line", "timestamped"]
