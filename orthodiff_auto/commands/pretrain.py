"""``orthodiff pretrain PREPROCESSED_DIR VIEW``: self-supervised diffusion pretraining of one view's encoder."""

from __future__ import annotations

from orthodiff_auto.commands._shared import (
    ListSettings, add_device_option, add_monitor_options, example, monitor_overrides,
)

ORDER = 30


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="diffusion pretraining of one view's encoder on all its train and unlabeled scans",
        description="Train a 3D denoising diffusion model (DDPM: schedule, T and prediction from the plan -- "
        "cosine, 1000, epsilon by default -- and an EMA of the weights) on random patches of every preprocessed "
        "train and unlabeled scan of VIEW. Its denoiser's encoder is the view's planned segmentation encoder; "
        "the EMA encoder weights are exported to RESULTS/pretrain/VIEW/encoder_VIEW.pt for "
        "`train_fold --pretrained`, with ddim_samples.png (DDIM samples from noise and a denoised real patch) "
        "as a sanity check. Under torchrun it trains with DistributedDataParallel.",
        epilog=example("orthodiff pretrain preprocessed sag --config full --device cuda:1"),
    )
    p.add_argument("preprocessed_dir", help="preprocessed folder (holds plans.json and one folder per view)")
    p.add_argument("view", help="imaging view to pretrain (sag, cor or ax)")
    p.add_argument("--config", default="full", help="preset: smoke, demo or full (default full)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training or diffusion setting, e.g. --set num_epochs=5 --set ema_decay=0.99 "
                   "(repeatable; keys, types and defaults: --list-settings)")
    p.add_argument("--list-settings", action=ListSettings, diffusion=True)
    p.add_argument("--continue", "--c", dest="resume", action="store_true",
                   help="continue from the latest checkpoint in the output folder")
    p.add_argument("--results", default=None,
                   help="results root (default PREPROCESSED_DIR/../results); output goes to RESULTS/pretrain/VIEW")
    add_device_option(p)
    add_monitor_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.diffusion.run import pretrain

    pretrain(args.preprocessed_dir, args.view, preset=args.config, overrides=args.overrides + monitor_overrides(args), resume=args.resume,
             results=args.results, device=args.device)
    return 0
