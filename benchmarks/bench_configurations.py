"""Segmentation configurations (nnU-Net's 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres) of one view compared at
equal training steps: Dice and HD95 per structure on the validation scans of the folds, pooled, in their original
geometry, with 95% bootstrap intervals over cases and each configuration's paired difference to the first.

    python benchmarks/bench_configurations.py --work /tmp/bench_cfg [--raw RAW] [--budget cpu] [--view sag]
        [--folds 0 [1 ...]] [--configurations 2d,3d_fullres,3d_lowres,3d_cascade_fullres] [--set KEY=VALUE ...]

1. data: ``--raw``, or the demo's dataset (``orthodiff_auto.pipeline.demo.DEMO_DATASET``) generated into WORK/raw;
2. ``fingerprint`` and ``plan --budget`` into WORK/pp, the plans kept to ``--view`` (the other views are not
   preprocessed: only this view is compared), ``preprocess`` (the view's folder and, where planned, 3d_lowres's);
3. per configuration the plans have for the view and fold, ``train_fold WORK/pp seg VIEW FOLD -c CONFIGURATION`` from
   scratch with the demo preset and the demo's segmentation overrides (``DEMO_OVERRIDES``: the demo's augmentation
   and deep supervision; the results in benchmarks.md ran 300 steps with light augmentation) plus ``--set``; the cascade's first stage (3d_lowres) on all five folds, as its second stage
   trains on the first stage's out-of-fold predictions;
4. a Markdown table on stdout and WORK/bench_configurations.md (per configuration, over the folds' validation
   scans pooled: mean Dice with its 95% bootstrap CI, the paired bootstrap CI of its difference to the first
   configuration listed, Dice per structure, mean HD95 of each structure, seconds per step), the numbers in
   WORK/bench_configurations.json.

Finished runs (summary.json) are reused. Every step goes through the command line in this process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_common import run_orthodiff as run

CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--raw", type=Path, default=None, help="an existing raw dataset (default: the demo's)")
    p.add_argument("--budget", default="cpu")
    p.add_argument("--view", default="sag")
    p.add_argument("--folds", type=int, nargs="+", default=[0])
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


def finite(v) -> float:
    """A metric as a float, NaN where it is missing (None: an empty mask) or infinite (json_safe writes strings)."""
    import numpy as np

    v = np.nan if v is None else float(v)
    return v if np.isfinite(v) else np.nan


def per_case(fold_dirs: list[Path]) -> tuple[list[str], list[str], dict[str, dict[str, float]], dict, float]:
    """(case ids, structures, {metric: {case: {structure: value}}}, config, median seconds per step) of the folds'
    validation scans, pooled."""
    cases, structures, metrics, times, config = [], None, {"dice": {}, "hd95": {}}, [], None
    for d in fold_dirs:
        s = json.loads((d / "summary.json").read_text())
        structures = structures or [k for k in s["mean"] if k != "mean"]
        config = s["config"]
        times.append(s["timing"]["seconds_per_iteration_median"])
        for case, entry in s["per_case"].items():
            cases.append(case)
            for m in metrics:
                metrics[m][case] = {k: finite(entry["metrics"][k][m]) for k in structures}
    return cases, structures, metrics, config, float(sorted(times)[len(times) // 2])


def case_means(metrics: dict, cases: list[str], structures: list[str]):
    """Each case's mean Dice over the structures it or its prediction holds (NaN ones left out, as aggregate)."""
    import numpy as np

    table = np.array([[metrics["dice"][c][k] for k in structures] for c in cases])
    with np.errstate(all="ignore"):
        return np.nanmean(table, axis=1), table


def bootstrap_mean(values, n: int = 2000, seed: int = 0):
    """Means of ``n`` case resamples (the same resamples for every configuration of the same cases: paired)."""
    import numpy as np

    index = np.random.default_rng(seed).integers(0, len(values), size=(n, len(values)))
    return np.nanmean(np.asarray(values)[index], axis=1)


def rows_of(runs: dict[str, list[Path]]) -> list[dict]:
    import numpy as np

    from orthodiff_auto.training.classification_metrics import percentile_ci

    rows, first = [], None
    for configuration, fold_dirs in runs.items():
        cases, structures, metrics, config, seconds = per_case(fold_dirs)
        order = sorted(cases)
        means, table = case_means(metrics, order, structures)
        samples = bootstrap_mean(means)
        hd95 = np.array([[metrics["hd95"][c][k] for k in structures] for c in order])
        with np.errstate(all="ignore"):
            row = {"configuration": configuration, "cases": len(order), "mean_dice": float(np.nanmean(means)),
                   "ci": percentile_ci(samples),
                   "dice": dict(zip(structures, map(float, np.nanmean(table, axis=0)))),
                   "hd95": dict(zip(structures, map(float, np.nanmean(hd95, axis=0)))),
                   "steps": config["num_epochs"] * config["iterations_per_epoch"], "seconds_per_step": seconds}
        if first is None:
            first = (order, samples)
        elif first[0] == order:  # same cases: the paired difference to the first configuration
            row["difference_to_first_ci"] = percentile_ci(samples - first[1])
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    structures = list(rows[0]["dice"])
    head = ["configuration", "cases", "mean Dice (95% CI)", f"minus {rows[0]['configuration']} (95% CI)",
            *structures, "s/step", "steps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        diff = r.get("difference_to_first_ci")
        lines.append("| " + " | ".join([r["configuration"], str(r["cases"]),
                                        f"{r['mean_dice']:.3f} ({r['ci'][0]:.3f}-{r['ci'][1]:.3f})",
                                        "" if diff is None else f"{diff[0]:+.3f} to {diff[1]:+.3f}",
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
    runs = {}
    for configuration in wanted:
        if configuration == "3d_cascade_fullres":
            for fold in range(5):  # the first stage's out-of-fold predictions of every training case
                train(args, pp, "3d_lowres", fold)
        runs[configuration] = [train(args, pp, configuration, fold) for fold in args.folds]
    rows = rows_of(runs)
    text = table(rows)
    print(text)
    (args.work / "bench_configurations.md").write_text(text + "\n")
    (args.work / "bench_configurations.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
