#!/usr/bin/env python
"""Side-by-side: ``orthodiff predict_folder`` vs nnU-Net v2's ``nnUNetPredictor`` on the same test scans, with the
same trained weights: seconds per case and Dice against the reference labels.

Usage::

    orthodiff generate_synthetic /tmp/hb/raw --size demo --cases 30 --test 6 -np 2
    orthodiff plan_and_preprocess /tmp/hb/raw --out /tmp/hb/pre --budget cpu -np 2
    python benchmarks/bench_predict_vs_nnunet.py /tmp/hb/pre --view sag [--fold 0] [--json out.json]

nnU-Net v2 is the optional ``bench`` extra, best in a separate virtualenv: ``--nnunet-bin VENV/bin`` (default as in
bench_plan_and_preprocess.py). Without it only ours and the network floor run.

What runs, in order:

1. one segmentation fold of ours, ``RESULTS/seg/VIEW/scratch/fold_F`` (trained first with ``orthodiff train_fold
   ... --config CONFIG`` when it has no final checkpoint), then ``find_best_configuration --folds F`` writes our
   model folder (restricted to VIEW's segmentation, so no classifier is timed);
2. nnU-Net's model folder with the SAME weights: its plans carry our plan (see bench_trainer_vs_nnunet.py:
   fingerprint and plan by nnU-Net, 3d_fullres overwritten with our spacing, patch, normalisation and network), and
   ``fold_F/checkpoint_final.pth`` holds our state dict in nnU-Net's checkpoint format (both networks are dna's
   PlainConvUNet, so the names match; nnU-Net loads it strictly);
3. the test scans of VIEW: ours reads the raw ``<case>_<view>.nii.gz``; nnU-Net reads ``<case>_0000.nii.gz``
   copies in our canonical orientation (axis permutation and flips only), so the network sees the same arrays;
4. four timed runs, each a fresh process, alternating between the tools: nnU-Net with its mirroring TTA, ours
   without, nnU-Net without, ours with (``--tta``), the whole sequence and the floor (5.) repeated ``--repeats``
   times (medians reported; a loaded machine moves every figure, and alternating spreads the load over both); tile step 0.5 / overlap 0.5 and Gaussian weighting in all. nnU-Net runs what
   ``nnUNetv2_predict_from_modelfolder`` runs (``initialize_from_trained_model_folder`` + ``predict_from_files``
   with its default 3 preprocessing and 3 export processes) from a small driver, so that both tools get
   ``--threads`` torch threads (ours through OMP_NUM_THREADS);
5. the network floor: the forward passes (no grad) of our network that each test case needs after preprocessing,
   windows predicted one at a time (nnU-Net) or in batches of our predictor's default size, times 8 with TTA;
   measured right before and right after our run without TTA, and the mean of the two taken: the speed of this
   machine drifts by a quarter within minutes (a forward pass of 2 windows took 0.10 to 0.16 s in one hour on the
   2-core development VM), so a floor measured at another moment than the run says more about the drift than
   about the per-case overhead.

Per run: s/case including start-up (process wall time / cases) and in steady state (time between the first and
the last "case done" line / (cases - 1): ours prints ``predicted <case>`` once the case's files are written (its
writer thread, while the next case is predicted), nnU-Net ``done with <case>`` when it hands the prediction to its
export workers), and the mean over cases of the mean Dice over the foreground labels present.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench_plan_and_preprocess import find_nnunet_bin, nnunet_version
from bench_trainer_vs_nnunet import (
    NNUNET_INSTALL_HINT,
    load_average,
    prepare_nnunet,
    raw_dataset_of,
    read_canonical,
    write_canonical,
)

STEP = 0.5  # nnU-Net's tile step; our overlap 0.5 places the same windows
NNUNET_PROCESSES = 3  # nnUNetv2_predict's defaults for -npp and -nps
OURS_DONE = re.compile(r"^predicted (\S+)")
NNUNET_DONE = re.compile(r"^done with (\S+)")

# Run by nnU-Net's Python; the __main__ guard matters: predict_from_files spawns workers that import this file.
PREDICT_DRIVER = r'''
"""Written by benchmarks/bench_predict_vs_nnunet.py: what nnUNetv2_predict_from_modelfolder -device cpu does,
with a chosen number of torch threads instead of the CPU count."""
import argparse

import torch

if __name__ == "__main__":
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    p = argparse.ArgumentParser()
    for name in ("-i", "-o", "-m"):
        p.add_argument(name, required=True)
    p.add_argument("-f", type=int, required=True)
    p.add_argument("-step_size", type=float, default=0.5)
    p.add_argument("--disable_tta", action="store_true")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("-npp", type=int, default=3)
    p.add_argument("-nps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    predictor = nnUNetPredictor(tile_step_size=args.step_size, use_gaussian=True, use_mirroring=not args.disable_tta,
                                device=torch.device(args.device), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(args.m, (args.f,), "checkpoint_final.pth")
    predictor.predict_from_files(args.i, args.o, save_probabilities=False, overwrite=True,
                                 num_processes_preprocessing=args.npp, num_processes_segmentation_export=args.nps)
'''


# --- the two model folders ----------------------------------------------------------------------------------------


def ensure_trained_fold(preprocessed_dir: Path, results: Path, view: str, fold: int, config: str,
                        overrides: list[str]) -> None:
    """Train our fold unless it has finished (train_fold writes checkpoint_final.pt and summary.json last)."""
    from orthodiff_auto.cli import main as orthodiff

    fold_dir = results / "seg" / view / "scratch" / f"fold_{fold}"
    if (fold_dir / "checkpoint_final.pt").is_file() and (fold_dir / "summary.json").is_file():
        print(f"using the trained fold {fold_dir}")
        return
    cmd = ["train_fold", str(preprocessed_dir), "seg", view, str(fold), "--config", config, "--results", str(results),
           "--device", "cpu", *[a for o in overrides for a in ("--set", o)]]
    if (fold_dir / "checkpoint_latest.pt").is_file():
        cmd.append("--continue")
    print("$ orthodiff " + " ".join(cmd), flush=True)
    if orthodiff(cmd) != 0:
        raise SystemExit("training our fold failed")


def our_model_folder(preprocessed_dir: Path, results: Path, view: str, fold: int, out: Path) -> Path:
    """``find_best_configuration --folds F`` restricted to VIEW's segmentation; returns its checkpoint."""
    from orthodiff_auto.inference.model_dir import ModelDescription
    from orthodiff_auto.pipeline.model_selection import find_best_configuration

    description = find_best_configuration(preprocessed_dir, out, results=results, folds=[fold])
    choice = description.segmentation[view]
    ModelDescription(description.dataset, {view: choice}, None, description.candidates).save(out)
    return out / choice.checkpoints[0]


def nnunet_model_folder(setup: dict, checkpoint: Path, fold: int, out: Path) -> None:
    """nnU-Net's trained-model layout (plans.json, dataset.json, fold_F/checkpoint_final.pth) around our weights."""
    import torch

    from orthodiff_auto.training.checkpoint import load_checkpoint

    shutil.rmtree(out, ignore_errors=True)
    (out / f"fold_{fold}").mkdir(parents=True)
    plans = json.loads(setup["plans"].read_text())
    dataset_json = json.loads(setup["dataset_json"].read_text())
    (out / "plans.json").write_text(json.dumps(plans, indent=1))
    (out / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    payload = {
        "network_weights": load_checkpoint(checkpoint)["model"],
        "init_args": {"plans": plans, "configuration": setup["configuration"], "fold": fold,
                      "dataset_json": dataset_json, "device": "cpu"},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
        "current_epoch": 0,
    }
    torch.save(payload, out / f"fold_{fold}" / "checkpoint_final.pth")


def test_inputs(raw: Path, view: str, work: Path) -> tuple[list, Path, Path]:
    """The labelled test scans of VIEW, linked for ours and rewritten canonically for nnU-Net."""
    from orthodiff_auto.data.dataset import scan_raw_dataset

    scans = [s for s in scan_raw_dataset(raw).select("test", view) if s.label is not None]
    if not scans:
        raise SystemExit(f"{raw}: no labelled test scans of view {view} (generate_synthetic --test N)")
    ours, theirs = work / "input_ours", work / "input_nnunet"
    for folder in (ours, theirs):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for s in scans:
        (ours / f"{s.case_id}_{view}.nii.gz").symlink_to(s.image.resolve())
        write_canonical(s.image, theirs / f"{s.case_id}_0000.nii.gz", np.float32)
    return scans, ours, theirs


# --- timing -------------------------------------------------------------------------------------------------------


def run_timed(cmd: list[str], env: dict, log: Path, done: re.Pattern) -> dict:
    """Run ``cmd``; wall time and the time of every line matching ``done`` (seconds from the start)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stamps = []
    with open(log, "w") as f:
        for line in proc.stdout:
            f.write(line)
            if done.match(line.strip()):
                stamps.append(time.perf_counter() - t0)
    rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"command failed ({rc}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return {"wall_s": wall, "case_done_s": stamps}


def predict_ours(inputs: Path, out: Path, model: Path, fold: int, tta: bool, threads: int, log: Path) -> dict:
    cmd = [sys.executable, "-m", "orthodiff_auto", "predict_folder", str(inputs), str(out), "--model", str(model),
           "--folds", str(fold), "--device", "cpu"] + (["--tta"] if tta else [])
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads))
    return run_timed(cmd, env, log, OURS_DONE)


def predict_nnunet(python: str, driver: Path, inputs: Path, out: Path, model: Path, fold: int, tta: bool,
                   threads: int, env: dict, log: Path, device: str = "cpu") -> dict:
    cmd = [python, str(driver), "-i", str(inputs), "-o", str(out), "-m", str(model), "-f", str(fold), "-step_size",
           str(STEP), "--threads", str(threads), "-npp", str(NNUNET_PROCESSES), "-nps", str(NNUNET_PROCESSES),
           "--device", device]
    cmd += [] if tta else ["--disable_tta"]
    return run_timed(cmd, dict(env, PYTHONUNBUFFERED="1"), log, NNUNET_DONE)


def per_case_seconds(timed: dict, n_cases: int) -> dict:
    done = timed["case_done_s"]
    if len(done) != n_cases:
        raise RuntimeError(f"expected {n_cases} 'case done' lines, saw {len(done)}")
    steady = (done[-1] - done[0]) / (n_cases - 1) if n_cases > 1 else float("nan")
    return {"s_per_case_with_startup": timed["wall_s"] / n_cases, "s_per_case_steady": steady,
            "first_case_done_s": done[0], "wall_s": timed["wall_s"]}


# --- accuracy -----------------------------------------------------------------------------------------------------


def mean_foreground_dice(prediction: np.ndarray, reference: np.ndarray, labels: list[int]) -> float:
    from orthodiff_auto.training.segmentation_metrics import dice_per_class

    values = [d for d in dice_per_class(prediction, reference, labels).values() if d == d]
    return float(np.mean(values)) if values else float("nan")


def predictions(tool: str, out: Path, scans, view: str) -> dict[str, np.ndarray]:
    """Each case's label map in canonical orientation (nnU-Net's files already are; ours have the input's header)."""
    if tool == "ours":
        return {s.case_id: read_canonical(out / f"{s.case_id}_{view}.nii.gz") for s in scans}
    return {s.case_id: read_canonical(out / f"{s.case_id}.nii.gz") for s in scans}


def dice_summary(pred: dict[str, np.ndarray], references: dict[str, np.ndarray], labels: list[int]) -> dict:
    per_case = {c: mean_foreground_dice(pred[c], references[c], labels) for c in references}
    return {"mean_dice": float(np.nanmean(list(per_case.values()))), "per_case_dice": per_case}


# --- the network floor --------------------------------------------------------------------------------------------


def windows_per_case(scans, view_plan, patch) -> list[int]:
    """Sliding windows each case needs after our preprocessing (the same placement as nnU-Net's)."""
    from orthodiff_auto.data.image_io import read_image
    from orthodiff_auto.training.sliding_window import compute_window_starts
    from orthodiff_auto.preprocessing.case import preprocess_case

    counts = []
    for s in scans:
        data, _, _ = preprocess_case(*read_image(s.image), view_plan)
        shape = [max(n, p) for n, p in zip(data.shape[1:], patch)]
        counts.append(int(np.prod([len(a) for a in compute_window_starts(shape, patch, STEP)])))
    return counts


def forward_seconds(checkpoint: Path, view: str, batch_sizes, threads: int, reps: int, warmup: int = 3) -> dict:
    """Median time of one no-grad forward pass of our network on ``b`` random windows, per batch size ``b``."""
    import torch

    from orthodiff_auto.inference.predictor import SegmentationEnsemble

    torch.set_num_threads(threads)
    ensemble = SegmentationEnsemble.load(view, [checkpoint], torch.device("cpu"))
    model = ensemble.models[0]
    medians = {}
    with torch.no_grad():
        for b in batch_sizes:
            x = torch.randn(b, 1, *ensemble.patch_size)
            seconds = []
            for _ in range(warmup + reps):
                t0 = time.perf_counter()
                model(x)
                seconds.append(time.perf_counter() - t0)
            medians[b] = statistics.median(seconds[warmup:])
    return medians


def floor_seconds(windows: int, batch: int, forward: dict[int, float]) -> float:
    """Forward time of ``windows`` windows predicted ``batch`` at a time (the last batch may be smaller)."""
    full, rest = divmod(windows, batch)
    return full * forward[batch] + (forward[rest] if rest else 0.0)


def network_floor(checkpoint: Path, scans, plans, view: str, threads: int, reps: int) -> dict:
    """Mean forward-only seconds per case at nnU-Net's window batch (1) and ours, without and with 8x TTA."""
    import inspect

    from orthodiff_auto.inference.predictor import SegmentationEnsemble

    ours_batch = inspect.signature(SegmentationEnsemble.segment).parameters["batch_size"].default
    view_plan = plans.view(view)
    windows = windows_per_case(scans, view_plan, view_plan.segmentation.patch_size)
    forward = forward_seconds(checkpoint, view, range(1, max(1, ours_batch) + 1), threads, reps)
    floor = {}
    for tool, batch in (("nnunet", 1), ("ours", ours_batch)):
        per_case = float(np.mean([floor_seconds(w, batch, forward) for w in windows]))
        floor[tool] = {"batch": batch, "no_tta": per_case, "tta": 8 * per_case}
    return {"windows_per_case": windows, "forward_s": forward, "s_per_case": floor}


def mean_floor(floors: list[dict]) -> dict:
    """The mean of floors measured at several moments (each timing averaged; the single ones kept under
    ``measured``)."""
    out = json.loads(json.dumps(floors[0]))
    out["forward_s"] = {b: statistics.mean(f["forward_s"][b] for f in floors) for b in floors[0]["forward_s"]}
    for tool in out["s_per_case"]:
        for key in ("no_tta", "tta"):
            out["s_per_case"][tool][key] = statistics.mean(f["s_per_case"][tool][key] for f in floors)
    out["measured"] = [{"forward_s": f["forward_s"], "s_per_case": f["s_per_case"]} for f in floors]
    return out


def median_runs(per_repeat: list[dict]) -> dict:
    """Per run name: the median over repeats of every timing; Dice and load from the first repeat (the
    predictions are the same in every repeat)."""
    out = {}
    for name in per_repeat[0]:
        first = per_repeat[0][name]
        out[name] = dict(first)
        for key in ("s_per_case_with_startup", "s_per_case_steady", "first_case_done_s", "wall_s"):
            out[name][key] = statistics.median(r[name][key] for r in per_repeat)
        out[name]["load"] = "; ".join(r[name]["load"] for r in per_repeat)
    return out


def median_floor(per_repeat: list[dict]) -> dict:
    out = json.loads(json.dumps(per_repeat[0]))
    for tool in out["s_per_case"]:
        for key in ("no_tta", "tta"):
            out["s_per_case"][tool][key] = statistics.median(r["s_per_case"][tool][key] for r in per_repeat)
    return out


# --- report -------------------------------------------------------------------------------------------------------


def print_report(results: dict) -> None:
    runs, floor = results["runs"], results["floor"]

    def cell(key, fmt):
        return lambda r: format(r[key], fmt) if r else "-"

    rows = [("s/case with start-up", cell("s_per_case_with_startup", ".2f")),
            ("s/case steady state", cell("s_per_case_steady", ".2f")),
            ("mean Dice (foreground labels)", cell("mean_dice", ".4f")),
            ("load average", cell("load", "s"))]
    settings = (("defaults (nnU-Net: TTA 8x; ours: no TTA)", "nnunet_tta", "ours_no_tta"),
                ("same settings, no TTA", "nnunet_no_tta", "ours_no_tta"),
                ("same settings, TTA 8x", "nnunet_tta", "ours_tta"))
    print(f"{'':44} {'nnU-Net v2 nnUNetPredictor':30} orthodiff predict_folder")
    for title, theirs, ours in settings:
        print(title)
        for name, get in rows:
            print(f"  {name:42} {get(runs.get(theirs)):30} {get(runs[ours])}")
        if runs.get(theirs):
            key = "tta" if ours == "ours_tta" else "no_tta"
            speedup = (results["speedup"][key] if theirs == f"nnunet_{key}" else
                       runs[theirs]["s_per_case_steady"] / runs[ours]["s_per_case_steady"])
            print(f"  {'nnU-Net / ours (steady state, median)':42} {'':30} {speedup:.2f}x;  Dice ours - nnU-Net "
                  f"{runs[ours]['mean_dice'] - runs[theirs]['mean_dice']:+.4f}")
    f = floor["s_per_case"]
    print(f"network forward floor, s/case ({np.mean(floor['windows_per_case']):.1f} windows per case; window batch "
          f"{f['nnunet']['batch']} / {f['ours']['batch']})")
    for key, title in (("no_tta", "no TTA"), ("tta", "TTA 8x")):
        print(f"  {title:42} {f['nnunet'][key]:<30.2f} {f['ours'][key]:.2f}")
    print(f"ours without TTA / its forward floor (median over {len(results['repeats'])} repeats): "
          f"{results['ours_over_floor_no_tta']:.2f}x")
    for key, value in results.get("agreement", {}).items():
        print(f"agreement of the two tools' label maps, {key.replace('_', ' ')}: mean Dice {value:.4f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preprocessed_dir", type=Path, help="folder written by `orthodiff plan_and_preprocess`")
    ap.add_argument("--view", default="sag")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--results", type=Path, help="results folder (default: results/ beside PREPROCESSED_DIR)")
    ap.add_argument("--config", default="demo", help="train_fold preset when the fold must be trained (default demo)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="train_fold config override (repeatable)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for both (default: CPUs)")
    ap.add_argument("--floor-reps", type=int, default=10, help="timed forward passes per batch size (default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="times the interleaved runs and the floor are repeated; "
                    "the report shows medians (default 3)")
    ap.add_argument("-np", type=int, default=2, help="processes for nnU-Net's fingerprint")
    ap.add_argument("--raw", type=Path, help="raw dataset (default: the one the folder was preprocessed from)")
    ap.add_argument("--nnunet-bin", help="bin/ folder of a virtualenv with nnunetv2 installed")
    ap.add_argument("--skip-nnunet", action="store_true", help="run ours and the network floor only")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    args = ap.parse_args(argv)

    from orthodiff_auto.plans.schema import Plans

    pre = args.preprocessed_dir
    plans = Plans.load(pre / "plans.json")
    results_dir = args.results or pre.parent / "results"
    raw = raw_dataset_of(pre, args.raw)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_predict_"))
    work.mkdir(parents=True, exist_ok=True)
    bin_dir = None if args.skip_nnunet else find_nnunet_bin(args.nnunet_bin)
    if bin_dir is None and not args.skip_nnunet:
        print(NNUNET_INSTALL_HINT + ": running ours only.\n")

    ensure_trained_fold(pre, results_dir, args.view, args.fold, args.config, args.overrides)
    checkpoint = our_model_folder(pre, results_dir, args.view, args.fold, work / "model_ours")
    scans, input_ours, input_nnunet = test_inputs(raw, args.view, work)
    references = {s.case_id: read_canonical(s.label) for s in scans}
    labels = sorted(v for v in plans.labels.values() if v != 0)
    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "view": args.view, "fold": args.fold,
                     "threads": args.threads, "cases": [s.case_id for s in scans], "checkpoint": str(checkpoint),
                     "runs": {}}

    plan = [("ours", False), ("ours", True)]
    if bin_dir is not None:
        setup = prepare_nnunet(bin_dir, pre, raw, args.view, work, args.np, preprocess=False)
        nnunet_model_folder(setup, checkpoint, args.fold, work / "model_nnunet")
        driver = work / "nnunet_predict_driver.py"
        driver.write_text(PREDICT_DRIVER)
        results["nnunet_version"] = nnunet_version(bin_dir)
        plan = [("nnunet", True), ("ours", False), ("nnunet", False), ("ours", True)]
    # The machine may be loaded: the runs of the two tools alternate, the whole sequence (and the floor) is repeated,
    # and the report takes medians over the repeats.
    predicted, repeats = {}, []
    for repeat in range(args.repeats):
        runs = {}
        for tool, tta in plan:
            name = f"{tool}_{'tta' if tta else 'no_tta'}"
            out, log = work / f"pred_{name}", work / f"pred_{name}.log"
            shutil.rmtree(out, ignore_errors=True)
            print(f"[{repeat + 1}/{args.repeats}] {name}: predicting {len(scans)} cases ...", flush=True)
            bracket = tool == "ours" and not tta  # the floor (5.) right before and right after this run
            floors = [network_floor(checkpoint, scans, plans, args.view, args.threads, args.floor_reps)] if (
                bracket) else []
            load_before = load_average()
            if tool == "ours":
                timed = predict_ours(input_ours, out, work / "model_ours", args.fold, tta, args.threads, log)
            else:
                timed = predict_nnunet(str(bin_dir / "python"), driver, input_nnunet, out, work / "model_nnunet",
                                       args.fold, tta, args.threads, setup["env"], log)
            runs[name] = {**per_case_seconds(timed, len(scans)), "load": f"{load_before} -> {load_average()}"}
            if bracket:
                floors.append(network_floor(checkpoint, scans, plans, args.view, args.threads, args.floor_reps))
                floor = mean_floor(floors)
            predicted[name] = predictions(tool, out, scans, args.view)
            runs[name].update(dice_summary(predicted[name], references, labels))
        repeats.append({"runs": runs, "floor": floor})
        if args.json:  # what has been measured so far, should a long run be stopped
            args.json.write_text(json.dumps({**results, "repeats": repeats}, indent=1))
    results["repeats"] = repeats
    results["runs"] = median_runs([r["runs"] for r in repeats])
    results["floor"] = median_floor([r["floor"] for r in repeats])
    results["ours_over_floor_no_tta"] = statistics.median(
        r["runs"]["ours_no_tta"]["s_per_case_steady"] / r["floor"]["s_per_case"]["ours"]["no_tta"] for r in repeats)
    if bin_dir is not None:
        results["agreement"] = {key: dice_summary(predicted[f"ours_{key}"], predicted[f"nnunet_{key}"],
                                                  labels)["mean_dice"] for key in ("no_tta", "tta")}
        results["speedup"] = {key: statistics.median(
            r["runs"][f"nnunet_{key}"]["s_per_case_steady"] / r["runs"][f"ours_{key}"]["s_per_case_steady"]
            for r in repeats) for key in ("no_tta", "tta")}

    print(f"\ndate: {results['date']}; machine: {results['machine']}, python {platform.python_version()}")
    print(f"cases: {len(scans)} {args.view} test scans of {raw}; weights: fold {args.fold} in {results_dir}; "
          f"{args.threads} torch threads"
          + (f"; nnU-Net v2 {results['nnunet_version']} from {bin_dir}" if bin_dir else ""))
    print()
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
