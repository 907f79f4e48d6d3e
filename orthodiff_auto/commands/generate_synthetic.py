"""``orthodiff generate_synthetic OUT``: write an embedded synthetic MRI dataset (knee, ankle or shoulder)."""

from __future__ import annotations

from orthodiff_auto.commands._shared import example

ORDER = 10


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate_synthetic",
        help="generate a synthetic knee, ankle or shoulder MRI dataset (3 views, labels, findings)",
        description="Generate a synthetic MRI raw dataset of a joint (knee: 11 structures, 8 findings; ankle: "
        "5 structures, 4 findings; shoulder: 8 structures, 7 findings): one latent joint per case rendered as "
        "sagittal, coronal and axial proton-density fat-suppressed scans with their own realistic geometry, "
        "label maps and findings (findings.csv). Deterministic for a seed. Refuses a non-empty OUT unless it "
        "holds a previous synthetic dataset, which it replaces. See documentation/synthetic_data.md.",
        epilog=example("orthodiff generate_synthetic raw --joint knee --cases 30 --unlabeled 10 --test 10 --size demo"),
    )
    p.add_argument("out", help="output dataset folder (new, empty, or a previous synthetic dataset)")
    p.add_argument("--joint", default="knee", help="knee, ankle or shoulder (default knee)")
    p.add_argument("--cases", type=int, default=20, help="labelled training cases (default 20)")
    p.add_argument("--unlabeled", type=int, default=0, help="unlabeled cases for pretraining (default 0)")
    p.add_argument("--test", type=int, default=0, help="test cases with references (default 0)")
    p.add_argument("--size", default="demo", help="geometry preset: tiny (tests), demo, standard (diagnostic: about 1 mm "
                   "in-plane, 3.5-4.5 mm slices) or clinical (default demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--sites", default=None, help="comma-separated sites to draw from, e.g. siteA,siteB or A,B "
                   "(default all: siteA 3T, siteB 1.5T, siteC 3T other vendor)")
    p.add_argument("--prevalence", default=None, help="finding=probability,... overriding the joint's defaults, "
                   "e.g. acl_tear=0.5,effusion=0.2")
    p.add_argument("--complete", action="store_true",
                   help="every case gets all three views (default: ~10%% of test/unlabeled cases miss one)")
    p.add_argument("--clinical-signal", action="store_true",
                   help="add age, sex and BMI columns (declared in dataset.json) that shift the findings' "
                        "prevalences, and co-occurring findings (default off)")
    p.add_argument("-np", "--num-processes", type=int, default=1, help="parallel worker processes (default 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.synthetic.generator import generate_synthetic

    generate_synthetic(args.out, cases=args.cases, unlabeled=args.unlabeled, test=args.test, size=args.size,
                       seed=args.seed, sites=args.sites, prevalence=args.prevalence,
                       num_processes=args.num_processes, complete=args.complete, joint=args.joint,
                       clinical_signal=args.clinical_signal)
    return 0
