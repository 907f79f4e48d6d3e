"""``orthodiff evaluate PRED_DIR REFERENCE_DATASET``."""

from __future__ import annotations

from pathlib import Path

from orthodiff_auto.commands._shared import example

ORDER = 70


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score predictions against a dataset's test references",
        description="Dice and HD95 per structure against labelsTs/ (or a plain folder of label files; a "
        "prediction matches under its reference's name or nnU-Net's <case>.nii.gz), "
        "AUROC/AP/sensitivity/specificity/F1 per finding against findingsTs.csv (bootstrap 95%% CIs), per view and per site; writes summary.json, "
        "report.html (self-contained: tables and embedded figures), "
        "roc_curves.png and dice_boxplot.png to PRED_DIR/evaluation (or --out). Exit 2 when no prediction "
        "matches a reference.",
        epilog=example("orthodiff evaluate predictions/ nnUNet_raw/Dataset001/labelsTs --dataset-json "
                       "nnUNet_raw/Dataset001/dataset.json"),
    )
    p.add_argument("pred_dir", type=Path, help="folder written by predict_folder")
    p.add_argument("reference", type=Path,
                   help="a raw dataset folder holding labelsTs/ and/or findingsTs.csv, or a plain folder of reference "
                   "label files (with its dataset.json and findingsTs.csv or findings.csv, each optional)")
    p.add_argument("--dataset-json", type=Path, default=None,
                   help="the dataset.json naming labels and findings, when a plain REFERENCE folder lacks one "
                   "(without any: labels are the values found, findings the CSV's columns)")
    p.add_argument("--findings", type=Path, default=None,
                   help="the reference findings CSV, when a plain REFERENCE folder lacks one")
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
                        test_set_thresholds=args.test_set_thresholds, dataset_json=args.dataset_json,
                        findings_csv=args.findings)
    return 0
