"""``orthodiff validate_dataset DATASET``."""

from __future__ import annotations

import sys

from orthodiff_auto.commands._shared import example

ORDER = 15


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate_dataset",
        help="check a raw dataset folder and report every problem at once",
        description="Check a raw dataset folder (native or nnU-Net v2 format). Prints a summary when it is "
        "valid; otherwise lists every problem with its file and exits with code 2. Changes nothing.",
        epilog=example("orthodiff validate_dataset raw"),
    )
    p.add_argument("dataset", help="raw dataset folder (holds dataset.json)")
    p.add_argument("-np", "--num-processes", type=int, default=2, help="parallel readers (default 2)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.data.validation import validate_dataset

    report = validate_dataset(args.dataset, num_workers=args.num_processes)
    if not report.ok:
        count = len(report.problems)
        print(f"error: {args.dataset} is not a valid dataset ({count} problem{'' if count == 1 else 's'}):",
              file=sys.stderr)
        print(report.problems_text(), file=sys.stderr)
        return 2
    print(report.summary_text())
    print("dataset is valid")
    return 0
