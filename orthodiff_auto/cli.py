"""The ``orthodiff`` command line: one program, one sub-command per pipeline stage.

Each sub-command lives in ``orthodiff_auto/commands/<name>.py`` and exposes ``ORDER`` (its place in
``orthodiff --help``, pipeline order) and ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code. Modules there are found
automatically, so adding a stage touches no central list. Heavy imports happen inside those callables,
so ``orthodiff --help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import pkgutil
import sys
import textwrap
import traceback

import orthodiff_auto.commands
from orthodiff_auto import __version__
from orthodiff_auto.errors import UserInputError


def _command_modules() -> list:
    package = orthodiff_auto.commands
    modules = [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 1000), m.__name__))


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that an ``example: ...`` epilog is printed on one line, as it is typed (a
    wrapped command line cannot be pasted into a shell)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example: "):
            return indent + text
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orthodiff",
        description="Self-configuring MSK MRI segmentation and diagnosis on diffusion pretraining.",
    )
    parser.add_argument("--version", action="version", version=f"orthodiff_auto {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    for command in sub.choices.values():
        command.formatter_class = _HelpFormatter
    return parser


OPTIONS_DOC_WIDTH = 100  # the width of the --help texts in documentation/options.md


def command_help(name: str, width: int = OPTIONS_DOC_WIDTH) -> str:
    """``orthodiff NAME --help`` as printed on a terminal ``width + 2`` columns wide (argparse wraps to the
    terminal's width less 2)."""
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[name]
    sub.formatter_class = functools.partial(_HelpFormatter, width=width)
    return sub.format_help()


def options_markdown() -> str:
    """documentation/options.md: every command's --help, generated from the parsers (tests/test_options_doc.py
    keeps the file equal to it; write it with ``python -m orthodiff_auto.cli --options-markdown``)."""
    parser = build_parser()
    names = list(next(a for a in parser._actions if a.dest == "command").choices)
    intro = ("Every command's `--help`, in pipeline order, generated from the parsers (`orthodiff_auto.cli."
             "options_markdown`; regenerate with `python -m orthodiff_auto.cli --options-markdown > "
             "documentation/options.md`). Paths are positional in every command; options shared by several "
             "commands have one spelling (old ones still parse, hidden), with nnU-Net's short forms where the "
             "concept is the same: `-i`, `-o`, `-m` (model folder), `-f` (folds), `-chk` (checkpoint), "
             "`-np` (processes), `--save_probabilities`, `-pretrained_weights`, `--c` (continue); `-c` is kept "
             "for a configuration. `orthodiff train_fold --list-settings` lists every `--set` key with its type "
             "and its value in each preset.")
    parts = ["# Command-line options", "", textwrap.fill(intro, 115, break_on_hyphens=False), ""]
    for name in names:
        parts += [f"## `orthodiff {name}`", "", "```text", command_help(name).rstrip(), "```", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the system refused a file (full disk, permissions, a folder another run holds)
        if os.environ.get("ORTHODIFF_DEBUG"):
            traceback.print_exc()
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    if sys.argv[1:] == ["--options-markdown"]:
        print(options_markdown())
        sys.exit(0)
    sys.exit(main())
