"""``orthodiff install_model MODEL.zip DEST``: a shared model, verified, as a model folder."""

from __future__ import annotations

from pathlib import Path

ORDER = 63


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "install_model",
        help="install a zip from export_model as a model folder, after checking every file's sha256",
        description="Check MODEL.zip's manifest (a model, from a compatible orthodiff_auto version: same major "
        "and minor number) and every file's size and sha256, refuse names that point outside DEST, then "
        "extract beside DEST and rename into place: DEST (new or empty) is either the whole model folder or "
        "absent. Any refusal exits with code 2 and leaves nothing behind.",
        epilog="example: orthodiff install_model knee_model.zip models/knee",
    )
    p.add_argument("archive", type=Path, help="zip written by `orthodiff export_model`")
    p.add_argument("dest", type=Path, help="the model folder to create")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.sharing import install_model

    manifest = install_model(args.archive, args.dest)
    print(f"{args.dest}: model installed ({len(manifest.files)} files verified; exported by orthodiff_auto "
          f"{manifest.package_version} on {manifest.created}; license {manifest.license or 'not stated'})")
    return 0
