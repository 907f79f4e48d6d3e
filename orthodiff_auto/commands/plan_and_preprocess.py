"""``orthodiff plan_and_preprocess RAW_DATASET --out PREPROCESSED_DIR [--budget ...] [-np N]``."""

from __future__ import annotations

from orthodiff_auto.commands.plan import BUDGET_HELP

ORDER = 23


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan_and_preprocess",
        help="validate, fingerprint, plan and preprocess a raw dataset in one go",
        description="Validate the raw dataset (nothing is written when it is invalid: exit code 2), then run "
        "`fingerprint`, `plan` and `preprocess`, writing fingerprint.json, plans.json and the preprocessed cases "
        "into PREPROCESSED_DIR. Re-running skips cases that are already up to date.",
    )
    p.add_argument("dataset", help="raw dataset folder (holds dataset.json)")
    p.add_argument("--out", required=True, help="preprocessed folder to write into")
    p.add_argument("--budget", default=None, help=BUDGET_HELP)
    p.add_argument("-np", "--num-processes", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    from orthodiff_auto.plans.budget import parse_budget
    from orthodiff_auto.plans.table import format_plans
    from orthodiff_auto.preprocessing.stages import run_fingerprint, run_plan, run_preprocess, validated_dataset

    budget = parse_budget(args.budget)  # bad --budget: exit 2 before anything is read or written
    t0 = time.perf_counter()
    ds = validated_dataset(args.dataset, args.num_processes)
    t1 = time.perf_counter()
    run_fingerprint(ds, args.out, args.num_processes, progress=not args.no_progress)
    t2 = time.perf_counter()
    plans, replaced = run_plan(args.out, budget)
    t3 = time.perf_counter()
    print(format_plans(plans))
    if replaced:
        print(f"note: replaced a different {args.out}/plans.json")
    summary = run_preprocess(ds, args.out, args.num_processes, progress=not args.no_progress)
    t4 = time.perf_counter()
    print(summary.text())
    print(f"time: validate {t1 - t0:.1f} s, fingerprint {t2 - t1:.1f} s, plan {t3 - t2:.1f} s, "
          f"preprocess {t4 - t3:.1f} s")
    return 0
