"""The main job on the embedded default data (``make demo``).

Generates the synthetic knee dataset, validates it and prints its summary, then runs ``auto`` with the cpu
budget and the demo training preset (segmentation per view with the cpu budget's configuration, 2d; the
anatomy-feature classifier on the segmented anatomy for every combination of views; model selection),
``predict_folder`` on the dataset's 40 test cases with the resulting model folder (the cascade: segment each
view, then diagnose from the segmented anatomy), ``evaluate``, and prints a table of Dice per structure and
AUROC per finding, each with its 95% CI. To fit 15 minutes on a 2-core CPU it trains fold 0 only; diffusion
pretraining runs only when something reads its encoders: ``--all-classifiers`` adds the fine-tuned, noised and
frozen diffusion-feature classifiers (and so pretraining), ``--folds 0 1 2 3 4`` runs the whole
cross-validation. Re-running reuses whatever is already done. ``orthodiff demo`` is the same command. The job
itself is ``pipeline.demo.run_demo``; this module holds its options and imports the pipeline only when it runs,
so that ``orthodiff --help`` reads them without loading torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orthodiff_auto.errors import UserInputError

EXAMPLE = "orthodiff demo --work demo_work --folds 0 1 2 3 4 --compare-scratch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, shared by ``python -m orthodiff_auto.demo`` and ``orthodiff demo``."""
    parser.add_argument("--work", type=Path, default=Path("demo_work"),
                        help="working folder: raw/, preprocessed/, results/, model/, predictions/ (default demo_work)")
    parser.add_argument("--config", default="demo", help="training preset: smoke, demo or full (default demo)")
    parser.add_argument("-f", "--folds", nargs="+", type=int, default=[0], help="cross-validation folds (default 0)")
    parser.add_argument("--compare-scratch", action="store_true",
                        help="also train from scratch and let model selection choose")
    parser.add_argument("--all-classifiers", action="store_true",
                        help="also the fine-tuned, noised-input and frozen diffusion-feature classifiers (default: "
                             "the anatomy-feature classifier only)")
    # the defaults are pipeline.demo.DEMO_DATASET's, written out so that --help does not import the pipeline
    parser.add_argument("--size", default=None,
                        help="the synthetic scans' size preset: tiny, demo, standard or clinical (default demo; "
                             "standard: about 1 mm in-plane and 3.5-4.5 mm slices, where every tear is visible)")
    parser.add_argument("--cases", type=int, default=None,
                        help="labelled training cases to generate (default 30; the anatomy reader needs more to "
                             "diagnose: documentation/benchmarks.md, \"How many labelled cases\")")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the demo with parsed ``add_arguments`` options; 1 when a test case failed to predict."""
    # imported here, not at the top: the CLI reads add_arguments for `orthodiff --help` without loading torch
    from orthodiff_auto.pipeline.demo import run_demo

    return run_demo(args.work, args.config, args.folds, args.num_processes, args.compare_scratch,
                    args.all_classifiers, args.size, args.cases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orthodiff_auto.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f"example: {EXAMPLE}")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
