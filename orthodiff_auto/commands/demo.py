"""``orthodiff demo``: the main job on the embedded synthetic knee data, as ``python -m orthodiff_auto.demo``."""

from __future__ import annotations

from orthodiff_auto.commands._shared import example
from orthodiff_auto.demo import EXAMPLE, add_arguments, run_from_args

ORDER = 100


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline on a generated synthetic knee dataset, ending with a table of Dice and AUROC",
        description="Generate the synthetic knee dataset (30 labelled, 10 unlabeled, 40 test cases) in WORK/raw, "
        "validate it, run auto with the cpu budget (fold 0, pretrained variants only, unless --folds and "
        "--compare-scratch say otherwise), predict_folder on its test scans and evaluate them. About 15 minutes "
        "on 2 CPU cores; a rerun reuses what is done (the same as `python -m orthodiff_auto.demo` and "
        "`make demo`).",
        epilog=example(EXAMPLE),
    )
    add_arguments(p)
    p.set_defaults(func=run_from_args)
