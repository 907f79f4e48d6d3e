"""``orthodiff preprocess RAW_DATASET --out PREPROCESSED_DIR [-np N]``."""

from __future__ import annotations

from orthodiff_auto.commands._shared import add_dataset_and_out, add_worker_options, example, preprocessed_dir_of

ORDER = 22


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "preprocess",
        help="crop, resample and normalise every train/unlabeled scan as plans.json says",
        description="Preprocess every train and unlabeled scan with PREPROCESSED_DIR/plans.json into "
        "PREPROCESSED_DIR/<view>/. Cases already up to date (same source files, same plan) are skipped, so an "
        "interrupted run resumes; every file is written atomically.",
        epilog=example("orthodiff preprocess raw preprocessed -np 4"),
    )
    add_dataset_and_out(p, "preprocessed folder holding plans.json")
    add_worker_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.preprocessing.stages import preprocess_raw_dataset

    preprocess_raw_dataset(args.dataset, preprocessed_dir_of(args), args.num_processes,
                           skip_validation=args.skip_validation, progress=not args.no_progress_bar)
    return 0
