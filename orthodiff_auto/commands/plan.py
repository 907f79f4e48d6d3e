"""``orthodiff plan PREPROCESSED_DIR [--budget gpu:<GB>|gpu|cpu]``."""

from __future__ import annotations

from orthodiff_auto.commands._shared import BUDGET_HELP, example

ORDER = 21


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="plan spacing, patch, network topology and batch size per view from fingerprint.json",
        description="Read PREPROCESSED_DIR/fingerprint.json and write PREPROCESSED_DIR/plans.json (segmentation, "
        "classification and diffusion-pretraining configurations per view). Edit plans.json by hand if you "
        "like, then run `orthodiff preprocess`.",
        epilog=example("orthodiff plan preprocessed --budget gpu:8"),
    )
    p.add_argument("preprocessed", help="preprocessed folder holding fingerprint.json")
    p.add_argument("--budget", default=None, help=BUDGET_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.preprocessing.stages import plan_from_fingerprint

    plan_from_fingerprint(args.preprocessed, args.budget)
    return 0
