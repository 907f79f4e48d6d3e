"""Label efficiency of diffusion pretraining: segmentation Dice and classification macro AUROC from scratch
vs from the pretrained encoder, at several fractions of the labelled training scans.

    python benchmarks/bench_label_efficiency.py PREPROCESSED_DIR --view sag --fractions 0.1,0.25,0.5,1 \
        --folds 0 --tasks seg,cls --config demo [--pretrain-config demo] [--pretrained ENCODER] [--set key=value ...]

1. the encoder: ``--pretrained`` if given, else ``RESULTS/pretrain/VIEW/encoder_VIEW.pt`` (pretrained first with
   ``orthodiff pretrain --config PRETRAIN_CONFIG`` when it does not exist);
2. for every task, fraction and fold: ``orthodiff train_fold PREPROCESSED_DIR TASK VIEW FOLD --label-fraction F``
   once from scratch and once with ``--pretrained`` (same config, seed and labelled subset); runs whose
   ``summary.json`` exists are reused, so an interrupted benchmark continues where it stopped;
3. writes ``RESULTS/bench_label_efficiency_VIEW.json`` (every run's metric: mean Dice for seg, macro AUROC of the
   validation fold for cls), a Markdown table and a PNG (metric over the folds vs label fraction) beside it.

Everything runs in this process through the ``orthodiff`` command line (``orthodiff_auto.cli.main``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench_common import macro_auroc, mean_dice, pretrain_once, read_summary, train_fold_once


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("preprocessed_dir", type=Path)
    p.add_argument("--view", default="sag")
    p.add_argument("--fractions", default="0.1,0.25,0.5,1", help="comma-separated label fractions in (0, 1]")
    p.add_argument("--folds", default="0", help="comma-separated folds (0-4)")
    p.add_argument("--tasks", default="seg", help="comma-separated tasks: seg (mean Dice), cls (macro AUROC)")
    p.add_argument("--config", default="demo", help="train_fold preset (smoke, demo, full)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="train_fold config override (repeatable)")
    p.add_argument("--pretrain-config", default="demo", help="pretrain preset used when no encoder exists yet")
    p.add_argument("--pretrained", type=Path, default=None, help="encoder checkpoint to use (skips pretraining)")
    p.add_argument("--results", type=Path, default=None, help="results root (default PREPROCESSED_DIR/../results)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return p.parse_args(argv)


METRICS = {"seg": ("mean Dice", mean_dice), "cls": ("macro AUROC", macro_auroc)}


def main(argv=None) -> int:
    args = parse_args(argv)
    pre = args.preprocessed_dir
    results = args.results or pre.resolve().parent / "results"
    fractions = [float(f) for f in args.fractions.split(",")]
    folds = [f.strip() for f in args.folds.split(",")]
    device = ["--device", args.device] if args.device else []
    sets = [x for s in args.overrides for x in ("--set", s)]

    encoder = args.pretrained or pretrain_once(pre, args.view, results, args.pretrain_config, [], args.device,
                                               args.dry_run)

    tasks = [t.strip() for t in args.tasks.split(",")]
    unknown = [t for t in tasks if t not in METRICS]
    if unknown:
        raise SystemExit(f"--tasks: unknown {unknown}; choose from {sorted(METRICS)}")
    rows = []
    for task in tasks:
        for fraction in fractions:
            for fold in folds:
                for variant in ("scratch", "pretrained"):
                    row = _train_variant(args, pre, results, encoder, task, fraction, fold, variant, device, sets)
                    if row is not None:
                        rows.append(row)
    if args.dry_run:
        return 0
    report = write_report(rows, results, args.view, str(encoder), args)
    print(report)
    return 0


def _train_variant(args, pre, results, encoder, task, fraction, fold, variant, device, sets) -> dict | None:
    """Train one (task, fraction, fold, variant) unless its summary.json exists; its row for the report."""
    run = train_fold_once(pre, results, task, args.view, fold, fraction, args.config, sets, device,
                          encoder if variant == "pretrained" else None, args.dry_run)
    if args.dry_run:
        return None
    summary_path = run / "summary.json"
    summary = read_summary(run)
    return {"task": task, "fraction": fraction, "fold": fold, "variant": variant,
            "metric": METRICS[task][1](summary),
            "num_training_scans": summary.get("num_training_scans", summary.get("num_training_cases")),
            "seconds_per_iteration": (summary.get("timing") or {}).get("seconds_per_iteration_median"),
            "summary": str(summary_path)}


def write_report(rows: list[dict], results: Path, view: str, encoder: str, args) -> str:
    import numpy as np

    from orthodiff_auto.utils.atomic import atomic_path, write_json_atomic, write_text_atomic

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fractions = sorted({r["fraction"] for r in rows})
    means: dict[tuple[str, str], list[float]] = {}
    text = (f"Label efficiency, view {view}, folds {args.folds}, train_fold config {args.config} "
            f"{' '.join(args.overrides)}; encoder {encoder}\n")
    for task in tasks:
        label = METRICS[task][0]
        table = [f"| {task}: label fraction | scans | {label} scratch | {label} pretrained | difference |",
                 "|---|---|---|---|---|"]
        for f in fractions:
            vals = {}
            for variant in ("scratch", "pretrained"):
                d = [r["metric"] for r in rows if (r["task"], r["fraction"], r["variant"]) == (task, f, variant)
                     and r["metric"] is not None]
                vals[variant] = float(np.mean(d)) if d else float("nan")
                means.setdefault((task, variant), []).append(vals[variant])
            scans = next((r["num_training_scans"] for r in rows if (r["task"], r["fraction"]) == (task, f)), "?")
            table.append(f"| {f:g} | {scans} | {vals['scratch']:.3f} | {vals['pretrained']:.3f} | "
                         f"{vals['pretrained'] - vals['scratch']:+.3f} |")
        text += "\n" + "\n".join(table) + "\n"
    base = results / f"bench_label_efficiency_{view}"
    write_json_atomic(base.with_suffix(".json"), {"view": view, "encoder": encoder, "config": args.config,
                                                  "overrides": args.overrides, "folds": args.folds, "runs": rows})
    write_text_atomic(base.with_suffix(".md"), text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for variant, marker in (("scratch", "o"), ("pretrained", "s")):
            ax.plot(fractions, means[(task, variant)], marker=marker, label=variant)
        ax.set_xscale("log")
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.set_xlabel("fraction of labelled training scans")
        ax.set_ylabel(f"{METRICS[task][0]} (validation fold)")
        ax.set_title(f"label efficiency, {task} {view}", fontsize=9)
        ax.legend()
    fig.tight_layout()
    with atomic_path(base.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return text


if __name__ == "__main__":
    sys.exit(main())
