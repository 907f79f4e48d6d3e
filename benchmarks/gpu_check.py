#!/usr/bin/env python
"""CUDA check: generate a small synthetic dataset, plan it for the GPU found, train one segmentation fold for a
fixed number of iterations with mixed precision, predict the test scans; prints iterations/s and s/case.

Usage (on a CUDA machine; a few minutes, well under 8 on one H100)::

    python benchmarks/gpu_check.py [--work DIR] [--view sag] [--epochs 4] [--iterations-per-epoch 50] [--json out.json]

Without CUDA it says so and exits 0 at once, so it is safe to run anywhere. Everything runs in this process through
the library's Python API: ``synthetic.generator.generate_dataset``, the plan_and_preprocess stages with the ``gpu``
budget (the detected GPU memory), ``pipeline.train_fold.train_fold`` (``full`` preset: nnU-Net's recipe, mixed precision,
``--epochs`` x ``--iterations-per-epoch`` iterations), ``find_best_configuration --folds 0`` and
``inference.folder.predict_folder``.

Reported: training iterations/s over the epochs after the first (the first holds worker start-up and cuDNN
autotuning), the data-wait fraction of those epochs (above a few percent the GPU is starved by augmentation), peak
GPU memory, and prediction seconds per case (all cases, and steady state: between the first and the last case).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def cuda_device() -> str | None:
    """The CUDA device's name, or None when torch sees none."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


@contextlib.contextmanager
def stage(name: str, timings: dict):
    """Print a stage's name, then record and print the seconds it took."""
    print(f"== {name}", flush=True)
    t0 = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t0
    print(f"   {name}: {timings[name]:.1f} s", flush=True)


def make_data(raw: Path, pre: Path, cases: int, test: int, processes: int) -> dict:
    """Synthetic raw dataset, then validate, fingerprint, plan (gpu budget) and preprocess it; returns the plan."""
    from orthodiff_auto.plans.budget import parse_budget
    from orthodiff_auto.preprocessing.stages import run_fingerprint, run_plan, run_preprocess, validated_dataset
    from orthodiff_auto.synthetic.generator import generate_dataset

    generate_dataset(raw, n_cases=cases, n_test=test, size="demo", num_processes=processes, complete=True)
    dataset = validated_dataset(raw, processes)
    run_fingerprint(dataset, pre, processes, progress=False)
    plans, _ = run_plan(pre, parse_budget("gpu"))
    run_preprocess(dataset, pre, processes, progress=False)
    return plans


def train(pre: Path, view: str, epochs: int, iterations: int, workers: int, device: str) -> dict:
    """One fold with mixed precision; throughput from the trainer's history, first epoch left out."""
    import torch

    from orthodiff_auto.training.checkpoint import load_checkpoint
    from orthodiff_auto.training.config import make_config
    from orthodiff_auto.pipeline.train_fold import train_fold
    from orthodiff_auto.training.fold import FoldRequest

    overrides = [f"num_epochs={epochs}", f"iterations_per_epoch={iterations}", f"num_workers={workers}",
                 "mixed_precision=true", f"checkpoint_every_epochs={epochs}"]
    config = make_config("full", overrides)
    request = FoldRequest(pre, "seg", view, 0, config, device=device)
    shutil.rmtree(request.output_dir(), ignore_errors=True)  # a rerun with the same --work trains afresh
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    summary = train_fold(request)
    history = load_checkpoint(request.output_dir() / "checkpoint_final.pt")["history"]
    times, waits = history["epoch_time_s"][1:], history["data_wait_s"][1:]
    mean = summary.get("mean") or {}
    return {"iterations_per_s": iterations / statistics.median(times), "data_wait_fraction": sum(waits) / sum(times),
            "first_epoch_s": history["epoch_time_s"][0],
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else 0.0,
            "validation_mean_dice": mean["mean"]["dice"]["mean"] if "mean" in mean else None}


def predict(pre: Path, raw: Path, view: str, work: Path, device: str) -> dict:
    """Model folder from fold 0, then predict_folder on the view's test scans; seconds per case."""
    from orthodiff_auto.inference.folder import predict_folder
    from orthodiff_auto.pipeline.model_selection import find_best_configuration

    model = work / "model"
    find_best_configuration(pre, model, folds=[0])
    inputs = work / "test_inputs"
    shutil.rmtree(inputs, ignore_errors=True)
    inputs.mkdir()
    for path in sorted((raw / "imagesTs").glob(f"*_{view}.nii.gz")):
        (inputs / path.name).symlink_to(path.resolve())
    done: list[float] = []
    t0 = time.perf_counter()

    def log(message: str) -> None:
        print(message, flush=True)
        if message.startswith("predicted "):
            done.append(time.perf_counter() - t0)

    report = predict_folder(inputs, work / "predictions", model, folds=[0], device=device, overwrite=True, log=log)
    wall = time.perf_counter() - t0
    if report.failed or not done:
        raise SystemExit(f"prediction failed: {report.failed or 'no case predicted'}")
    n = len(done)
    return {"cases": n, "s_per_case": wall / n, "s_per_case_steady": (done[-1] - done[0]) / (n - 1) if n > 1 else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--view", default="sag")
    ap.add_argument("--cases", type=int, default=12, help="labelled training cases (default 12)")
    ap.add_argument("--test", type=int, default=6, help="test cases (default 6)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs; the first is warm-up (default 4)")
    ap.add_argument("--iterations-per-epoch", type=int, default=50)
    ap.add_argument("--workers", type=int, default=min(8, max(1, (os.cpu_count() or 2) - 2)),
                    help="augmentation processes (default: CPUs - 2, at most 8)")
    ap.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    device = cuda_device()
    if device is None:
        print("gpu_check: no CUDA device visible to torch; nothing to check on this machine.")
        return 0
    import torch

    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    raw, pre = work / "raw", work / "preprocessed"
    amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16 with a grad scaler"  # what the trainer picks
    print(f"device: {device}, torch {torch.__version__}, CUDA {torch.version.cuda}, {os.cpu_count()} CPUs; mixed "
          f"precision {amp}; work {work}")
    timings: dict[str, float] = {}
    with stage("data", timings):
        plans = make_data(raw, pre, args.cases, args.test, min(8, os.cpu_count() or 1))
    seg = plans.view(args.view).segmentation
    print(f"   plan ({plans.budget}): patch {list(seg.patch_size)}, batch {seg.batch_size}, "
          f"features {list(seg.architecture.features_per_stage)}")
    with stage("train", timings):
        trained = train(pre, args.view, args.epochs, args.iterations_per_epoch, args.workers, "cuda")
    with stage("predict", timings):
        predicted = predict(pre, raw, args.view, work, "cuda")

    print(f"\ntraining: {trained['iterations_per_s']:.2f} iterations/s (median over epochs 2-{args.epochs}, "
          f"{args.iterations_per_epoch} iterations each; first epoch {trained['first_epoch_s']:.1f} s), data wait "
          f"{trained['data_wait_fraction']:.1%}, peak GPU memory {trained['peak_gpu_memory_gb']:.2f} GB")
    if trained["validation_mean_dice"] is not None:
        print(f"fold 0 validation mean Dice {trained['validation_mean_dice']:.3f} (a short run: a sanity check only)")
    steady = predicted["s_per_case_steady"]
    print(f"prediction: {predicted['s_per_case']:.2f} s/case over {predicted['cases']} cases"
          + (f" ({steady:.2f} s/case after the first)" if steady is not None else ""))
    print(f"total {sum(timings.values()):.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ")")
    if args.json:
        numbers = {"device": device, "torch": torch.__version__, "plan_patch": list(seg.patch_size),
                   "plan_batch": seg.batch_size, "training": trained, "prediction": predicted, "timings_s": timings}
        args.json.write_text(json.dumps(numbers, indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
