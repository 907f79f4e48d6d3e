"""``orthodiff convert_dicom STUDIES_DIR OUT_RAW``."""

from __future__ import annotations

from pathlib import Path

from orthodiff_auto.commands._shared import SERIES_UID_HELP, example

ORDER = 12


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert_dicom",
        help="turn a folder of DICOM studies into the images of a raw dataset",
        description="Each study (series grouped by StudyInstanceUID, found in any sub-folder) becomes one case, "
        "each series one view from its orientation (slice normal L-R: sag, A-P: cor, S-I: ax); localizers and "
        "series of other views are left out. The case id is the study's top folder name under STUDIES_DIR, or its "
        "StudyInstanceUID when that folder holds several studies. Writes OUT_RAW/imagesTr/<case>_<view>.nii.gz "
        "(or imagesTs/, unlabeled/) and OUT_RAW/dicom_series.csv (which series became which file); labels, "
        "findings.csv and dataset.json are yours to add. A study with two series of one view stops the command "
        "(exit 2, naming them) before anything is written: choose with --series-uid.",
        epilog=example("orthodiff convert_dicom knee_studies/ raw/ --series-uid sag=1.2.840.1234.5"),
    )
    p.add_argument("studies_dir", type=Path, help="folder of DICOM studies (any layout of sub-folders)")
    p.add_argument("out_raw", type=Path, help="raw dataset folder to write the images into")
    p.add_argument("--subset", choices=("train", "test", "unlabeled"), default="train",
                   help="imagesTr/ (default), imagesTs/ or unlabeled/")
    p.add_argument("--views", nargs="+", help="views to keep (default: OUT_RAW/dataset.json's views when it "
                   "exists, else sag cor ax)")
    p.add_argument("--series-uid", action="append", default=[], metavar="VIEW=UID", help=SERIES_UID_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace images that exist already")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.data.dicom_convert import convert_dicom_studies

    report = convert_dicom_studies(args.studies_dir, args.out_raw, subset=args.subset, views=args.views,
                                   series_uids=args.series_uid, overwrite=args.overwrite)
    print(f"{len(report.studies)} studies, {len(report.written)} images written to {args.out_raw}")
    return 0
