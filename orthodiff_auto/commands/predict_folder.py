"""``orthodiff predict_folder INPUT_DIR OUTPUT_DIR --model MODEL_DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

from orthodiff_auto.commands._shared import (
    SERIES_UID_HELP, add_device_option, add_folds_option, add_no_progress_bar, example,
)
from orthodiff_auto.errors import UserInputError

ORDER = 60


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict_folder",
        help="segment and diagnose every scan in a folder with a trained model folder",
        description="Predict a folder of scans (<case>_<view>.nii.gz, plain image files whose view comes from "
        "the header, nnU-Net's <case>_0000.nii.gz, or DICOM series folders). Segmentations are written under the "
        "input file names (without nnU-Net's _0000) in the input's exact geometry; findings go to "
        "OUTPUT_DIR/findings.csv, what made them to OUTPUT_DIR/prediction_provenance.json. Finished cases are "
        "skipped; an unreadable file or a failing case is reported and the rest goes on (exit code 1 when any "
        "failed). OUTPUT_DIR holds one model's predictions: a run with another model is refused (exit code 2) "
        "unless --overwrite. Nothing to predict is exit code 2, with no OUTPUT_DIR made. A second run into the same OUTPUT_DIR is refused while one runs (exit code 2). Under torchrun "
        "each process takes its share of the cases.",
        epilog=example("orthodiff predict_folder scans/ predictions/ --model model --checkpoint best "
                       "--save-probabilities"),
    )
    p.add_argument("input_dir", nargs="?", type=Path, metavar="INPUT_DIR", help="folder of scans to predict (or -i INPUT_DIR)")
    p.add_argument("output_dir", nargs="?", type=Path, metavar="OUTPUT_DIR",
                   help="folder to write the predictions into (or -o OUTPUT_DIR)")
    p.add_argument("-i", dest="input_option", type=Path, metavar="INPUT_DIR", help="INPUT_DIR, as nnU-Net's -i")
    p.add_argument("-o", dest="output_option", type=Path, metavar="OUTPUT_DIR", help="OUTPUT_DIR, as nnU-Net's -o")
    p.add_argument("-m", "--model", required=True, type=Path, metavar="MODEL_DIR",
                   help="model folder written by auto or find_best_configuration (WORK/model)")
    add_folds_option(p, None, "use only these folds (default: all in the model)")
    p.add_argument("--tta", action="store_true", help="mirroring test-time augmentation (8x slower in 3D)")
    add_device_option(p)
    p.add_argument("--overwrite", action="store_true",
                   help="predict cases whose outputs already exist; into a folder of another model's predictions, "
                   "first remove every output of that run (label maps, findings, qc/, evaluation/)")
    p.add_argument("-chk", "--checkpoint", choices=["final", "best"], default="final",
                   help="each segmentation fold's final checkpoint (default) or its best one (moving average of the "
                   "per-epoch pseudo Dice); "
                   "classifiers always use their final checkpoint, which their thresholds belong to")
    p.add_argument("--step-size", type=float, default=0.5,
                   help="sliding-window step in patch lengths, in (0, 1] (default 0.5: windows overlap by half, as "
                   "nnU-Net; smaller is slower and smoother)")
    p.add_argument("--save-probabilities", "--save_probabilities", action="store_true",
                   help="also write each segmented scan's class probabilities in its own geometry: <name>.npz "
                   "(float16, channel, z, y, x) and <name>.json (spacing, origin, direction, channel -> label)")
    add_no_progress_bar(p, "no bar over the cases (it is drawn only when stderr is a terminal)")
    p.add_argument("--dicom", action="store_true",
                   help="INPUT_DIR is a folder of DICOM studies: each study (series grouped by StudyInstanceUID) is "
                   "one case, each series one view from its orientation; outputs <case>_<view>.nii.gz")
    p.add_argument("--series-uid", action="append", default=[], metavar="VIEW=UID",
                   help="with --dicom: " + SERIES_UID_HELP)
    p.add_argument("--qc", action="store_true",
                   help="also write OUTPUT_DIR/qc/<case>.png: the middle slice of each view with the segmentation's "
                   "contours, and the findings table")
    p.add_argument("--clinical", type=Path, default=None,
                   help="CSV of the cases' clinical columns (case_id plus the columns dataset.json declares, e.g. "
                        "findingsTs.csv), for a classifier that reads them; absent cases or values are missing")
    speed = p.add_argument_group("speed on CUDA (off by default: documentation/benchmarks.md; ignored on the CPU)")
    speed.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its convolution algorithms")
    speed.add_argument("--channels-last", action="store_true", help="channels_last_3d memory format")
    speed.add_argument("--compile", action="store_true", help="torch.compile the networks (slow first cases)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.inference.folder import OutputOptions, PredictionOptions, predict_folder
    # the same reason: training.device imports torch
    from orthodiff_auto.training.device import SpeedOptions

    input_dir, output_dir = _folders(args)
    options = PredictionOptions(
        folds=tuple(args.folds) if args.folds else None, tta=args.tta, device=args.device, checkpoint=args.checkpoint,
        step_size=args.step_size, overwrite=args.overwrite, clinical=args.clinical, dicom=args.dicom,
        series_uids=tuple(args.series_uid), speed=SpeedOptions(args.cudnn_benchmark, args.channels_last, args.compile))
    outputs = OutputOptions(qc=args.qc, probabilities=args.save_probabilities, progress_bar=not args.no_progress_bar)
    report = predict_folder(input_dir, output_dir, args.model, options, outputs)
    print(f"{len(report.predicted)} predicted, {len(report.skipped)} already done, {len(report.failed)} failed")
    if report.failed:
        for name, why in report.failed.items():
            print(f"  {name}: {why}", file=sys.stderr)
        return 1
    return 0


def _folders(args) -> tuple[Path, Path]:
    """INPUT_DIR and OUTPUT_DIR, given as positionals or as nnU-Net's -i and -o."""
    folders = []
    for positional, option, flag in ((args.input_dir, args.input_option, "-i"),
                                     (args.output_dir, args.output_option, "-o")):
        if positional is not None and option is not None:
            raise UserInputError(f"{flag} {option} and the positional {positional}: give the folder once")
        folders.append(positional or option)
    if None in folders:
        raise UserInputError("name the input and the output folder: predict_folder INPUT_DIR OUTPUT_DIR --model "
                             "MODEL_DIR (or -i INPUT_DIR -o OUTPUT_DIR -m MODEL_DIR)")
    return folders[0], folders[1]
