"""``python -m tests.reliability.killer [--die|--stop PATH:K:WHEN] [--record FILE] -- ORTHODIFF_ARGS``: the
command line with a SIGKILL (or a SIGSTOP) at an exact point.

Atomic writes publish a file by renaming it (``os.replace``, ``os.rename``), so the renames are the points
where what a kill leaves behind changes. ``--die PATH:K:before`` kills the process group with SIGKILL just
before the K-th rename onto a destination ending in PATH (``/`` separated, relative to the output folder), and
``PATH:K:after`` just after it: the state a ``kill -9`` leaves at that instant (the temporary file written in
full but not yet renamed, or renamed with the next one not yet written). ``--stop`` sends the process SIGSTOP
there instead: it keeps its locks and open files until a SIGCONT (a second run can be started against it).
``--record FILE`` writes every
rename's destination, one absolute path a line, when the command ends: the kill points of a trial are drawn
from that list of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


def install(point: tuple[str, int, str] | None, action=None) -> list[str]:
    """Wrap ``os.replace`` and ``os.rename`` (``action`` at ``point``, default a SIGKILL); returns the
    list their destinations are appended to."""
    action = action or _die
    destinations: list[str] = []
    seen = [0]

    def matches(dst: str) -> bool:
        return point is not None and (dst == point[0] or dst.endswith("/" + point[0]))

    def wrap(real):
        def renamed(src, dst, *args, **kwargs):
            target = os.path.abspath(os.fspath(dst))
            hit = matches(target) and seen[0] + 1 == point[1]
            if hit and point[2] == "before":
                action()
            real(src, dst, *args, **kwargs)
            destinations.append(target)
            if matches(target):
                seen[0] += 1
            if hit and point[2] == "after":
                action()

        return renamed

    os.replace = wrap(os.replace)
    os.rename = wrap(os.rename)
    return destinations


def _die() -> None:
    sys.stdout.flush()
    if os.getpgid(0) == os.getpid():  # started in a session of its own: take any worker processes along
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _stop() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGSTOP)


def parse_point(text: str) -> tuple[str, int, str]:
    path, k, when = text.rsplit(":", 2)
    if when not in ("before", "after"):
        raise SystemExit(f"--die {text}: WHEN must be before or after")
    return path, int(k), when


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="killer")
    point = parser.add_mutually_exclusive_group()
    point.add_argument("--die", type=parse_point, default=None, metavar="PATH:K:WHEN")
    point.add_argument("--stop", type=parse_point, default=None, metavar="PATH:K:WHEN")
    parser.add_argument("--record", type=Path, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    destinations = install(args.die or args.stop, _stop if args.stop else _die)
    from orthodiff_auto.cli import main as cli_main  # after install(): every module sees the wrapped calls

    rc = cli_main(command)
    if args.record is not None:
        args.record.write_text("".join(d + "\n" for d in destinations))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
