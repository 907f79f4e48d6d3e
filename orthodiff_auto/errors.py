"""Errors that the command line turns into a clear message and exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


class UserInputError(Exception):
    """Bad input from the user (a file, an argument): reported without a traceback, exit code 2."""

    exit_code = 2


class DatasetError(UserInputError):
    """One or more problems with a dataset folder; each problem names its file."""

    def __init__(self, problems: Iterable["Problem"]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Problem:
    """A single problem: the file it concerns and what is wrong with it."""

    __slots__ = ("path", "message")

    def __init__(self, path: Path | str, message: str):
        self.path = Path(path)
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({str(self.path)!r}, {self.message!r})"
