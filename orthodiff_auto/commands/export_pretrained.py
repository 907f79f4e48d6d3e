"""``orthodiff export_pretrained PRETRAINED OUT.zip``: a pretraining's encoders as one file to share."""

from __future__ import annotations

from orthodiff_auto.commands._shared import add_export_arguments, example, sharing_summary

ORDER = 64


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export_pretrained",
        help="pack pretrained encoders (one per view) into a zip to share, with a sha256 manifest",
        description="Write the encoder_<view>.pt files found under PRETRAINED to OUT.zip as "
        "<view>/encoder_<view>.pt, plus manifest.json (package version, each encoder's plans, license, size and "
        "sha256 of every file). The receiver runs `orthodiff install_pretrained OUT.zip DEST` and uses DEST "
        "with auto --pretrained-from or plan_and_preprocess --like.",
        epilog=example("orthodiff export_pretrained work/results/pretrain knee_encoders.zip --license CC-BY-4.0"),
    )
    add_export_arguments(p, "pretrained", "RESULTS/pretrain, an installed bundle, or one encoder_<view>.pt")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.sharing import export_pretrained

    manifest = export_pretrained(args.pretrained, args.out, license=args.license)
    print(f"{args.out}: encoders of {', '.join(sorted(manifest.plans))}, {sharing_summary(manifest)}")
    return 0
