"""``orthodiff generate_synthetic OUT``: write the embedded synthetic knee MRI dataset."""

from __future__ import annotations

ORDER = 10


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate_synthetic",
        help="generate the synthetic knee MRI dataset (3 views, 11 structures, 8 findings)",
        description="Generate a synthetic knee MRI raw dataset: one latent knee per case rendered as sagittal, "
        "coronal and axial proton-density fat-suppressed scans with their own realistic geometry, label maps "
        "of 11 structures and 8 findings (findings.csv). Deterministic for a seed. Refuses a non-empty OUT "
        "unless it holds a previous synthetic dataset, which it replaces. See documentation/synthetic_data.md.",
    )
    p.add_argument("out", help="output dataset folder (new, empty, or a previous synthetic dataset)")
    p.add_argument("--cases", type=int, default=20, help="labelled training cases (default 20)")
    p.add_argument("--unlabeled", type=int, default=0, help="unlabeled cases for pretraining (default 0)")
    p.add_argument("--test", type=int, default=0, help="test cases with references (default 0)")
    p.add_argument("--size", default="demo", help="geometry preset: tiny, demo or clinical (default demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--sites", default=None, help="comma-separated sites to draw from, e.g. siteA,siteB or A,B "
                   "(default all: siteA 3T, siteB 1.5T, siteC 3T other vendor)")
    p.add_argument("--prevalence", default=None, help="finding=probability,... overriding the defaults, "
                   "e.g. acl_tear=0.5,effusion=0.2")
    p.add_argument("--complete", action="store_true",
                   help="every case gets all three views (default: ~10%% of test/unlabeled cases miss one)")
    p.add_argument("-np", "--num-processes", type=int, default=1, help="parallel worker processes (default 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from orthodiff_auto.synthetic.generator import generate_dataset, parse_prevalence
    from orthodiff_auto.synthetic.spec import SIZES
    from orthodiff_auto.errors import UserInputError

    if args.size not in SIZES:
        raise UserInputError(f"unknown --size {args.size!r}; choose one of {', '.join(SIZES)}")
    prevalence = parse_prevalence(args.prevalence)
    total = args.cases + args.test + args.unlabeled
    done = [0]

    def progress(row):
        done[0] += 1
        if done[0] == total or done[0] % max(1, total // 10) == 0:
            print(f"  {done[0]}/{total} cases ({row['case_id']}: {row['seconds']:.2f} s)", flush=True)

    summary = generate_dataset(
        args.out, n_cases=args.cases, n_unlabeled=args.unlabeled, n_test=args.test, size=args.size,
        seed=args.seed, sites=args.sites, prevalence=prevalence, num_processes=args.num_processes,
        complete=True if args.complete else None, progress=progress,
    )
    secs = summary["case_seconds"]
    print(
        f"wrote {summary['out']}: {args.cases} training, {args.test} test, {args.unlabeled} unlabeled cases "
        f"({args.size}, seed {args.seed}) in {summary['seconds']:.1f} s "
        f"(median {sorted(secs)[len(secs) // 2]:.2f} s per case per process)"
    )
    return 0
