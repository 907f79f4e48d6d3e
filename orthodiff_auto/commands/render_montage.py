"""``orthodiff render_montage DATASET CASE_ID OUT.png``: look at one case's views with labels."""

from __future__ import annotations

from orthodiff_auto.commands._shared import example

ORDER = 90


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "render_montage",
        help="write a PNG montage of one case's views with the label overlay",
        description="Write a PNG montage of one case of a raw dataset: a row per view with its middle slice "
        "(label overlay) and a slice through each of the case's findings.",
        epilog=example("orthodiff render_montage raw knee0001 knee0001.png"),
    )
    p.add_argument("dataset", help="raw dataset folder (holds dataset.json)")
    p.add_argument("case_id", help="case id, e.g. knee0001")
    p.add_argument("out", help="output PNG file")
    p.add_argument("--subset", choices=("train", "test", "unlabeled"), default=None,
                   help="where to look for the case (default: wherever it is)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.synthetic.montage import render_montage

    path = render_montage(args.dataset, args.case_id, args.out, subset=args.subset)
    print(f"wrote {path}")
    return 0
