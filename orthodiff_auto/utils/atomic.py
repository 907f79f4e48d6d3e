"""Atomic writes: write to a temporary file beside the target, then rename over it.

An interrupted run therefore never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(target: Path | str, write_errors: tuple[type[BaseException], ...] = ()) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``target``.

    The temporary name keeps the target's full suffix (e.g. ``.nii.gz``) so writers that pick a format
    from the extension still work. A failed write (an ``OSError`` such as a full disk, or one of
    ``write_errors``: what a writer in C raises instead) removes the temporary and raises an ``OSError`` whose
    filename is ``target``, so the message names the file the user knows.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + "".join(target.suffixes),
                                        dir=target.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(target)) from e
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the permissions a plain open() would
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(target)) from e
    except write_errors as e:
        raise OSError(errno.EIO, f"write failed, the disk may be full ({first_line(e)})", str(target)) from e
    finally:
        if tmp.exists():
            tmp.unlink()


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (its type's name when there is none)."""
    return next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)


def _umask() -> int:
    global _UMASK
    if _UMASK is None:  # read once: os.umask can only be read by setting it, which is not thread-safe
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def write_text_atomic(target: Path | str, text: str) -> None:
    """UTF-8 whatever the locale (a process whose locale is C would otherwise fail on any non-ASCII character)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: Path | str, obj: Any) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")
