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
        "exits with code 2 and leaves nothing behind. With --from orthodiffusion --view VIEW, ARCHIVE is one of the "
        "OrthoDiffusion authors' per-plane checkpoints instead, imported into DEST/VIEW/.",
        epilog=example("orthodiff install_pretrained knee_encoders.zip pretrained/knee"),
    )
    add_install_arguments(p, "export_pretrained", "the bundle folder to create (for auto --pretrained-from)")
    p.add_argument("--from", dest="source", choices=("orthodiffusion",), default=None,
                   help="ARCHIVE is not a zip of ours but an OrthoDiffusion authors' per-plane checkpoint "
                   "(sagittal_model.pt, ...): import it into DEST/<view>/ (checked: weights only, cosine schedule "
                   "T=1000, their U-Net's layout); run once per plane into the same DEST")
    p.add_argument("--view", choices=("sag", "cor", "ax"), help="with --from: the plane the checkpoint was "
                   "pretrained on")
    p.add_argument("--weights", choices=("ema", "model"), default="ema",
                   help="with --from: the EMA weights (default) or the raw ones")
    p.add_argument("--num-heads", type=int, default=1,
                   help="with --from: attention heads of the U-Net (weights cannot tell; the authors use 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.source == "orthodiffusion":
        return _import_orthodiffusion(args)
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.sharing import install_pretrained

    manifest = install_pretrained(args.archive, args.dest)
    print(f"{args.dest}: encoders of {', '.join(sorted(manifest.plans))} installed, {len(manifest.files)} files "
          f"verified; exported by {sharing_summary(manifest)}")
    return 0


def _import_orthodiffusion(args) -> int:
    from orthodiff_auto.diffusion.orthodiffusion_import import import_orthodiffusion  # `--help` stays torch-free
    from orthodiff_auto.errors import UserInputError  # imported with the command, as every command does

    if args.view is None:
        raise UserInputError(f"{args.archive}: --from orthodiffusion needs --view sag|cor|ax (the checkpoint's plane)")
    out = import_orthodiffusion(args.archive, args.dest, args.view, args.weights, num_heads=args.num_heads)
    print(f"{out}: {args.view} encoder imported from {args.archive} ({args.weights} weights); "
          f"auto --pretrained-from {args.dest} and plan_and_preprocess --like {args.dest} read it")
    return 0
