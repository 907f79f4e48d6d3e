#!/usr/bin/env python
"""Side-by-side: nnU-Net v2's ``nnUNetv2_plan_and_preprocess`` vs ``orthodiff plan_and_preprocess``.

Usage::

    # a single-view dataset in nnU-Net v2 format (imagesTr/<case>_0000.nii.gz, labelsTr/, dataset.json)
    python benchmarks/bench_plan_and_preprocess.py DATASET_DIR [-np 2] [--budget gpu:8] [--repeat 3]
    # or first write a knee-like demo dataset (12 cases of about 160x160x32 at about 0.4x0.4x3 mm)
    python benchmarks/bench_plan_and_preprocess.py --make-demo /tmp/bench_raw

nnU-Net v2 is the optional ``bench`` extra (``pip install nnunetv2``), best in a separate virtualenv: pass
``--nnunet-bin /path/to/venv/bin`` (default: the folder of ``nnUNetv2_plan_and_preprocess`` on PATH, else
/tmp/bench_venv/bin). When it cannot be found, only ours runs and the script says so.

Both tools run as subprocesses on the same cases with the same number of processes. Measured per run:
wall time, and peak memory as the largest sum of the proportional set sizes (PSS: shared pages split among the
processes that map them) of the whole process tree, sampled from /proc every 50 ms (worker processes
included; the RSS sum, which counts shared libraries once per process, is kept in the --json output).
Two runs per tool:
- full: fingerprint + plan + preprocess (nnU-Net: ``-c 3d_fullres``; ours also validates the dataset);
- preprocess only: ``nnUNetv2_preprocess -c 3d_fullres`` vs ``orthodiff preprocess --skip-validation`` on
  an already planned folder.
Then the 3d_fullres plan is printed beside ours: target spacing, patch size, batch size, pooling per axis.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

DATASET_ID = 987


# --- measuring ----------------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _mem_bytes(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process; PSS shares pages among the processes mapping them (no double counting of
    the libraries every worker maps)."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return pss, rss


def _tree_mem(root: int) -> tuple[int, int]:
    kids = _children_map()
    pss = rss = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        p, r = _mem_bytes(pid)
        pss, rss = pss + p, rss + r
        stack.extend(kids.get(pid, []))
    return pss, rss


def run_measured(cmd: list[str], env: dict | None = None, log: Path | None = None) -> dict:
    """Run ``cmd``; wall time (s) and peak memory of the process tree (GB): PSS sum and RSS sum."""
    out = open(log, "w") if log else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    peak = [0, 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            pss, rss = _tree_mem(proc.pid)
            peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)
            done.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    if log:
        out.close()
    if rc != 0:
        tail = log.read_text()[-3000:] if log else ""
        raise RuntimeError(f"command failed ({rc}): {' '.join(cmd)}\n{tail}")
    return {"wall_s": wall, "peak_gb": peak[0] / 1024**3, "peak_rss_sum_gb": peak[1] / 1024**3}


# --- demo dataset -------------------------------------------------------------------------------------


def make_demo(root: Path, n: int = 12, seed: int = 0) -> None:
    """nnU-Net v2 format, axial-style headers, about 160x160x32 voxels at about 0.4x0.4x3 mm, 2 structures."""
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    for i in range(n):
        shape = (int(rng.integers(30, 35)), int(rng.integers(150, 171)), int(rng.integers(150, 171)))
        spacing = (float(rng.uniform(2.8, 3.3)), float(rng.uniform(0.36, 0.44)))
        spacing = (spacing[0], spacing[1], spacing[1])
        zz, yy, xx = np.meshgrid(*[(np.arange(s) + 0.5) * sp for s, sp in zip(shape, spacing)], indexing="ij")
        ext = np.array(shape) * np.array(spacing)
        c = ext / 2 + rng.normal(0, 3, 3)
        ball = ((zz - c[0]) / (0.3 * ext[0])) ** 2 + ((yy - c[1]) / 18) ** 2 + ((xx - c[2]) / 16) ** 2 < 1
        slab = (np.abs(yy - c[1] - 25) < 3) & (np.abs(xx - c[2]) < 22) & (np.abs(zz - c[0]) < 0.35 * ext[0])
        label = np.zeros(shape, np.uint8)
        label[ball] = 1
        label[slab] = 2
        image = (rng.normal(200, 20, shape) + 300 * ball + 500 * slab).astype(np.float32)
        image[:, :, :6] = 0  # a little zero padding, as scanners write
        for arr, path in ((image, root / "imagesTr" / f"case_{i:03d}_0000.nii.gz"),
                          (label, root / "labelsTr" / f"case_{i:03d}.nii.gz")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing(tuple(reversed(spacing)))
            sitk.WriteImage(img, str(path), True)
    json.dump({"channel_names": {"0": "MRI"}, "labels": {"background": 0, "ball": 1, "slab": 2},
               "numTraining": n, "file_ending": ".nii.gz", "name": "KneeBench"},
              open(root / "dataset.json", "w"), indent=2)


# --- the two tools ------------------------------------------------------------------------------------


def find_nnunet_bin(explicit: str | None) -> Path | None:
    candidates = [Path(explicit)] if explicit else []
    on_path = shutil.which("nnUNetv2_plan_and_preprocess")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates.append(Path("/tmp/bench_venv/bin"))
    for c in candidates:
        if (c / "nnUNetv2_plan_and_preprocess").is_file():
            return c
    return None


def nnunet_version(bin_dir: Path) -> str:
    try:
        code = "import importlib.metadata as m; print(m.version('nnunetv2'))"
        r = subprocess.run([str(bin_dir / "python"), "-c", code], capture_output=True, text=True, timeout=60)
        return r.stdout.strip() or "?"
    except Exception:
        return "?"


def nnunet_env(work: Path) -> dict:
    env = dict(os.environ)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / k).mkdir(parents=True, exist_ok=True)
        env[k] = str(work / k)
    env["nnUNet_compile"] = "f"
    return env


def run_nnunet(bin_dir: Path, raw: Path, work: Path, np_: int, budget_gb: float, tag: str) -> dict:
    env = nnunet_env(work)
    ds_dir = Path(env["nnUNet_raw"]) / f"Dataset{DATASET_ID}_Bench"
    if not ds_dir.exists():
        shutil.copytree(raw, ds_dir)
    shutil.rmtree(Path(env["nnUNet_preprocessed"]) / ds_dir.name, ignore_errors=True)
    full = run_measured([str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres",
                         "-np", str(np_), "-npfp", str(np_), "-gpu_memory_target", str(budget_gb)], env,
                        work / f"nnunet_full_{tag}.log")
    pp_dir = Path(env["nnUNet_preprocessed"]) / ds_dir.name
    plans = json.loads((pp_dir / "nnUNetPlans.json").read_text())
    shutil.rmtree(pp_dir / "nnUNetPlans_3d_fullres", ignore_errors=True)
    pre = run_measured([str(bin_dir / "nnUNetv2_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres", "-np",
                        str(np_)], env, work / f"nnunet_pp_{tag}.log")
    return {"full": full, "preprocess": pre, "plans": plans}


def run_ours(raw: Path, work: Path, np_: int, budget: str, tag: str) -> dict:
    out = work / f"ours_{tag}"
    shutil.rmtree(out, ignore_errors=True)
    cli = [sys.executable, "-m", "orthodiff_auto"]
    full = run_measured(cli + ["plan_and_preprocess", str(raw), "--out", str(out), "--budget", budget, "-np",
                               str(np_), "--no-progress"], None, work / f"ours_full_{tag}.log")
    plans = json.loads((out / "plans.json").read_text())
    for view in plans["views"]:
        shutil.rmtree(out / view, ignore_errors=True)
    pre = run_measured(cli + ["preprocess", str(raw), "--out", str(out), "-np", str(np_), "--skip-validation",
                              "--no-progress"], None, work / f"ours_pp_{tag}.log")
    return {"full": full, "preprocess": pre, "plans": plans}


# --- report -------------------------------------------------------------------------------------------


def format_value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "x".join(format_value(x) for x in v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def plan_rows_nnunet(plans: dict) -> dict:
    c = plans["configurations"]["3d_fullres"]
    arch = c["architecture"]["arch_kwargs"]
    strides = arch["strides"]
    pools = [sum(1 for s in strides if s[a] > 1) for a in range(3)]
    return {"target spacing (mm)": c["spacing"], "patch size": c["patch_size"], "batch size": c["batch_size"],
            "stages": arch["n_stages"], "pooling per axis": pools,
            "features": "-".join(str(f) for f in arch["features_per_stage"]),
            "first kernels": arch["kernel_sizes"][0], "axis order": f"transpose {plans['transpose_forward']}"}


def plan_rows_ours(plans: dict, view: str) -> dict:
    v = plans["views"][view]
    s = v["segmentation"]
    a = s["architecture"]
    pools = [sum(1 for st in a["strides"] if st[i] > 1) for i in range(3)]
    return {"target spacing (mm)": v["target_spacing"], "patch size": s["patch_size"], "batch size": s["batch_size"],
            "stages": a["n_stages"], "pooling per axis": pools,
            "features": "-".join(str(f) for f in a["features_per_stage"]), "first kernels": a["kernel_sizes"][0],
            "axis order": f"canonical ({view}: through-plane first)"}


def summarize(runs: list[dict], key: str) -> dict:
    walls = [r[key]["wall_s"] for r in runs]
    peaks = [r[key]["peak_gb"] for r in runs]
    rss = [r[key]["peak_rss_sum_gb"] for r in runs]
    return {"wall_min": min(walls), "wall_median": statistics.median(walls), "peak_max": max(peaks),
            "rss_max": max(rss)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", nargs="?", help="single-view dataset in nnU-Net v2 format")
    ap.add_argument("--make-demo", metavar="DIR", help="write the 12-case demo dataset to DIR and use it")
    ap.add_argument("-np", type=int, default=2, help="processes for both tools (default 2)")
    ap.add_argument("--budget", default="gpu:8", help="our --budget; nnU-Net gets the same GB (default gpu:8)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool, alternating (default 1)")
    ap.add_argument("--nnunet-bin", help="bin/ folder of a virtualenv with nnunetv2 installed")
    ap.add_argument("--skip-nnunet", action="store_true", help="run ours only")
    ap.add_argument("--work", help="working folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--json", help="also write the raw measurements to this JSON file")
    args = ap.parse_args(argv)

    if args.make_demo:
        raw = Path(args.make_demo)
        if not (raw / "dataset.json").is_file():
            make_demo(raw)
    elif args.dataset:
        raw = Path(args.dataset)
    else:
        ap.error("give DATASET or --make-demo DIR")
    budget_gb = 8.0 if args.budget.startswith("gpu") and ":" not in args.budget else None
    if args.budget.startswith("gpu:"):
        budget_gb = float(args.budget.split(":", 1)[1].lower().rstrip("gb"))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_pp_"))
    work.mkdir(parents=True, exist_ok=True)
    n_cases = len(list((raw / "imagesTr").glob("*")))

    bin_dir = None if args.skip_nnunet else find_nnunet_bin(args.nnunet_bin)
    if args.skip_nnunet:
        print("--skip-nnunet: running ours only.\n")
    elif bin_dir is None:
        print("nnU-Net v2 not found (install the optional 'bench' extra, `pip install nnunetv2`, e.g. in a separate "
              "virtualenv, and pass --nnunet-bin VENV/bin): running ours only.\n")
    elif budget_gb is None:
        print("nnU-Net has no 'cpu' budget: running ours only.\n")
        bin_dir = None

    ours, theirs = [], []
    for r in range(args.repeat):
        if bin_dir is not None:
            theirs.append(run_nnunet(bin_dir, raw, work, args.np, budget_gb, str(r)))
        ours.append(run_ours(raw, work, args.np, args.budget, str(r)))

    load = os.getloadavg()
    print(f"date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"load average now {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; python {platform.python_version()}")
    print(f"dataset: {raw} ({n_cases} cases); -np {args.np}; budget {args.budget}; {args.repeat} run(s) per tool")
    if bin_dir is not None:
        print(f"nnU-Net v2 {nnunet_version(bin_dir)} from {bin_dir}")
    print()

    view = next(iter(ours[0]["plans"]["views"]))
    rows_ours = plan_rows_ours(ours[0]["plans"], view)
    rows_theirs = plan_rows_nnunet(theirs[0]["plans"]) if theirs else {}
    print(f"{'':36} {'nnU-Net v2 3d_fullres':36} {'orthodiff_auto (' + view + ')'}")
    for k, v in rows_ours.items():
        print(f"{k:36} {format_value(rows_theirs.get(k, '-')):36} {format_value(v)}")
    for key, title in (("full", "plan_and_preprocess"), ("preprocess", "preprocess only")):
        so = summarize(ours, key)
        st = summarize(theirs, key) if theirs else None
        wall_t = f"{st['wall_min']:.1f} s (median {st['wall_median']:.1f})" if st else "-"
        peak_t = f"{st['peak_max']:.2f} GB (RSS sum {st['rss_max']:.2f})" if st else "-"
        print(f"{title + ' wall':36} {wall_t:36} {so['wall_min']:.1f} s (median {so['wall_median']:.1f})")
        print(f"{title + ' peak mem (PSS)':36} {peak_t:36} {so['peak_max']:.2f} GB (RSS sum {so['rss_max']:.2f})")
        if st:
            print(f"{'  nnU-Net / ours wall':36} {'':36} {st['wall_min'] / so['wall_min']:.1f}x (min over runs)")
    if args.json:
        Path(args.json).write_text(json.dumps({"ours": ours, "nnunet": theirs}, indent=1, default=str))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
