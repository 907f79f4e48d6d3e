"""Segmentation at the cpu budget: the full-resolution patch plan against the low-resolution plan (schema 1's
rule: the target spacing coarsened until the median image has at most 32^3 voxels), with the demo preset's
augmentation and deep supervision or with light augmentation, at the same number of steps.

    python benchmarks/bench_segmentation_cpu.py --work /tmp/bench_seg [--raw RAW] [--view sag] [--fold 0]
        [--steps 300] [--variants fullres,fullres_light,lowres,lowres_light]

1. data: the demo's dataset (``orthodiff_auto.demo.DEMO_DATASET``) generated into WORK/raw, or ``--raw``;
2. ``fullres``: plans of the cpu budget (``plan_and_preprocess --budget cpu``) in WORK/pp_fullres;
   ``lowres``: the same fingerprint planned with the cpu preset plus ``max_image_voxels = 32^3`` in WORK/pp_lowres;
3. per variant ``train_fold PP seg VIEW FOLD --config demo`` from scratch for ``--steps`` steps (``_light``:
   ``augmentation_probability=0.2``, ``deep_supervision=false``);
4. the fold's final validation (sliding window, Dice per structure in each scan's original geometry, so the two
   resolutions are scored on the same grid) and the median seconds per step: a Markdown table on stdout and
   WORK/bench_segmentation_cpu.md, the numbers in WORK/bench_segmentation_cpu.json.

Finished runs (summary.json) are reused. Everything goes through the command line in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

LOW_RESOLUTION_VOXELS = 32**3
LIGHT = ("augmentation_probability=0.2", "deep_supervision=false")
VARIANTS = ("fullres", "fullres_light", "lowres", "lowres_light")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--raw", type=Path, default=None, help="an existing raw dataset (default: the demo's)")
    p.add_argument("--view", default="sag")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--steps", type=int, default=300, help="training steps (multiple of 25)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("-np", "--num-processes", type=int, default=2)
    return p.parse_args(argv)


def run(cli_args: list[str]) -> None:
    from orthodiff_auto.cli import main

    print("$ orthodiff " + " ".join(cli_args), flush=True)
    if main(cli_args) != 0:
        raise SystemExit(f"orthodiff {cli_args[0]} failed")


def low_resolution_copy(raw: Path, fullres: Path, out: Path, num_processes: int) -> Path:
    """WORK/pp_lowres: the full-resolution fingerprint planned with the low-resolution rule, preprocessed."""
    from orthodiff_auto.fingerprint.schema import DatasetFingerprint
    from orthodiff_auto.plans.planner import CPU_PRESET, plan_experiment
    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.preprocessing.stages import run_preprocess, validated_dataset

    done = out / ".preprocessed"
    if done.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("dataset.json", "findings.csv", "fingerprint.json"):
        if (fullres / name).is_file():
            (out / name).write_bytes((fullres / name).read_bytes())
    fingerprint = DatasetFingerprint.load(out / "fingerprint.json")
    budget = Plans.load(fullres / "plans.json").budget
    preset = dataclasses.replace(CPU_PRESET, max_image_voxels=LOW_RESOLUTION_VOXELS)
    plan_experiment(fingerprint, budget, preset).save(out / "plans.json")
    run_preprocess(validated_dataset(raw, num_processes), out, num_processes, progress=False)
    done.write_text("")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    work = args.work
    raw = args.raw or work / "raw"
    if args.raw is None and not (raw / "dataset.json").is_file():
        from orthodiff_auto.demo import DEMO_DATASET

        d = DEMO_DATASET
        run(["generate_synthetic", str(raw), "--cases", str(d["n_cases"]), "--unlabeled", str(d["n_unlabeled"]),
             "--test", str(d["n_test"]), "--size", d["size"], "--seed", str(d["seed"]), "-np", str(args.num_processes)])
    fullres = work / "pp_fullres"
    if not (fullres / "plans.json").is_file():
        run(["plan_and_preprocess", str(raw), "--out", str(fullres), "--budget", "cpu", "-np", str(args.num_processes)])
    folders = {"fullres": fullres}
    variants = [v for v in args.variants.split(",") if v]
    if any(v.startswith("lowres") for v in variants):
        folders["lowres"] = low_resolution_copy(raw, fullres, work / "pp_lowres", args.num_processes)
    rows = []
    for variant in variants:
        plan_name, _, light = variant.partition("_")
        pp, results = folders[plan_name], work / f"results_{variant}"
        summary_path = results / "seg" / args.view / "scratch" / f"fold_{args.fold}" / "summary.json"
        if not summary_path.is_file():
            sets = [f"num_epochs={args.steps // 25}", "iterations_per_epoch=25", *(LIGHT if light else ())]
            run(["train_fold", str(pp), "seg", args.view, str(args.fold), "--config", "demo", "--results", str(results),
                 *[a for s in sets for a in ("--set", s)]])
        summary = json.loads(summary_path.read_text())
        plan = json.loads((pp / "plans.json").read_text())["views"][args.view]
        dice = {k: v["dice"]["mean"] for k, v in summary["mean"].items()}
        rows.append({"variant": variant, "target_spacing": plan["target_spacing"],
                     "patch_size": plan["segmentation"]["patch_size"], "steps": args.steps,
                     "seconds_per_step": summary["timing"]["seconds_per_iteration_median"],
                     "validation_scans": summary["num_validation_scans"], "dice": dice})
    structures = [k for k in rows[0]["dice"] if k != "mean"] + ["mean"] if rows else []
    lines = ["| variant | spacing (mm) | patch | s/step | " + " | ".join(structures) + " |",
             "|---|---|---|---|" + "---|" * len(structures)]
    for r in rows:
        spacing = "x".join(f"{s:.2f}" for s in r["target_spacing"])
        lines.append(f"| {r['variant']} | {spacing} | {'x'.join(map(str, r['patch_size']))} | "
                     f"{r['seconds_per_step']:.2f} | " + " | ".join(f"{r['dice'][s]:.3f}" for s in structures) + " |")
    table = "\n".join(lines)
    print(table)
    (work / "bench_segmentation_cpu.md").write_text(table + "\n")
    (work / "bench_segmentation_cpu.json").write_text(json.dumps(rows, indent=1))
    print(f"finished in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
