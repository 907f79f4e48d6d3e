"""``orthodiff show_plans PREPROCESSED_DIR``."""

from __future__ import annotations

from orthodiff_auto.commands._shared import example

ORDER = 24


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "show_plans",
        help="print the plans of a preprocessed folder as a readable table",
        description="Print PREPROCESSED_DIR/plans.json (or a plans file given directly) as tables: spacing, "
        "patch, batch, stages, pooling per axis, features, memory estimate per view; each view's segmentation "
        "configurations (2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres) with their data folders.",
        epilog=example("orthodiff show_plans preprocessed"),
    )
    p.add_argument("preprocessed", help="preprocessed folder holding plans.json, or a plans.json file")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.plans.table import plans_file_table

    print(plans_file_table(args.preprocessed))
    return 0
