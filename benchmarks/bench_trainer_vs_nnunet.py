#!/usr/bin/env python
"""Side-by-side: N training iterations of our segmentation trainer vs nnU-Net v2's ``nnUNetTrainer``, with the
same patch, batch size and network (dna's PlainConvUNet with our plan's features, kernels and strides).

Usage::

    orthodiff generate_synthetic /tmp/hb/raw --size demo --cases 30 --test 6 -np 2
    orthodiff plan_and_preprocess /tmp/hb/raw --out /tmp/hb/pre --budget cpu -np 2
    python benchmarks/bench_trainer_vs_nnunet.py /tmp/hb/pre --view sag --iterations 30 [--json out.json]

nnU-Net v2 is the optional ``bench`` extra, best in a separate virtualenv: ``--nnunet-bin VENV/bin`` (default as in
bench_plan_and_preprocess.py: on PATH, else /tmp/bench_venv/bin). Without it only ours and the compute floor run.

What runs, in order:

1. nnU-Net's copy of the data: the labelled training scans of VIEW in the raw dataset our folder was preprocessed
   from (``--raw`` overrides), written as an nnU-Net v2 dataset in our canonical orientation (an axis permutation and
   flips, no interpolation; nnU-Net works on the stored array order, so both networks see identically oriented
   arrays). ``nnUNetv2_extract_fingerprint`` and ``nnUNetv2_plan_experiment`` run, then the 3d_fullres
   configuration is overwritten with our target spacing, patch size, batch size, normalisation mask, resampling
   orders and PlainConvUNet arguments (all read from our plans.json), our fold's split goes to splits_final.json,
   and ``nnUNetv2_preprocess -c 3d_fullres`` preprocesses it.
2. the compute floor: forward + backward of the identical network (deep supervision on) on a random batch of the
   plan's batch size: no data loading, no loss, no optimizer step. Built by our builder in this venv and by
   nnU-Net's ``get_network_from_plans`` in its venv (their torch versions may differ); the parameter count and a
   hash of the state-dict names and shapes show that the two networks are the same.
3. the batch cost: seconds to build one augmented batch in a single process (what each augmentation worker spends
   per batch; on a machine with few cores it competes with the training process for the CPU).
4. ``--repeat`` training runs per tool, alternating: nnU-Net's ``nnUNetTrainer`` on the CPU (``on_train_start`` then
   N ``train_step`` calls, in a driver script that this script writes to the working folder and runs with nnU-Net's
   Python), and ours, ``training.loop.Trainer.fit`` on the same fold, one epoch of N iterations (``--config``
   preset, default ``full``, i.e. nnU-Net's recipe; ``--set`` overrides apply), in this process.

One iteration is the time from asking the data loader for the batch to the end of the optimizer step; the data
wait is the part spent blocked on the data loader. Medians pool the runs, each without its first ``--warmup``
iterations (worker start-up). Both tools get ``--threads`` torch threads (default: the CPU count, what
``nnUNetv2_train`` sets on the CPU) and ``--workers`` augmentation processes (our ``num_workers``, nnU-Net's
``nnUNet_n_proc_DA``). On a loaded machine, fewer torch threads than cores (``--threads 1`` on 2 cores) avoids
the stalls of oversubscribed OpenMP threads, which otherwise dominate and vary from run to run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench_plan_and_preprocess import find_nnunet_bin, format_value, nnunet_env, nnunet_version

DATASET_ID = 988
DATASET_NAME = f"Dataset{DATASET_ID}_OrthodiffBench"
CONFIGURATION = "3d_fullres"
UNTIMED_PASSES = 3  # floor and batch-cost passes before the timed ones (allocator, kernel and cache warm-up)

NNUNET_INSTALL_HINT = ("nnU-Net v2 not found (install the optional 'bench' extra, `pip install nnunetv2`, e.g. in a "
                       "separate virtualenv, and pass --nnunet-bin VENV/bin)")

# Run by nnU-Net's Python (and by ours for the floor): it may import nnunetv2 or orthodiff_auto, never both.
DRIVER = r'''
"""Written by benchmarks/bench_trainer_vs_nnunet.py: times nnU-Net v2 training steps or batch building, or the
forward + backward pass of a network, inside the Python that has the library; writes JSON to --out."""
import argparse, hashlib, json, time

import torch


def network_signature(net):
    """Parameter count and a hash of the state-dict names and shapes: equal for identical architectures."""
    names = ";".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(net.state_dict().items()))
    return {"parameters": sum(p.numel() for p in net.parameters()),
            "state_dict_hash": hashlib.sha1(names.encode()).hexdigest()[:12]}


def build_network(args):
    if args.builder == "nnunet":
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        cm = PlansManager(json.load(open(args.plans))).get_configuration(args.configuration)
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1, args.num_classes,
                                     deep_supervision=True)
        return net, cm.patch_size, cm.batch_size
    from orthodiff_auto.networks.builder import build_segmentation_network
    from orthodiff_auto.plans.schema import Plans

    plans = Plans.load(args.plans)
    seg = plans.view(args.view).segmentation
    return build_segmentation_network(seg.architecture, 1, plans.num_classes, True), seg.patch_size, seg.batch_size


def floor(args):
    net, patch, batch = build_network(args)
    net.train()
    x = torch.randn(batch, 1, *patch)
    seconds = []
    for _ in range(args.warmup + args.reps):
        t0 = time.perf_counter()
        outputs = net(x)
        sum(o.float().mean() for o in outputs).backward()
        net.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - t0)
    return {"seconds": seconds[args.warmup:], "patch_size": list(patch), "batch_size": int(batch),
            **network_signature(net)}


def make_trainer(args):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    plans = json.load(open(args.plans))
    plans["continue_training"] = False  # what nnunetv2.run.run_training adds before building the trainer
    trainer = nnUNetTrainer(plans, args.configuration, args.fold, json.load(open(args.dataset_json)),
                            device=torch.device(args.device))
    trainer.num_epochs, trainer.num_iterations_per_epoch = 1, args.iterations
    trainer.on_train_start()
    return trainer


def batches(args):
    """Seconds to build one augmented batch in this process (run with nnUNet_n_proc_DA=0: no workers)."""
    trainer = make_trainer(args)
    seconds = []
    for _ in range(args.warmup + args.reps):
        t0 = time.perf_counter()
        next(trainer.dataloader_train)
        seconds.append(time.perf_counter() - t0)
    trainer.on_train_end()
    return {"seconds": seconds[args.warmup:]}


def train(args):
    trainer = make_trainer(args)
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    stamps = {"start": [], "ready": [], "end": []}
    for _ in range(args.iterations):
        stamps["start"].append(time.perf_counter())
        batch = next(trainer.dataloader_train)
        stamps["ready"].append(time.perf_counter())
        trainer.train_step(batch)
        stamps["end"].append(time.perf_counter())
    trainer.on_train_end()
    return {"stamps": stamps, "batch_size": trainer.batch_size,
            "patch_size": list(trainer.configuration_manager.patch_size), **network_signature(trainer.network)}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["floor", "batches", "train"])
    p.add_argument("--builder", choices=["nnunet", "orthodiff"], default="nnunet")
    p.add_argument("--plans", required=True)
    p.add_argument("--dataset-json")
    p.add_argument("--configuration", default="3d_fullres")
    p.add_argument("--view")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {"floor": floor, "batches": batches, "train": train}[args.mode](args)
    result.update(torch=torch.__version__, threads=torch.get_num_threads())
    json.dump(result, open(args.out, "w"))
'''


# --- nnU-Net's copy of the data, planned with our plan ----------------------------------------------------------


def write_canonical(src: Path, dst: Path, dtype) -> None:
    """Rewrite a scan in our canonical orientation with an identity header. nnU-Net processes the stored array
    order, we the canonical one: this way both see the same arrays (and the same weights fit both)."""
    import SimpleITK as sitk

    from orthodiff_auto.data.image_io import read_image
    from orthodiff_auto.data.orientation import canonical_orientation

    array, geometry = read_image(src, dtype=None)
    orientation = canonical_orientation(geometry)
    img = sitk.GetImageFromArray(np.ascontiguousarray(orientation.to_canonical(array)).astype(dtype))
    img.SetSpacing(tuple(reversed(orientation.spacing_to_canonical(geometry.spacing))))
    dst.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(dst), True)


def read_canonical(path: Path) -> np.ndarray:
    """A raw scan's array in our canonical orientation (what ``write_canonical`` writes)."""
    from orthodiff_auto.data.image_io import read_image
    from orthodiff_auto.data.orientation import canonical_orientation

    array, geometry = read_image(path, dtype=None)
    return np.ascontiguousarray(canonical_orientation(geometry).to_canonical(array))


def raw_dataset_of(preprocessed_dir: Path, raw: Path | None) -> Path:
    from orthodiff_auto.data.preprocessed import read_preprocessed_description

    raw = raw or read_preprocessed_description(preprocessed_dir).get("raw_dataset")
    if not raw or not Path(raw).is_dir():
        raise SystemExit(f"raw dataset of {preprocessed_dir} not found: pass --raw")
    return Path(raw)


def convert_training_scans(raw: Path, view: str, labels: dict[str, int], out: Path) -> int:
    """nnU-Net v2 dataset of the labelled training scans of one view; returns the number of cases."""
    from orthodiff_auto.data.dataset import scan_raw_dataset

    scans = scan_raw_dataset(raw).select("train", view, labelled=True)
    for s in scans:
        write_canonical(s.image, out / "imagesTr" / f"{s.case_id}_0000.nii.gz", np.float32)
        write_canonical(s.label, out / "labelsTr" / f"{s.case_id}.nii.gz", np.uint8)
    description = {"channel_names": {"0": "MRI"}, "labels": labels, "numTraining": len(scans),
                   "file_ending": ".nii.gz", "name": f"orthodiff {view}"}
    (out / "dataset.json").write_text(json.dumps(description, indent=2))
    return len(scans)


def nnunet_configuration_from_ours(nnunet_plans: dict, plans, view: str) -> dict:
    """nnU-Net's plans with only a 3d_fullres configuration that carries our plan for VIEW (its axis order is
    nnU-Net's transposed one: ``transpose_forward[i]`` is the array axis that becomes axis i)."""
    vp = plans.view(view)
    seg = vp.segmentation
    arch = seg.architecture
    if (arch.network_class, arch.norm, arch.nonlin, arch.conv_dim) != ("PlainConvUNet", "instance", "leaky_relu", 3):
        raise SystemExit(f"our plan's network ({arch.network_class}, {arch.norm}, {arch.nonlin}, {arch.conv_dim}D) "
                         "is not nnU-Net's default PlainConvUNet: nothing to compare")
    t = nnunet_plans["transpose_forward"]

    def order(seq):
        return [seq[a] for a in t]

    c = copy.deepcopy(nnunet_plans["configurations"][CONFIGURATION])
    c.update(spacing=order(vp.target_spacing), patch_size=order(seg.patch_size), batch_size=seg.batch_size,
             median_image_size_in_voxels=order(vp.median_shape_after_resampling),
             use_mask_for_norm=[vp.normalization.use_mask_for_norm])
    r = vp.resampling
    for key, interpolation_order in (("resampling_fn_data_kwargs", r.image_order),
                                     ("resampling_fn_seg_kwargs", r.label_order),
                                     ("resampling_fn_probabilities_kwargs", r.probabilities_order)):
        c[key].update(order=interpolation_order, order_z=r.through_plane_order)
    c["architecture"]["arch_kwargs"].update(
        n_stages=arch.n_stages, features_per_stage=list(arch.features_per_stage),
        kernel_sizes=[order(k) for k in arch.kernel_sizes], strides=[order(s) for s in arch.strides],
        n_conv_per_stage=list(arch.n_conv_per_stage), n_conv_per_stage_decoder=list(arch.n_conv_per_stage_decoder),
        conv_bias=arch.conv_bias)
    out = copy.deepcopy(nnunet_plans)
    out["configurations"] = {CONFIGURATION: c}
    return out


def prepare_nnunet(bin_dir: Path, preprocessed_dir: Path, raw: Path, view: str, work: Path, np_: int,
                   split: tuple[list[str], list[str]] | None = None, preprocess: bool = True) -> dict:
    """Convert, fingerprint and plan with nnU-Net, put our plan into its 3d_fullres configuration and (optionally)
    preprocess. Returns the environment and the paths of its plans.json and dataset.json."""
    from orthodiff_auto.plans.schema import Plans

    plans = Plans.load(preprocessed_dir / "plans.json")
    env = nnunet_env(work)
    ds_raw = Path(env["nnUNet_raw"]) / DATASET_NAME
    ds_pre = Path(env["nnUNet_preprocessed"]) / DATASET_NAME
    shutil.rmtree(ds_raw, ignore_errors=True)
    shutil.rmtree(ds_pre, ignore_errors=True)
    n = convert_training_scans(raw, view, plans.labels, ds_raw)
    print(f"nnU-Net dataset: {n} labelled {view} training scans -> {ds_raw}", flush=True)
    did = str(DATASET_ID)
    run_logged([str(bin_dir / "nnUNetv2_extract_fingerprint"), "-d", did, "-np", str(np_)], env,
               work / "nnunet_fingerprint.log")
    run_logged([str(bin_dir / "nnUNetv2_plan_experiment"), "-d", did], env, work / "nnunet_plan.log")
    plans_path = ds_pre / "nnUNetPlans.json"
    nnunet_plans = nnunet_configuration_from_ours(json.loads(plans_path.read_text()), plans, view)
    plans_path.write_text(json.dumps(nnunet_plans, indent=1))
    if split is not None:
        (ds_pre / "splits_final.json").write_text(json.dumps([{"train": split[0], "val": split[1]}]))
    if preprocess:
        run_logged([str(bin_dir / "nnUNetv2_preprocess"), "-d", did, "-c", CONFIGURATION, "-np", str(np_)], env,
                   work / "nnunet_preprocess.log")
    return {"env": env, "plans": plans_path, "dataset_json": ds_pre / "dataset.json", "configuration": CONFIGURATION}


# --- timing -------------------------------------------------------------------------------------------------------


def write_driver(work: Path) -> Path:
    path = work / "nnunet_bench_driver.py"
    path.write_text(DRIVER)
    return path


def run_logged(cmd: list[str], env: dict | None, log: Path) -> None:
    """Run ``cmd`` with its output in ``log``; on failure raise with the log's tail. (Not bench_plan_and_preprocess'
    ``run_measured``: its memory sampler reads /proc every 50 ms, a CPU cost only the subprocess side would pay.)"""
    with open(log, "w") as f:
        rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"command failed ({rc}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")


def run_driver(python: str, driver: Path, args: list[str], env: dict | None, log: Path) -> dict:
    """Run the driver with ``python`` (nnU-Net's or ours) and return the JSON it writes."""
    out = log.with_suffix(".json")
    run_logged([python, str(driver), *args, "--out", str(out)], env, log)
    return json.loads(out.read_text())


@dataclass
class NnunetSide:
    """nnU-Net's measurements: the driver, run by nnU-Net's Python on the dataset ``prepare_nnunet`` set up."""

    python: str
    driver: Path
    setup: dict
    work: Path
    threads: int

    def run(self, mode: str, extra: list[str], tag: str, **env) -> dict:
        args = [mode, "--plans", str(self.setup["plans"]), "--dataset-json", str(self.setup["dataset_json"]),
                "--threads", str(self.threads), *extra]
        return run_driver(self.python, self.driver, args, dict(self.setup["env"], **env), self.work / f"{tag}.log")


def summarize_iterations(runs: list[dict[str, list[float]]], warmup: int) -> dict:
    """Medians over the iterations of all runs (each without its first ``warmup``) from per-iteration stamps:
    seconds per iteration, per iteration without the data wait, and the data-wait fraction."""
    iteration, wait = [], []
    for stamps in runs:
        start, ready, end = (np.asarray(stamps[k]) for k in ("start", "ready", "end"))
        iteration.append((end - start)[warmup:])
        wait.append((ready - start)[warmup:])
    iteration, wait = np.concatenate(iteration), np.concatenate(wait)
    if iteration.size == 0:
        raise SystemExit(f"--iterations must exceed --warmup ({warmup})")
    return {"counted": int(iteration.size), "median_s_per_iteration": float(np.median(iteration)),
            "median_compute_s": float(np.median(iteration - wait)),
            "data_wait_fraction": float(wait.sum() / iteration.sum()), "max_data_wait_s": float(wait.max()),
            "s_per_iteration": iteration.tolist()}


def floor_summary(results: list[dict]) -> dict:
    seconds = [t for r in results for t in r["seconds"]]
    first = results[0]
    return {"median_s": statistics.median(seconds), "torch": first["torch"], "threads": first["threads"],
            "parameters": first["parameters"], "state_dict_hash": first["state_dict_hash"], "seconds": seconds}


class _StampedBatches:
    """The trainer's batch iterator, recording when each batch was asked for and when it arrived."""

    def __init__(self, loader, stamps: dict[str, list[float]]):
        self._batches = iter(loader)
        self._stamps = stamps

    def __iter__(self):
        return self

    def __next__(self):
        self._stamps["start"].append(time.perf_counter())
        batch = next(self._batches)
        self._stamps["ready"].append(time.perf_counter())
        return batch


def fold_split(preprocessed_dir: Path, view: str, fold: int) -> tuple[list[str], list[str]]:
    """Our fold's labelled training and validation cases of VIEW (nnU-Net gets the same split)."""
    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.preprocessing.storage import PreprocessedDataset
    from orthodiff_auto.training.config import TrainingConfig
    from orthodiff_auto.training.fold import FoldRequest, prepare_split

    plans = Plans.load(preprocessed_dir / "plans.json")
    request = FoldRequest(preprocessed_dir, "seg", view, fold, TrainingConfig())  # the split ignores the config
    train_ids, val_ids = prepare_split(request, plans)
    labelled = set(PreprocessedDataset(preprocessed_dir, view).case_ids(subset="train", labelled=True))
    return [c for c in train_ids if c in labelled], [c for c in val_ids if c in labelled]


def our_task(preprocessed_dir: Path, view: str, fold: int, config):
    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.segmentation.task import SegmentationTask

    train_ids, val_ids = fold_split(preprocessed_dir, view, fold)
    return SegmentationTask(Plans.load(preprocessed_dir / "plans.json"), view, config, preprocessed_dir, train_ids,
                            val_ids, fold=fold)


def our_batch_seconds(preprocessed_dir: Path, view: str, fold: int, config, reps: int) -> list[float]:
    """Seconds to build one augmented batch in this process (what each data-loader worker does per batch)."""
    from orthodiff_auto.training.distributed import DistributedContext

    n = UNTIMED_PASSES + reps
    dataset = our_task(preprocessed_dir, view, fold, config).batch_dataset(0, n, DistributedContext())
    seconds = []
    for i in range(n):
        t0 = time.perf_counter()
        dataset[i]
        seconds.append(time.perf_counter() - t0)
    return seconds[UNTIMED_PASSES:]


def run_ours(preprocessed_dir: Path, view: str, fold: int, config, out: Path) -> tuple[dict, dict]:
    """Our Trainer.fit on the fold for one epoch; returns (time stamps, the trainer's history). The stamps come
    from the batch iterator and the task's ``after_step`` hook (called after every optimizer step), so the loop
    itself is the unmodified one."""
    import torch

    from orthodiff_auto.training.loop import Trainer

    task = our_task(preprocessed_dir, view, fold, config)
    stamps: dict[str, list[float]] = {"start": [], "ready": [], "end": []}
    task.after_step = lambda model: stamps["end"].append(time.perf_counter())

    class StampedTrainer(Trainer):
        def _loader(self, start_iteration):
            return _StampedBatches(super()._loader(start_iteration), stamps)

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    trainer = StampedTrainer(task, config, out, torch.device("cpu"))
    trainer.fit()
    return stamps, trainer.history


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# --- report -------------------------------------------------------------------------------------------------------


def print_report(results: dict) -> None:
    ours, theirs = results["ours"], results.get("nnunet") or {}
    fo, ft = results["floor_ours"], results.get("floor_nnunet")

    def row(name: str, get) -> None:
        print(f"{name:46} {get(theirs, ft) if theirs else '-':30} {get(ours, fo)}")

    print(f"{'':46} {'nnU-Net v2 nnUNetTrainer':30} orthodiff_auto Trainer")
    row("patch / batch", lambda r, f: f"{format_value(r['patch_size'])} / {r['batch_size']}")
    row("network parameters (state-dict hash)", lambda r, f: f"{f['parameters']} ({f['state_dict_hash']})")
    row("torch (threads)", lambda r, f: f"{f['torch']} ({f['threads']})")
    row("median s/iteration", lambda r, f: f"{r['median_s_per_iteration']:.3f}")
    row("median s/iteration without data wait", lambda r, f: f"{r['median_compute_s']:.3f}")
    row("data wait (fraction of iteration time)", lambda r, f: f"{r['data_wait_fraction']:.1%}")
    row("s to build one batch in one process", lambda r, f: f"{r['median_batch_s']:.3f}")
    row("compute floor: forward+backward, median s", lambda r, f: f"{f['median_s']:.3f}")
    row("median iteration / floor", lambda r, f: f"{r['median_s_per_iteration'] / f['median_s']:.2f}x")
    row("load average over the training runs", lambda r, f: r["load"])
    if theirs:
        print(f"\nnnU-Net / ours, median s/iteration: "
              f"{theirs['median_s_per_iteration'] / ours['median_s_per_iteration']:.2f}x")
    print("our trainer's own log, data wait per epoch (start-up included): "
          + ", ".join(f"{w:.0%}" for w in ours["logged_data_wait_fraction"]))
    for name, r in (("ours", ours), ("nnU-Net", theirs)):
        if r and r["data_wait_fraction"] > 0.05:
            print(f"WARNING: {name} waited for data {r['data_wait_fraction']:.0%} of the time: data loading limits it")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preprocessed_dir", type=Path, help="folder written by `orthodiff plan_and_preprocess`")
    ap.add_argument("--view", default="sag")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=30, help="training iterations per run (default 30)")
    ap.add_argument("--warmup", type=int, default=3, help="first iterations of a run left out (default 3)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs per tool, alternating, pooled (default 2): a load spike then hits both")
    ap.add_argument("--reps", type=int, default=10, help="timed passes per floor and batch-cost run (default 10)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for both (default: CPUs)")
    ap.add_argument("--workers", type=int, default=2, help="augmentation processes for both (default 2)")
    ap.add_argument("-np", type=int, default=2, help="processes for nnU-Net's fingerprint/preprocessing")
    ap.add_argument("--config", default="full",
                    help="our training preset (default full: nnU-Net's recipe, SGD lr 0.01 momentum 0.99)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value of our training config (repeatable)")
    ap.add_argument("--raw", type=Path, help="raw dataset (default: the one the folder was preprocessed from)")
    ap.add_argument("--nnunet-bin", help="bin/ folder of a virtualenv with nnunetv2 installed")
    ap.add_argument("--skip-nnunet", action="store_true", help="run ours and its compute floor only")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.training.config import make_config

    pre = args.preprocessed_dir
    plans = Plans.load(pre / "plans.json")
    seg = plans.view(args.view).segmentation
    config = make_config(args.config, ["num_epochs=1", f"iterations_per_epoch={args.iterations}",
                                       f"num_workers={args.workers}", "val_batches_per_epoch=1", *args.overrides])
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_trainer_"))
    work.mkdir(parents=True, exist_ok=True)
    driver = write_driver(work)
    bin_dir = None if args.skip_nnunet else find_nnunet_bin(args.nnunet_bin)
    if bin_dir is None and not args.skip_nnunet:
        print(NNUNET_INSTALL_HINT + ": running ours only.\n")
    torch.set_num_threads(args.threads)
    timing = ["--warmup", str(UNTIMED_PASSES), "--reps", str(args.reps)]
    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "view": args.view, "fold": args.fold,
                     "iterations": args.iterations, "repeat": args.repeat, "threads": args.threads,
                     "workers": args.workers, "warmup": args.warmup, "our_config": config.to_dict()}
    nnunet = None
    if bin_dir is not None:
        setup = prepare_nnunet(bin_dir, pre, raw_dataset_of(pre, args.raw), args.view, work, args.np,
                               fold_split(pre, args.view, args.fold))
        nnunet = NnunetSide(str(bin_dir / "python"), driver, setup, work, args.threads)
        results["nnunet_version"] = nnunet_version(bin_dir)

    print("compute floor and batch cost ...", flush=True)
    floors: dict[str, list[dict]] = {"ours": [], "nnunet": []}
    for r in range(args.repeat):
        floor_args = ["floor", "--builder", "orthodiff", "--plans", str(pre / "plans.json"), "--view", args.view,
                      "--threads", str(args.threads), *timing]
        floors["ours"].append(run_driver(sys.executable, driver, floor_args, None, work / f"floor_ours_{r}.log"))
        if nnunet:
            floors["nnunet"].append(nnunet.run("floor", ["--builder", "nnunet", "--num-classes",
                                                         str(plans.num_classes), *timing], f"floor_nnunet_{r}"))
    results["floor_ours"] = floor_summary(floors["ours"])
    our_batches = our_batch_seconds(pre, args.view, args.fold, config, args.reps)
    if nnunet:
        results["floor_nnunet"] = floor_summary(floors["nnunet"])
        their_batches = nnunet.run("batches", ["--fold", str(args.fold), *timing], "batches_nnunet",
                                   nnUNet_n_proc_DA="0")["seconds"]

    stamps: dict[str, list[dict]] = {"ours": [], "nnunet": []}
    logged_wait, trained, load_start = [], None, load_average()
    for r in range(args.repeat):
        if nnunet:
            print(f"nnU-Net run {r + 1}/{args.repeat}: {args.iterations} iterations ...", flush=True)
            trained = nnunet.run("train", ["--fold", str(args.fold), "--iterations", str(args.iterations)],
                                 f"train_nnunet_{r}", nnUNet_n_proc_DA=str(args.workers))
            stamps["nnunet"].append(trained["stamps"])
        print(f"ours run {r + 1}/{args.repeat}: {args.iterations} iterations ...", flush=True)
        run_stamps, history = run_ours(pre, args.view, args.fold, config, work / "ours_fold")
        stamps["ours"].append(run_stamps)
        logged_wait.append(history["data_wait_s"][0] / history["epoch_time_s"][0])
    load = f"{load_start} -> {load_average()}"
    results["ours"] = {**summarize_iterations(stamps["ours"], args.warmup), "load": load,
                       "patch_size": list(seg.patch_size), "batch_size": seg.batch_size,
                       "median_batch_s": statistics.median(our_batches), "logged_data_wait_fraction": logged_wait}
    if nnunet:
        results["nnunet"] = {**summarize_iterations(stamps["nnunet"], args.warmup), "load": load,
                             "patch_size": trained["patch_size"], "batch_size": trained["batch_size"],
                             "median_batch_s": statistics.median(their_batches)}

    print(f"\ndate: {results['date']}; machine: {results['machine']}, python {platform.python_version()}")
    print(f"data: {pre} view {args.view} fold {args.fold}; {args.repeat} x {args.iterations} iterations per tool, "
          f"medians over {results['ours']['counted']} (first {args.warmup} of each run left out); {args.threads} torch "
          f"threads, {args.workers} augmentation workers; ours: --config {args.config}"
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
