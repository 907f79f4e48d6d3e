"""``orthodiff probe PREPROCESSED_DIR VIEW``: choose the timestep and block of the frozen denoiser's features."""

from __future__ import annotations

from orthodiff_auto.commands._shared import add_device_option, example

ORDER = 35


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "probe",
        help="choose a view's diffusion-feature timestep and block by cross-validated linear probing",
        description="Noise every training case of VIEW (its whole-field-of-view classification input) at each "
        "timestep with one fixed seeded noise, pass it through the frozen EMA denoiser of `orthodiff pretrain`, "
        "and globally average-pool the output of each block. Per (timestep, block), fit an L2-regularised "
        "logistic regression per finding on each cross-validation fold (splits.json) and score the held-out "
        "predictions by macro AUROC. Writes RESULTS/pretrain/VIEW/probe.json (the table and the best pair, which "
        "`train_fold ... cls --set classifier_features=diffusion` uses) and prints the table.",
        epilog=example("orthodiff probe preprocessed sag --timesteps 50,100,200"),
    )
    p.add_argument("preprocessed_dir", help="preprocessed folder (plans.json, findings.csv, one folder per view)")
    p.add_argument("view", help="imaging view (sag, cor or ax), pretrained with `orthodiff pretrain`")
    p.add_argument("--results", default=None,
                   help="results root (default PREPROCESSED_DIR/../results); reads and writes RESULTS/pretrain/VIEW")
    p.add_argument("--timesteps", default="50,100,200,400", help="comma-separated timesteps in [0, T) (default "
                   "50,100,200,400)")
    p.add_argument("--blocks", default=None, help="comma-separated module paths, e.g. encoder.stages.3,"
                   "decoder.stages.0 (default: every encoder and decoder stage)")
    p.add_argument("--l2", type=float, default=1.0, help="L2 strength of the probe, 1/C (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fixed noise (default 0)")
    add_device_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.diffusion.probe import run_probe

    run_probe(args.preprocessed_dir, args.view, results=args.results, timesteps=args.timesteps, blocks=args.blocks,
              device=args.device, l2=args.l2, noise_seed=args.seed)
    return 0
