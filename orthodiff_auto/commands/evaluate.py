"""``orthodiff evaluate PRED_DIR REFERENCE_DATASET``."""

from __future__ import annotations

from pathlib import Path

from orthodiff_auto.commands._shared import example

ORDER = 70


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score predictions against a dataset's test references",
        description="Dice and HD95 per structure against labelsTs/, AUROC/AP/sensitivity/specificity/F1 per "
        "finding against findingsTs.csv (bootstrap 95%% CIs), per view and per site; writes summary.json, "
        "report.html (self-contained: tables and embedded figures), "
        "roc_curves.png and dice_boxplot.png to PRED_DIR/evaluation (or --out). Exit 2 when no prediction "
        "matches a reference.",
        epilog=example("orthodiff evaluate predictions/ raw"),
    )
    p.add_argument("pred_dir", type=Path)
    p.add_argument("reference", type=Path, help="raw dataset folder holding labelsTs/ and/or findingsTs.csv")
    p.add_argument("--out", type=Path, help="where to write the evaluation (default PRED_DIR/evaluation)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs (0: none)")
    p.add_argument("--test-set-thresholds", action="store_true",
                   help="sensitivity/specificity at Youden thresholds chosen on this test set (optimistic; the "
                   "table says so). Default: the thresholds of PRED_DIR/thresholds.json, written by "
                   "predict_folder from cross-validation; without that file only AUROC/AP are reported")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: `orthodiff --help` stays fast (no torch, SimpleITK, ...)
    from orthodiff_auto.evaluation.evaluate_folder import evaluate_and_report

    evaluate_and_report(args.pred_dir, args.reference, args.out, bootstrap=args.bootstrap,
                        test_set_thresholds=args.test_set_thresholds)
    return 0
