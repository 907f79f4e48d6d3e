"""``orthodiff plan_and_preprocess RAW_DATASET --out PREPROCESSED_DIR [--budget ...] [--like PRETRAINED] [-np N]``."""

from __future__ import annotations

from orthodiff_auto.commands._shared import (
    BUDGET_HELP, add_dataset_and_out, add_worker_options, example, preprocessed_dir_of,
)

ORDER = 23


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan_and_preprocess",
        help="validate, fingerprint, plan and preprocess a raw dataset in one go",
        description="Validate the raw dataset (nothing is written when it is invalid: exit code 2), then run "
        "`fingerprint`, `plan` and `preprocess`, writing fingerprint.json, plans.json and the preprocessed cases "
        "into PREPROCESSED_DIR. Re-running skips cases that are already up to date.",
        epilog=example("orthodiff plan_and_preprocess raw preprocessed --budget cpu -np 4"),
    )
    add_dataset_and_out(p, "preprocessed folder to write into")
    p.add_argument("--budget", default=None, help=BUDGET_HELP)
    p.add_argument("--like", default=None, metavar="PRETRAINED",
                   help="plan like a pretrained encoder bundle (an `orthodiff pretrain` results folder such as "
                   "WORK/results/pretrain, or one encoder_<view>.pt): its views adopt the encoder's architecture, "
                   "normalisation and spacing so its weights load; patch and batch are planned for this dataset")
    add_worker_options(p, skip_validation=False)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.like is not None:
        # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
        from orthodiff_auto.pipeline.adaptation import plan_and_preprocess_like

        plan_and_preprocess_like(args.dataset, preprocessed_dir_of(args), args.like, args.budget,
                                 args.num_processes, progress=not args.no_progress_bar)
        return 0
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.preprocessing.stages import plan_and_preprocess

    plan_and_preprocess(args.dataset, preprocessed_dir_of(args), args.budget, args.num_processes,
                        progress=not args.no_progress_bar)
    return 0
