#!/usr/bin/env python
"""CUDA check: generate a small synthetic dataset, plan it for the GPU found, train one segmentation fold for a
fixed number of iterations with mixed precision, predict the test scans; prints iterations/s and s/case, the same
with each speed option (cuDNN autotuner, channels_last_3d, torch.compile), and nnU-Net v2's on the same card with
the same weights where it is installed.

Usage (on a CUDA machine; a few minutes, well under 8 on one H100)::

    python benchmarks/gpu_check.py [--work DIR] [--view sag] [--epochs 4] [--iterations-per-epoch 50] [--json out.json]
        [--nnunet-bin VENV/bin | --skip-nnunet] [--no-options]

Without CUDA it says so and exits 0 at once, so it is safe to run anywhere. ``--device cpu --size tiny`` runs the
whole script on the CPU instead (the ``cpu`` budget, a tiny dataset): a check of the script, not of a GPU. Everything runs in this process through
the library's Python API: ``synthetic.generator.generate_dataset``, the plan_and_preprocess stages with the ``gpu``
budget (the detected GPU memory), ``pipeline.train_fold.train_fold`` (``full`` preset: nnU-Net's recipe, mixed precision,
``--epochs`` x ``--iterations-per-epoch`` iterations), ``find_best_configuration --folds 0`` and
``inference.folder.predict_folder``.

nnU-Net (found as in bench_plan_and_preprocess.py, or ``--nnunet-bin``): its model folder holds our fold's weights
(bench_predict_vs_nnunet.py), it predicts the same test scans without TTA, and its ``nnUNetTrainer`` runs
``--iterations-per-epoch`` training steps on our plan (bench_trainer_vs_nnunet.py's driver), both on the same device.

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


def make_data(raw: Path, pre: Path, cases: int, test: int, processes: int, size: str = "demo",
              budget: str = "gpu") -> dict:
    """Synthetic raw dataset, then validate, fingerprint, plan (``budget``) and preprocess it; returns the plan."""
    from orthodiff_auto.plans.budget import parse_budget
    from orthodiff_auto.preprocessing.stages import run_fingerprint, run_plan, run_preprocess, validated_dataset
    from orthodiff_auto.synthetic.generator import generate_dataset

    generate_dataset(raw, n_cases=cases, n_test=test, size=size, num_processes=processes, complete=True)
    dataset = validated_dataset(raw, processes)
    run_fingerprint(dataset, pre, processes, progress=False)
    plans, _ = run_plan(pre, parse_budget(budget))
    run_preprocess(dataset, pre, processes, progress=False)
    return plans


def train(pre: Path, view: str, epochs: int, iterations: int, workers: int, device: str,
          extra: tuple[str, ...] = ()) -> dict:
    """One fold with mixed precision (``extra``: more config overrides, e.g. the speed options); throughput from the
    trainer's history, first epoch left out."""
    import torch

    from orthodiff_auto.training.checkpoint import load_checkpoint
    from orthodiff_auto.training.config import make_config
    from orthodiff_auto.pipeline.train_fold import train_fold
    from orthodiff_auto.training.fold import FoldRequest

    overrides = [f"num_epochs={epochs}", f"iterations_per_epoch={iterations}", f"num_workers={workers}",
                 "mixed_precision=true", f"checkpoint_every_epochs={epochs}", *extra]
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


def model_and_inputs(pre: Path, raw: Path, view: str, work: Path) -> tuple[Path, Path]:
    """Model folder from fold 0 (VIEW's segmentation only) and a folder linking the view's test scans."""
    from orthodiff_auto.inference.model_dir import ModelDescription
    from orthodiff_auto.pipeline.model_selection import find_best_configuration

    model = work / "model"
    description = find_best_configuration(pre, model, folds=[0])
    ModelDescription(description.dataset, {view: description.segmentation[view]}, None,
                     description.candidates).save(model)
    inputs = work / "test_inputs"
    shutil.rmtree(inputs, ignore_errors=True)
    inputs.mkdir()
    for path in sorted((raw / "imagesTs").glob(f"*_{view}.nii.gz")):
        (inputs / path.name).symlink_to(path.resolve())
    return model, inputs


def predict(model: Path, inputs: Path, work: Path, device: str, speed=None) -> dict:
    """predict_folder on the test scans; seconds per case (all, and between the first and the last case)."""
    from orthodiff_auto.inference.folder import PredictionOptions, predict_folder
    from orthodiff_auto.training.device import SpeedOptions

    done: list[float] = []
    t0 = time.perf_counter()

    def log(message: str) -> None:
        print(message, flush=True)
        if message.startswith("predicted "):
            done.append(time.perf_counter() - t0)

    options = PredictionOptions(folds=(0,), device=device, overwrite=True, speed=speed or SpeedOptions())
    report = predict_folder(inputs, work / "predictions", model, options, log=log)
    wall = time.perf_counter() - t0
    if report.failed or not done:
        raise SystemExit(f"prediction failed: {report.failed or 'no case predicted'}")
    n = len(done)
    return {"cases": n, "s_per_case": wall / n, "s_per_case_steady": (done[-1] - done[0]) / (n - 1) if n > 1 else None}


SPEED_OPTIONS = ("cudnn_benchmark", "channels_last", "compile")


def nnunet_side(bin_dir: Path, pre: Path, raw: Path, view: str, work: Path, inputs: Path, device: str,
                iterations: int, threads: int) -> dict:
    """nnU-Net v2 on the same device: prediction with our fold's weights (no TTA) and training steps on our plan."""
    import numpy as np
    from bench_predict_vs_nnunet import PREDICT_DRIVER, nnunet_model_folder, per_case_seconds, predict_nnunet
    from bench_trainer_vs_nnunet import DRIVER, fold_split, prepare_nnunet, run_driver, write_canonical

    from orthodiff_auto.inference.model_dir import ModelDescription

    setup = prepare_nnunet(bin_dir, pre, raw, view, work, min(8, os.cpu_count() or 1), split=fold_split(pre, view, 0))
    checkpoint = work / "model" / ModelDescription.load(work / "model").segmentation[view].checkpoints[0]
    nnunet_model_folder(setup, checkpoint, 0, work / "model_nnunet")
    theirs = work / "test_inputs_nnunet"
    shutil.rmtree(theirs, ignore_errors=True)
    cases = sorted(inputs.iterdir())
    for path in cases:
        write_canonical(path, theirs / path.name.replace(f"_{view}.nii.gz", "_0000.nii.gz"), np.float32)
    predict_driver, train_driver = work / "nnunet_predict_driver.py", work / "nnunet_train_driver.py"
    predict_driver.write_text(PREDICT_DRIVER)
    train_driver.write_text(DRIVER)
    timed = predict_nnunet(str(bin_dir / "python"), predict_driver, theirs, work / "predictions_nnunet",
                           work / "model_nnunet", 0, False, threads, setup["env"], work / "nnunet_predict.log", device)
    trained = run_driver(str(bin_dir / "python"), train_driver,
                         ["train", "--plans", str(setup["plans"]), "--dataset-json", str(setup["dataset_json"]),
                          "--threads", str(threads), "--iterations", str(iterations), "--device", device],
                         setup["env"], work / "nnunet_train.log")
    stamps = trained["stamps"]
    steps = [e - s for s, e in zip(stamps["start"], stamps["end"])][max(1, iterations // 5):]
    return {"prediction": per_case_seconds(timed, len(cases)),
            "iterations_per_s": 1.0 / statistics.median(steps) if steps else None}


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
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu: run the script on the CPU with the cpu budget (a check of the script only)")
    ap.add_argument("--size", choices=("tiny", "demo"), default="demo", help="synthetic scan size (default demo)")
    ap.add_argument("--no-options", action="store_true", help="skip the runs with each speed option")
    ap.add_argument("--nnunet-bin", help="bin/ folder of a virtualenv with nnunetv2 (default: found as in "
                    "bench_plan_and_preprocess.py)")
    ap.add_argument("--skip-nnunet", action="store_true", help="do not run nnU-Net")
    ap.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    device_name = cuda_device() if args.device == "cuda" else "cpu"
    if device_name is None:
        print("gpu_check: no CUDA device visible to torch; nothing to check on this machine.")
        return 0
    import torch

    from bench_plan_and_preprocess import find_nnunet_bin
    from orthodiff_auto.training.device import SpeedOptions

    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    raw, pre = work / "raw", work / "preprocessed"
    amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16 with a grad scaler") if args.device == "cuda" else "off"
    print(f"device: {device_name}, torch {torch.__version__}, CUDA {torch.version.cuda}, {os.cpu_count()} CPUs; mixed "
          f"precision {amp}; work {work}")
    timings: dict[str, float] = {}
    with stage("data", timings):
        plans = make_data(raw, pre, args.cases, args.test, min(8, os.cpu_count() or 1), args.size,
                          "gpu" if args.device == "cuda" else "cpu")
    seg = plans.view(args.view).segmentation
    print(f"   plan ({plans.budget}): patch {list(seg.patch_size)}, batch {seg.batch_size}, "
          f"features {list(seg.architecture.features_per_stage)}")
    with stage("train", timings):
        trained = train(pre, args.view, args.epochs, args.iterations_per_epoch, args.workers, args.device)
    model, inputs = model_and_inputs(pre, raw, args.view, work)
    with stage("predict", timings):
        predicted = {"default": predict(model, inputs, work, args.device)}
    options_trained = {}
    if not args.no_options:
        with stage("speed options", timings):
            for option in SPEED_OPTIONS:
                predicted[option] = predict(model, inputs, work, args.device, SpeedOptions(**{option: True}))
            for option in ("cudnn_benchmark", "channels_last"):  # compiling takes minutes: prediction only
                options_trained[option] = train(pre, args.view, args.epochs, args.iterations_per_epoch, args.workers,
                                                args.device, (f"{option}=true",))
    nnunet = None
    bin_dir = None if args.skip_nnunet else find_nnunet_bin(args.nnunet_bin)
    if bin_dir is not None:
        with stage("nnU-Net", timings):
            try:
                nnunet = nnunet_side(bin_dir, pre, raw, args.view, work, inputs, args.device,
                                     args.iterations_per_epoch, torch.get_num_threads())
            except (SystemExit, RuntimeError) as e:  # e.g. a plan whose network nnU-Net does not build
                print(f"   nnU-Net not compared: {str(e).splitlines()[0]}")
    elif not args.skip_nnunet:
        print("nnU-Net v2 not found (--nnunet-bin VENV/bin): no comparison")

    print(f"\ntraining: {trained['iterations_per_s']:.2f} iterations/s (median over epochs 2-{args.epochs}, "
          f"{args.iterations_per_epoch} iterations each; first epoch {trained['first_epoch_s']:.1f} s), data wait "
          f"{trained['data_wait_fraction']:.1%}, peak GPU memory {trained['peak_gpu_memory_gb']:.2f} GB")
    for option, t in options_trained.items():
        print(f"  with {option}: {t['iterations_per_s']:.2f} iterations/s, data wait {t['data_wait_fraction']:.1%}")
    if trained["validation_mean_dice"] is not None:
        print(f"fold 0 validation mean Dice {trained['validation_mean_dice']:.3f} (a short run: a sanity check only)")
    for name, p in predicted.items():
        steady = p["s_per_case_steady"]
        print(f"prediction ({name}): {p['s_per_case']:.2f} s/case over {p['cases']} cases"
              + (f" ({steady:.2f} s/case after the first)" if steady is not None else ""))
    if nnunet is not None:
        print(f"nnU-Net v2, same device and weights: prediction {nnunet['prediction']['s_per_case_with_startup']:.2f} "
              f"s/case ({nnunet['prediction']['s_per_case_steady']:.2f} after the first), training "
              f"{nnunet['iterations_per_s']:.2f} iterations/s")
    print(f"total {sum(timings.values()):.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ")")
    if args.json:
        numbers = {"device": device_name, "torch": torch.__version__, "plan_patch": list(seg.patch_size),
                   "plan_batch": seg.batch_size, "training": trained, "training_with_option": options_trained,
                   "prediction": predicted, "nnunet": nnunet, "timings_s": timings}
        args.json.write_text(json.dumps(numbers, indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
