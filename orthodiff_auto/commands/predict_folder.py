"""``orthodiff predict_folder INPUT_DIR OUTPUT_DIR --model MODEL_DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

from orthodiff_auto.commands._shared import SERIES_UID_HELP, add_device_option, example

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
        "failed). A second run into the same OUTPUT_DIR is refused while one runs (exit code 2). Under torchrun "
        "each process takes its share of the cases.",
        epilog=example("orthodiff predict_folder scans/ predictions/ --model model --checkpoint best "
                       "--save-probabilities"),
    )
    p.add_argument("input_dir", type=Path)
    p.add_argument("output_dir", type=Path)
    p.add_argument("--model", required=True, type=Path, help="model folder (find_best_configuration / auto)")
    p.add_argument("--folds", nargs="+", type=int, help="use only these folds (default: all in the model)")
    p.add_argument("--tta", action="store_true", help="mirroring test-time augmentation (8x slower in 3D)")
    add_device_option(p)
    p.add_argument("--overwrite", action="store_true", help="predict cases whose outputs already exist")
    p.add_argument("--checkpoint", choices=["final", "best"], default="final",
                   help="each segmentation fold's final checkpoint (default) or its best one (moving average of the "
                   "per-epoch pseudo Dice); "
                   "classifiers always use their final checkpoint, which their thresholds belong to")
    p.add_argument("--step-size", type=float, default=0.5,
                   help="sliding-window step in patch lengths, in (0, 1] (default 0.5: windows overlap by half, as "
                   "nnU-Net; smaller is slower and smoother)")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write each segmented scan's class probabilities in its own geometry: <name>.npz "
                   "(float16, channel, z, y, x) and <name>.json (spacing, origin, direction, channel -> label)")
    p.add_argument("--no-progress-bar", action="store_true",
                   help="no bar over the cases (it is drawn only when stderr is a terminal)")
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
    from orthodiff_auto.inference.folder import predict_folder
    # the same reason: training.device imports torch
    from orthodiff_auto.training.device import SpeedOptions

    speed = SpeedOptions(args.cudnn_benchmark, args.channels_last, args.compile)
    report = predict_folder(args.input_dir, args.output_dir, args.model, folds=args.folds, tta=args.tta,
                            device=args.device, overwrite=args.overwrite, qc=args.qc, clinical=args.clinical,
                            checkpoint=args.checkpoint, step_size=args.step_size,
                            save_probabilities=args.save_probabilities, progress_bar=not args.no_progress_bar,
                            dicom=args.dicom, series_uids=args.series_uid, speed=speed)
    print(f"{len(report.predicted)} predicted, {len(report.skipped)} already done, {len(report.failed)} failed")
    if report.failed:
        for name, why in report.failed.items():
            print(f"  {name}: {why}", file=sys.stderr)
        return 1
    return 0
