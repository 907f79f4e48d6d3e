"""``orthodiff preprocess RAW_DATASET --out PREPROCESSED_DIR [-np N]``."""

from __future__ import annotations

ORDER = 22


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "preprocess",
        help="crop, resample and normalise every train/unlabeled scan as plans.json says",
        description="Preprocess every train and unlabeled scan with PREPROCESSED_DIR/plans.json into "
        "PREPROCESSED_DIR/<view>/. Cases already up to date (same source files, same plan) are skipped, so an "
        "interrupted run resumes; every file is written atomically.",
    )
    p.add_argument("dataset", help="raw dataset folder (holds dataset.json)")
    p.add_argument("--out", required=True, help="preprocessed folder holding plans.json")
    p.add_argument("-np", "--num-processes", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--skip-validation", action="store_true", help="do not validate image contents first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from orthodiff_auto.data.dataset import load_raw_dataset
    from orthodiff_auto.errors import UserInputError
    from orthodiff_auto.preprocessing.stages import PLANS_JSON, run_preprocess, validated_dataset

    if not (Path(args.out) / PLANS_JSON).is_file():
        raise UserInputError(f"{Path(args.out) / PLANS_JSON}: plans file not found (run `orthodiff plan` first)")
    ds = load_raw_dataset(args.dataset) if args.skip_validation else validated_dataset(args.dataset, args.num_processes)
    summary = run_preprocess(ds, args.out, args.num_processes, progress=not args.no_progress)
    print(summary.text())
    return 0
