"""``orthodiff show_plans PREPROCESSED_DIR``."""

from __future__ import annotations

ORDER = 24


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "show_plans",
        help="print the plans of a preprocessed folder as a readable table",
        description="Print PREPROCESSED_DIR/plans.json (or a plans file given directly) as tables: spacing, "
        "patch, batch, stages, pooling per axis, features, memory estimate per view.",
    )
    p.add_argument("preprocessed", help="preprocessed folder holding plans.json, or a plans.json file")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.plans.table import format_plans

    path = Path(args.preprocessed)
    if path.is_dir():
        path = path / "plans.json"
    print(format_plans(Plans.load(path)))
    return 0
