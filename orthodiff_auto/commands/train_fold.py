"""``orthodiff train_fold PREPROCESSED_DIR {seg,cls} VIEW FOLD``."""

from __future__ import annotations

from pathlib import Path

from orthodiff_auto.commands._shared import (
    ListSettings, add_device_option, add_monitor_options, example, monitor_overrides,
)

ORDER = 40


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train_fold",
        help="train one task, view and cross-validation fold",
        description="Train segmentation (seg) or classification (cls) for one view and fold, then validate the "
        "fold. Runs under torchrun for several GPUs or nodes (DistributedDataParallel).",
        epilog=example("orthodiff train_fold preprocessed seg sag 0 --pretrained results/pretrain/sag/encoder_sag.pt"),
    )
    p.add_argument("preprocessed_dir", type=Path, help="preprocessed folder (plan_and_preprocess, or WORK/preprocessed)")
    p.add_argument("task", help="seg (segmentation) or cls (findings classification)")
    p.add_argument("view", help="sag, cor or ax (cls also: fused)")
    p.add_argument("fold", help="0-4 or all")
    p.add_argument("-c", "--configuration", default="3d_fullres",
                   help="segmentation configuration (nnU-Net's): 3d_fullres (default), 2d, 3d_lowres or "
                   "3d_cascade_fullres, as planned for the view (show_plans); the cascade needs 3d_lowres's folds "
                   "first")
    p.add_argument("--config", default="full", help="preset: smoke (seconds), demo (minutes on a CPU) or full "
                   "(GPU, nnU-Net length); default full, as auto and pretrain")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (keys, types and defaults: --list-settings)")
    p.add_argument("--list-settings", action=ListSettings)
    p.add_argument("--pretrained", "-pretrained_weights", type=Path,
                   help="encoder checkpoint written by `orthodiff pretrain` (nnU-Net's -pretrained_weights)")
    p.add_argument("--label-fraction", type=float, default=1.0,
                   help="train on this fraction of the fold's labelled cases, stratified per finding (at least one "
                   "positive and one negative of every finding the fold has)")
    p.add_argument("--label-fraction-seed", type=int, default=0,
                   help="which stratified subset --label-fraction takes (default 0; other seeds train in "
                   "<variant>_frac<F>_seed<S>)")
    p.add_argument("--npz", action="store_true",
                   help="seg: keep each validation case's class probabilities on the view's grid "
                   "(validation_probabilities/, float16), which find_best_configuration needs to score ensembles "
                   "of two configurations (nnU-Net's --npz; auto sets it when a view trains several)")
    add_device_option(p)
    p.add_argument("--results", type=Path, help="results folder (default: results/ beside PREPROCESSED_DIR)")
    p.add_argument("--continue", "--c", dest="resume", action="store_true",
                   help="resume from the latest checkpoint (nnU-Net's --c)")
    add_monitor_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.train_fold import run_train_fold

    run_train_fold(args.preprocessed_dir, args.task, args.view, args.fold, config=args.config,
                   overrides=args.set + monitor_overrides(args),
                   results=args.results, pretrained=args.pretrained, label_fraction=args.label_fraction,
                   label_fraction_seed=args.label_fraction_seed,
                   device=args.device, resume=args.resume, configuration=args.configuration,
                   save_probabilities=args.npz)
    return 0
