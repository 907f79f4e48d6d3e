"""``orthodiff auto RAW_DATASET --work DIR``."""

from __future__ import annotations

from pathlib import Path

from orthodiff_auto.commands._shared import (
    BUDGET_HELP, ListSettings, add_device_option, add_folds_option, add_monitor_options, add_num_processes, example,
    monitor_overrides,
)

ORDER = 80


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "auto",
        help="run every stage: validate, plan, preprocess, pretrain, train all folds, choose the model",
        description="Run the whole pipeline on a raw dataset, skipping stages that are already done (re-run it "
        "after an interruption to go on). Every setting (presets, --set, --cls-set, --pretrain-set, --fusion, "
        "--folds, --budget, the folders) is checked before the first stage writes anything (exit code 2 naming "
        "it). A stage done with other settings (another --budget, config or "
        "--set) is refused, naming its folder, unless --redo-stale. While one auto runs on a work folder a "
        "second is refused (exit code 2). The final model folder is WORK/model (what "
        "predict_folder --model takes); ends with a cross-validation report.",
        epilog=example("orthodiff auto raw --work work --budget cpu --config demo --folds 0"),
    )
    p.add_argument("dataset", type=Path, help="raw dataset folder (holds dataset.json)")
    p.add_argument("--work", required=True, type=Path,
                   help="working folder, made if absent: preprocessed/, results/ and the final model/")
    p.add_argument("--budget", default=None, help=BUDGET_HELP)
    p.add_argument("--config", default="full",
                   help="training preset for every fold: smoke (seconds, tests), demo (minutes on a CPU with "
                   "--budget cpu) or full (nnU-Net length, for a GPU); default full")
    p.add_argument("--pretrain-config", default=None, help="preset for diffusion pretraining (default: --config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config value for every fold (keys: --list-settings)")
    p.add_argument("--list-settings", action=ListSettings, diffusion=True)
    p.add_argument("--cls-set", dest="classification_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override for classification runs only, after --set (e.g. --cls-set num_epochs=12)")
    p.add_argument("--pretrain-set", dest="pretrain_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a diffusion pretraining value (training or diffusion keys: --list-settings)")
    add_folds_option(p, [0, 1, 2, 3, 4], "cross-validation folds to train (default 0 1 2 3 4; the splits are "
                     "always 5-fold)")
    p.add_argument("--pretrained-from", type=Path, default=None, metavar="PRETRAINED",
                   help="a pretrained encoder bundle (another run's WORK/results/pretrain, or one encoder_<view>.pt): "
                   "its views are planned like its encoders (architecture, normalisation, spacing; patch and batch "
                   "planned for this dataset) and fine-tune from them instead of pretraining here")
    pretraining = p.add_mutually_exclusive_group()
    pretraining.add_argument("--no-pretrain", action="store_true",
                             help="skip diffusion pretraining here (views without a --pretrained-from encoder: from "
                             "scratch only)")
    pretraining.add_argument("--pretrain", action="store_true",
                             help="pretrain even when nothing trained reads the encoders (by default pretraining runs "
                             "only for a configuration of the encoder's architecture or an image reader)")
    p.add_argument("--no-frozen-features", action="store_true",
                   help="with pretraining, skip probe and the classifiers on frozen diffusion features")
    p.add_argument("--no-anatomy-features", action="store_true",
                   help="skip the anatomy-feature classifier (logistic regression on each fold's segmentations)")
    p.add_argument("--no-finetune-classifiers", action="store_true",
                   help="skip the fine-tuned (end-to-end) classifiers per view and fused")
    p.add_argument("--no-noised-classifiers", action="store_true",
                   help="with pretraining, skip the classifiers fine-tuned on noised inputs")
    p.add_argument("--all-classifiers", action="store_true",
                   help="train the image readers (fine-tuned, noised, frozen diffusion features) at the cpu budget "
                   "too, where by default only the anatomy-feature classifier reads the findings; the --no-* options "
                   "still leave one out")
    p.add_argument("-c", "--configurations", nargs="+", default=None, metavar="CONFIGURATION",
                   help="segmentation configurations to train where the plans have them: 2d, 3d_fullres, 3d_lowres, "
                   "3d_cascade_fullres (the cascade trains 3d_lowres on every fold first); model selection chooses "
                   "per view by pooled out-of-fold Dice (default: every planned one on a GPU budget, 2d at the cpu "
                   "budget)")
    p.add_argument("--no-scratch", action="store_true",
                   help="with pretraining, train only the pretrained variants (no from-scratch comparison)")
    p.add_argument("--fusion", nargs="+", default=["gate"],
                   help="fusion modes to train: gate, stacked, mpae, concat and/or xattn (the first of gate/concat "
                        "also fuses the frozen-feature classifiers, which have no other mode)")
    add_num_processes(p, 2, "parallel worker processes for validation and preprocessing")
    add_device_option(p)
    p.add_argument("--redo-stale", action="store_true",
                   help="plan again when --budget differs from the work folder's plans, and pretrain or train again "
                   "every run made with other plans or settings (default: refuse, naming it)")
    add_monitor_options(p)
    p.set_defaults(func=run)


def image_reader(left_out: bool, all_classifiers: bool) -> bool | None:
    """An image reader's option: off when left out, on with --all-classifiers, else None (by the budget)."""
    return False if left_out else (True if all_classifiers else None)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.pipeline.auto import AutoOptions, run_auto

    options = AutoOptions(
        budget=args.budget, config=args.config, pretrain_config=args.pretrain_config, folds=tuple(args.folds),
        pretrain=False if args.no_pretrain else (True if args.pretrain else None), compare_scratch=not args.no_scratch,
        configurations=None if args.configurations is None else tuple(args.configurations),
        frozen_features=image_reader(args.no_frozen_features, args.all_classifiers),
        anatomy_features=not args.no_anatomy_features,
        finetune_classifiers=image_reader(args.no_finetune_classifiers, args.all_classifiers),
        noised_classifiers=image_reader(args.no_noised_classifiers, args.all_classifiers),
        fusion_modes=tuple(args.fusion), overrides=tuple(args.overrides + monitor_overrides(args)),
        classification_overrides=tuple(args.classification_overrides),
        pretrain_overrides=tuple(args.pretrain_overrides + monitor_overrides(args)), num_processes=args.num_processes, device=args.device,
        redo_stale=args.redo_stale, pretrained_from=args.pretrained_from,
    )
    model_dir = run_auto(args.dataset, args.work, options)
    print(f"model folder: {model_dir}")
    return 0
