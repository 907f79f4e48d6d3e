"""``orthodiff fingerprint RAW_DATASET --out PREPROCESSED_DIR [-np N]``."""

from __future__ import annotations

from orthodiff_auto.commands._shared import add_dataset_and_out, add_worker_options, example, preprocessed_dir_of

ORDER = 20


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fingerprint",
        help="validate a raw dataset and write its fingerprint (spacings, shapes, intensities, label volumes)",
        description="Validate the raw dataset, then measure every train and unlabeled scan (in parallel) and write "
        "PREPROCESSED_DIR/dataset.json and PREPROCESSED_DIR/fingerprint.json. Nothing is written when the dataset "
        "is invalid (exit code 2).",
        epilog=example("orthodiff fingerprint raw preprocessed"),
    )
    add_dataset_and_out(p, "preprocessed folder to write into")
    add_worker_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.preprocessing.stages import fingerprint_raw_dataset

    fingerprint_raw_dataset(args.dataset, preprocessed_dir_of(args), args.num_processes,
                            skip_validation=args.skip_validation, progress=not args.no_progress_bar)
    return 0
