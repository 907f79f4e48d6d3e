"""Segmentation configurations (nnU-Net's 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres) of one view compared at
equal training steps: Dice and HD95 per structure on one fold's validation scans, in their original geometry.

    python benchmarks/bench_configurations.py --work /tmp/bench_cfg [--raw RAW] [--budget cpu] [--view sag]
        [--fold 0] [--configurations 2d,3d_fullres,3d_lowres,3d_cascade_fullres] [--set KEY=VALUE ...]

1. data: ``--raw``, or the demo's dataset (``orthodiff_auto.pipeline.demo.DEMO_DATASET``) generated into WORK/raw;
2. ``fingerprint`` and ``plan --budget`` into WORK/pp, the plans kept to ``--view`` (the other views are not
   preprocessed: only this view is compared), ``preprocess`` (the view's folder and, where planned, 3d_lowres's);
3. per configuration the plans have for the view, ``train_fold WORK/pp seg VIEW FOLD -c CONFIGURATION`` from
   scratch with the demo preset and the demo's segmentation overrides (``DEMO_OVERRIDES``: 300 steps, light
   augmentation) plus ``--set``; the cascade's first stage (3d_lowres) on all five folds, as its second stage
   trains on the first stage's out-of-fold predictions;
4. a Markdown table on stdout and WORK/bench_configurations.md (per configuration: mean Dice, Dice per
   structure, mean HD95 of each structure over the validation scans, seconds per step, training time), the
   numbers in WORK/bench_configurations.json.

Finished runs (summary.json) are reused. Every step goes through the command line in this process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_common import run_orthodiff as run

CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--raw", type=Path, default=None, help="an existing raw dataset (default: the demo's)")
    p.add_argument("--budget", default="cpu")
    p.add_argument("--view", default="sag")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--configurations", default=",".join(CONFIGURATIONS))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="training overrides after the demo's")
    p.add_argument("-np", "--num-processes", type=int, default=2)
    return p.parse_args(argv)


def prepare(args) -> Path:
    """WORK/pp: the dataset planned under ``--budget`` for ``--view`` only, preprocessed."""
    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.pipeline.demo import DEMO_DATASET
    from orthodiff_auto.synthetic.generator import generate_dataset

    raw = args.raw
    if raw is None:
        raw = args.work / "raw"
        if not (raw / "dataset.json").is_file():
            generate_dataset(raw, num_processes=args.num_processes, **DEMO_DATASET)
    pp = args.work / "pp"
    if not (pp / "fingerprint.json").is_file():
        run(["fingerprint", str(raw), "--out", str(pp), "-np", str(args.num_processes)])
    run(["plan", str(pp), "--budget", args.budget])
    plans = Plans.load(pp / "plans.json")
    plans = type(plans)(**{**plans.__dict__, "views": {args.view: plans.view(args.view)}})
    plans.save(pp / "plans.json")
    run(["show_plans", str(pp)])
    run(["preprocess", str(raw), "--out", str(pp), "-np", str(args.num_processes), "--skip-validation"])
    return pp


def train(args, pp: Path, configuration: str, fold: int) -> Path:
    from orthodiff_auto.pipeline.demo import DEMO_OVERRIDES

    variant = "scratch" if configuration == "3d_fullres" else f"{configuration}_scratch"
    out = args.work / "results" / "seg" / args.view / variant / f"fold_{fold}"
    if not (out / "summary.json").is_file():
        sets = [x for o in (*DEMO_OVERRIDES, *args.overrides) for x in ("--set", o)]
        run(["train_fold", str(pp), "seg", args.view, str(fold), "-c", configuration, "--config", "demo",
             "--results", str(args.work / "results"), *sets, *(["--continue"] if out.exists() else [])])
    return out


def row(configuration: str, fold_dir: Path, seconds: float | None) -> dict:
    import numpy as np

    s = json.loads((fold_dir / "summary.json").read_text())
    structures = [k for k in s["mean"] if k != "mean"]
    def finite(v) -> float:  # None where a mask is empty; json_safe writes infinities as strings
        v = np.nan if v is None else float(v)
        return v if np.isfinite(v) else np.nan

    hd95 = {k: float(np.nanmean([finite(c["metrics"][k]["hd95"]) for c in s["per_case"].values()]))
            for k in structures}
    steps = s["config"]["num_epochs"] * s["config"]["iterations_per_epoch"]
    return {"configuration": configuration, "mean_dice": s["mean"]["mean"]["dice"]["mean"],
            "dice": {k: s["mean"][k]["dice"]["mean"] for k in structures}, "hd95": hd95, "steps": steps,
            "validation_cases": s["num_validation_scans"],
            "seconds_per_step": s["timing"]["seconds_per_iteration_median"], "wall_seconds": seconds}


def table(rows: list[dict]) -> str:
    structures = list(rows[0]["dice"])
    head = ["configuration", "mean Dice", *structures, "s/step", "steps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["configuration"], f"{r['mean_dice']:.3f}",
                                        *(f"{r['dice'][k]:.2f}" for k in structures),
                                        f"{r['seconds_per_step']:.2f}", str(r["steps"])]) + " |")
    lines += ["", "HD95 (mm, mean over the validation scans where both masks exist)", "",
              "| configuration | " + " | ".join(structures) + " |", "|" + "---|" * (len(structures) + 1)]
    for r in rows:
        lines.append(f"| {r['configuration']} | " + " | ".join(f"{r['hd95'][k]:.1f}" for k in structures) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from orthodiff_auto.plans.schema import Plans

    args.work.mkdir(parents=True, exist_ok=True)
    pp = prepare(args)
    planned = Plans.load(pp / "plans.json").view(args.view).configuration_names
    wanted = [c for c in args.configurations.split(",") if c in planned]
    skipped = [c for c in args.configurations.split(",") if c not in planned]
    if skipped:
        print(f"not planned for {args.view} (nnU-Net's rules): {', '.join(skipped)}", flush=True)
    rows = []
    for configuration in wanted:
        if configuration == "3d_cascade_fullres":
            for fold in range(5):  # the first stage's out-of-fold predictions of every training case
                train(args, pp, "3d_lowres", fold)
        start = time.perf_counter()
        fold_dir = train(args, pp, configuration, args.fold)
        rows.append(row(configuration, fold_dir, time.perf_counter() - start))
    text = table(rows)
    print(text)
    (args.work / "bench_configurations.md").write_text(text + "\n")
    (args.work / "bench_configurations.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
