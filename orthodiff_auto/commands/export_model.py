"""``orthodiff export_model MODEL_DIR OUT.zip``: a trained model folder as one file to share."""

from __future__ import annotations

from orthodiff_auto.commands._shared import add_export_arguments, example, sharing_summary

ORDER = 62


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export_model",
        help="pack a model folder into a zip to share (optimizer state stripped, sha256 manifest)",
        description="Write MODEL_DIR (find_best_configuration / auto / install_model) to OUT.zip: model.json, "
        "plans.json and the fold checkpoints without their optimizer and gradient-scaler state, plus "
        "manifest.json (package version, plans, license, size and sha256 of every file). The receiver runs "
        "`orthodiff install_model OUT.zip DEST`.",
        epilog=example("orthodiff export_model work/model knee_model.zip --license CC-BY-4.0"),
    )
    add_export_arguments(p, "model_dir", "model folder (find_best_configuration, auto or install_model)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.sharing import export_model

    manifest = export_model(args.model_dir, args.out, license=args.license)
    print(f"{args.out}: {len(manifest.files)} files, {sharing_summary(manifest)}")
    return 0
