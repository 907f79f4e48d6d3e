"""``orthodiff plan PREPROCESSED_DIR [--budget gpu:<GB>|gpu|cpu]``."""

from __future__ import annotations

ORDER = 21

BUDGET_HELP = ("memory budget: 'gpu:<GB>' (e.g. gpu:8), 'gpu' (the detected GPU's memory, else 8 GB as nnU-Net) "
               "or 'cpu' (a small plan that trains in minutes on 2 cores); default: gpu")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="plan spacing, patch, network topology and batch size per view from fingerprint.json",
        description="Read PREPROCESSED_DIR/fingerprint.json and write PREPROCESSED_DIR/plans.json (segmentation, "
        "classification and diffusion-pretraining configurations per view). Edit plans.json by hand if you "
        "like, then run `orthodiff preprocess`.",
    )
    p.add_argument("preprocessed", help="preprocessed folder holding fingerprint.json")
    p.add_argument("--budget", default=None, help=BUDGET_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    from orthodiff_auto.plans.budget import parse_budget
    from orthodiff_auto.plans.table import format_plans
    from orthodiff_auto.preprocessing.stages import run_plan

    plans, replaced = run_plan(args.preprocessed, parse_budget(args.budget))
    print(format_plans(plans))
    if replaced:
        print(f"note: replaced a different {args.preprocessed}/plans.json")
    print(f"wrote {args.preprocessed}/plans.json")
    return 0
