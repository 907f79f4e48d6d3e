"""``orthodiff install_model MODEL.zip DEST``: a shared model, verified, as a model folder."""

from __future__ import annotations

from orthodiff_auto.commands._shared import add_install_arguments, example, sharing_summary

ORDER = 63


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "install_model",
        help="install a zip from export_model as a model folder, after checking every file's sha256",
        description="Check MODEL.zip's manifest (a model, from a compatible orthodiff_auto version: same major "
        "and minor number) and every file's size and sha256, refuse names that point outside DEST, then "
        "extract beside DEST and rename into place: DEST (new or empty) is either the whole model folder or "
        "absent. Any refusal exits with code 2 and leaves nothing behind.",
        epilog=example("orthodiff install_model knee_model.zip models/knee"),
    )
    add_install_arguments(p, "export_model", "the model folder to create (for predict_folder --model)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.sharing import install_model

    manifest = install_model(args.archive, args.dest)
    print(f"{args.dest}: model installed, {len(manifest.files)} files verified; exported on {manifest.created} by "
          f"{sharing_summary(manifest)}")
    return 0
