"""``orthodiff export_pretrained PRETRAINED OUT.zip``: a pretraining's encoders as one file to share."""

from __future__ import annotations

from pathlib import Path

ORDER = 64


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export_pretrained",
        help="pack pretrained encoders (one per view) into a zip to share, with a sha256 manifest",
        description="Write the encoder_<view>.pt files found under PRETRAINED (RESULTS/pretrain, an installed "
        "bundle, or one encoder file) to OUT.zip as <view>/encoder_<view>.pt, plus manifest.json (package "
        "version, each encoder's plans, license, size and sha256 of every file). The receiver runs "
        "`orthodiff install_pretrained OUT.zip DEST` and uses DEST with auto --pretrained-from or "
        "plan_and_preprocess --like.",
        epilog="example: orthodiff export_pretrained work/results/pretrain knee_encoders.zip --license CC-BY-4.0",
    )
    p.add_argument("pretrained", type=Path)
    p.add_argument("out", type=Path, help="the zip file to write (replaced atomically if it exists)")
    p.add_argument("--license", default=None,
                   help="the terms you share it under, recorded in the manifest (e.g. CC-BY-4.0)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.sharing import export_pretrained

    manifest = export_pretrained(args.pretrained, args.out, license=args.license)
    print(f"{args.out}: encoders of {', '.join(sorted(manifest.plans))}, orthodiff_auto "
          f"{manifest.package_version}, license {manifest.license or 'not stated'}")
    return 0
