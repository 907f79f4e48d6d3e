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
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.preprocessing.stages import preprocess_raw_dataset

    preprocess_raw_dataset(args.dataset, args.out, args.num_processes, skip_validation=args.skip_validation,
                           progress=not args.no_progress)
    return 0
