"""An advisory lock on an output folder (``FOLDER/.orthodiff.lock``): two runs never write into one folder at once.

``fcntl.flock`` on the lock file: the kernel releases it when the holder exits, however it exits (``kill -9``
included), so a lock is never stale; the file itself stays (removing it could let a third run lock a new file
while a second still waits on the old one). The holder writes its PID into the file, and a refused run names
it. Processes of one torchrun job take the lock ``shared``: they may write side by side, and a separate run
(exclusive) is refused while they hold it (two torchrun jobs into one folder are not told apart).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".orthodiff.lock"


@contextlib.contextmanager
def folder_lock(folder: Path | str, shared: bool = False) -> Iterator[Path]:
    """Hold the folder's lock (creating the folder) for the ``with`` block; an ``OSError`` (EBUSY) naming the
    folder and the holder's PID when another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise OSError(errno.EBUSY, f"another orthodiff run{f' (PID {holder})' if holder else ''} is writing "
                          "into this folder; wait for it to end, or stop it", str(folder)) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> int | None:
    """The PID written in the lock file, when that process is alive."""
    try:
        pid = int(os.pread(fd, 32, 0).split()[0])
        os.kill(pid, 0)
        return pid
    except (ValueError, IndexError, ProcessLookupError):
        return None
    except PermissionError:  # alive, owned by another user
        return pid
