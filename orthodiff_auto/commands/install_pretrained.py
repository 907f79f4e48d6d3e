"""``orthodiff install_pretrained ENCODERS.zip DEST``: shared pretrained encoders, verified, as a bundle folder."""

from __future__ import annotations

from orthodiff_auto.commands._shared import add_install_arguments, example, sharing_summary

ORDER = 65


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "install_pretrained",
        help="install a zip from export_pretrained as an encoder bundle, after checking every file's sha256",
        description="Check ENCODERS.zip's manifest (pretrained encoders, from a compatible orthodiff_auto "
        "version: same major and minor number) and every file's size and sha256, refuse names that point "
        "outside DEST, then extract beside DEST and rename into place. DEST/<view>/encoder_<view>.pt serve "
        "auto --pretrained-from DEST, plan_and_preprocess --like DEST and train_fold --pretrained. Any refusal "
        "exits with code 2 and leaves nothing behind.",
        epilog=example("orthodiff install_pretrained knee_encoders.zip pretrained/knee"),
    )
    add_install_arguments(p, "export_pretrained", "the bundle folder to create (for auto --pretrained-from)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.sharing import install_pretrained

    manifest = install_pretrained(args.archive, args.dest)
    print(f"{args.dest}: encoders of {', '.join(sorted(manifest.plans))} installed, {len(manifest.files)} files "
          f"verified; exported by {sharing_summary(manifest)}")
    return 0
