"""``orthodiff find_best_configuration PREPROCESSED_DIR --out MODEL_DIR``."""

from __future__ import annotations

from pathlib import Path

from orthodiff_auto.commands._shared import add_folds_option, example

ORDER = 50


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "find_best_configuration",
        help="choose per task from the cross-validation results and write the model folder",
        description="Aggregate the folds' validation results; choose per segmentation view among the "
        "configurations (3d_fullres, 2d, 3d_lowres, 3d_cascade_fullres) and initialisations (from scratch, "
        "pretrained) by the mean Dice pooled over the folds' validation cases (a cascade with its previous "
        "stage), and for the findings between single views and fusion modes (pooled CV "
        "macro AUROC), then per finding the reader whose pooled CV AUROC on it clearly beats that winner (paired "
        "bootstrap 95% CI of the gain above zero); copy the chosen fold checkpoints, plans and thresholds into "
        "MODEL_DIR.",
        epilog=example("orthodiff find_best_configuration preprocessed --out model"),
    )
    p.add_argument("preprocessed_dir", type=Path, help="preprocessed folder the folds were trained on")
    p.add_argument("--out", required=True, type=Path, help="model folder to write (what predict_folder --model takes)")
    p.add_argument("--results", type=Path, help="results folder (default: results/ beside PREPROCESSED_DIR)")
    add_folds_option(p, [0, 1, 2, 3, 4], "the folds every chosen configuration must have finished (default 0 1 2 "
                     "3 4; after training only fold 0: --folds 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.model_selection import find_best_configuration

    find_best_configuration(args.preprocessed_dir, args.out, args.results, folds=args.folds)
    print(f"model folder written: {args.out}")
    return 0
