"""Label efficiency of diffusion pretraining: segmentation Dice and findings macro AUROC fine-tuned from a
pretrained encoder vs from scratch, at several fractions of the labelled training scans, pooled out of fold.

    python benchmarks/bench_label_efficiency.py PREPROCESSED_DIR [--view sag] [--fractions 0.05,0.1,0.25,0.5,1]
        [--subset-seeds 0,1,2] [--folds 0,1,2,3,4] [--tasks seg,cls] [--config demo] [--set key=value ...]
        [--pretrained ENCODER | --pretrain-config demo --pretrain-set key=value ... --probe-epochs 10,20,40]
        [--bootstrap 1000] [--results DIR] [--device cpu|cuda] [--quick] [--dry-run]

1. the encoder: ``--pretrained`` if given, else ``RESULTS/pretrain/VIEW/encoder_VIEW.pt`` (``orthodiff pretrain
   --config PRETRAIN_CONFIG`` when it does not exist). With ``--probe-epochs`` the benchmark pretrains in
   stages (``--set stop_after_epoch=E``, then ``--continue``: the same run as one uninterrupted process), keeps
   a snapshot of the EMA denoiser after each stage (``RESULTS/pretrain_snapshots/VIEW/epoch_E``) and runs
   ``orthodiff probe`` on it: the frozen-feature probe's out-of-fold macro AUROC as pretraining proceeds;
2. for every task, fraction, subset seed (``train_fold --label-fraction-seed``; one subset at 100%), fold and
   arm: ``orthodiff train_fold ... --label-fraction F`` from scratch and with ``--pretrained`` (same config, so
   equal fine-tuning steps at every fraction, same seed, same stratified subset); a run whose ``summary.json``
   exists is reused, one with a latest checkpoint continued, so an interrupted benchmark goes on;
3. evaluation: the folds' validation cases are pooled (each case is predicted by the one model that did not
   train on it): seg, each case's Dice averaged over the structures, then the mean over cases; cls, the macro
   AUROC over the findings. The point estimate is the mean over the subset seeds; 95% CIs by percentile bootstrap
   over the pooled cases, the same resamples for every seed and both arms (so the difference is paired);
4. writes ``RESULTS/bench_label_efficiency_VIEW.{json,md,png}``: the table, and the learning curve (metric vs
   label fraction, both arms with CI bands; the probe's AUROC vs pretraining iterations when probed).

``--quick``: smoke-length runs, fractions 0.5,1, subset seeds 0,1, folds 0,1, probe after pretraining epochs
1 and 2: checks that every step runs; it measures nothing (24 train_fold runs; not yet timed end to end).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from bench_common import pretrain_once, read_summary, run_orthodiff, train_fold_once
from bench_transfer import _ci, auroc_bootstrap, dice_bootstrap, pooled_dice, pooled_predictions

ARMS = ("scratch", "pretrained")
METRICS = {"seg": ("mean Dice", pooled_dice, dice_bootstrap), "cls": ("macro AUROC", pooled_predictions,
                                                                        auroc_bootstrap)}
QUICK = dict(fractions="0.5,1", subset_seeds="0,1", folds="0,1", config="smoke", probe_epochs="1,2",
             pretrain_config="smoke", overrides=["num_epochs=1", "iterations_per_epoch=2", "num_workers=0"],
             pretrain_overrides=["num_epochs=2", "iterations_per_epoch=2", "num_samples=0", "num_workers=0"],
             bootstrap=200)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("preprocessed_dir", type=Path)
    p.add_argument("--view", default="sag")
    p.add_argument("--fractions", default="0.05,0.1,0.25,0.5,1", help="comma-separated label fractions in (0, 1]")
    p.add_argument("--subset-seeds", default="0,1,2", help="train_fold --label-fraction-seed values (below 100%%)")
    p.add_argument("--folds", default="0,1,2,3,4", help="comma-separated folds; their validation cases are pooled")
    p.add_argument("--tasks", default="seg,cls", help="comma-separated: seg (mean Dice), cls (macro AUROC)")
    p.add_argument("--config", default="demo", help="train_fold preset (smoke, demo, full)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="train_fold config override (repeatable)")
    p.add_argument("--pretrain-config", default="demo", help="pretrain preset used when no encoder exists yet")
    p.add_argument("--pretrain-set", dest="pretrain_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="pretrain setting (repeatable)")
    p.add_argument("--pretrained", type=Path, default=None, help="encoder checkpoint to use (skips pretraining)")
    p.add_argument("--probe-epochs", default="", help="pretraining epochs after which to probe the frozen features")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the pooled cases")
    p.add_argument("--results", type=Path, default=None, help="results root (default PREPROCESSED_DIR/../results)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--quick", action="store_true", help="smoke-length settings (see above); measures nothing")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.pretrained is not None and args.probe_epochs:
        p.error("--probe-epochs needs the benchmark's own pretraining run (leave out --pretrained)")
    return args


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    args = parse_args(argv)
    pre = args.preprocessed_dir
    results = args.results or pre.resolve().parent / "results"
    fractions = sorted(float(f) for f in args.fractions.split(","))
    folds = [f.strip() for f in args.folds.split(",")]
    tasks = [t.strip() for t in args.tasks.split(",")]
    if [t for t in tasks if t not in METRICS]:
        raise SystemExit(f"--tasks: choose from {sorted(METRICS)}, got {tasks}")
    sets = [x for s in args.overrides for x in ("--set", s)]
    device = ["--device", args.device] if args.device else []

    pretrain_sets = [x for s in args.pretrain_overrides for x in ("--set", s)]
    probes = [probe_after_epoch(args, pre, results, e, pretrain_sets) for e in _ints(args.probe_epochs)]
    encoder = args.pretrained or pretrain_once(pre, args.view, results, args.pretrain_config, pretrain_sets,
                                               args.device, args.dry_run)
    runs: dict = {}
    for task in tasks:
        for fraction in fractions:
            for seed in (_ints(args.subset_seeds) if fraction < 1 else [0]):
                for arm in ARMS:
                    runs[task, fraction, seed, arm] = [
                        train_fold_once(pre, results, task, args.view, fold, fraction, args.config, sets, device,
                                        encoder if arm == "pretrained" else None, args.dry_run, subset_seed=seed)
                        for fold in folds]
    if args.dry_run:
        return 0
    evaluation = {task: {f"{f:g}": evaluate_fraction({(s, a): r for (t, fr, s, a), r in runs.items()
                                                       if (t, fr) == (task, f)}, task, args.bootstrap)
                         for f in fractions} for task in tasks}
    report = {"view": args.view, "encoder": str(encoder), "config": args.config, "overrides": args.overrides,
              "pretrain_config": args.pretrain_config, "pretrain_overrides": args.pretrain_overrides,
              "folds": folds, "subset_seeds": _ints(args.subset_seeds), "bootstrap": args.bootstrap,
              "fine_tuning_iterations": _iterations(runs), "pretraining_iterations": _encoder_iterations(encoder),
              "evaluation": evaluation, "probe": probes}
    text = write_report(report, results / f"bench_label_efficiency_{args.view}")
    print(text)
    return 0


# ---------------------------------------------------------------- pretraining in stages, probed after each

def probe_after_epoch(args, pre: Path, results: Path, epoch: int, pretrain_sets: list[str]) -> dict | None:
    """Pretrain up to ``epoch`` (``stop_after_epoch``, continuing the run), snapshot its EMA denoiser and probe
    the snapshot; returns the probe's choice and the pretraining length (read back when probed before)."""
    import json

    snapshot = results / "pretrain_snapshots" / args.view / f"epoch_{epoch}"
    probe_json = snapshot / "pretrain" / args.view / "probe.json"
    if probe_json.is_file():
        return _probe_row(json.loads(probe_json.read_text()), epoch)
    run = results / "pretrain" / args.view
    latest = run / "checkpoint_latest.pt"
    if latest.is_file() and not args.dry_run:
        from orthodiff_auto.training.checkpoint import load_checkpoint

        if int(load_checkpoint(latest)["epoch"]) > epoch:
            print(f"probe after epoch {epoch}: the pretraining run is already past it; skipped", flush=True)
            return None
    resume = ["--continue"] if latest.is_file() else []
    run_orthodiff(["pretrain", str(pre), args.view, "--config", args.pretrain_config, *pretrain_sets,
                   "--set", f"stop_after_epoch={epoch}", "--results", str(results),
                   *(["--device", args.device] if args.device else []), *resume], args.dry_run)
    if args.dry_run:
        return None
    snapshot_denoiser(run, snapshot / "pretrain" / args.view, pre, args.view)
    run_orthodiff(["probe", str(pre), args.view, "--results", str(snapshot),
                   *(["--device", args.device] if args.device else [])])
    return _probe_row(json.loads(probe_json.read_text()), epoch)


def snapshot_denoiser(run: Path, dest: Path, pre: Path, view: str) -> None:
    """The run's newest checkpoint as ``dest/checkpoint_final.pt`` with its EMA encoder exported beside it:
    the layout ``orthodiff probe --results`` reads."""
    from orthodiff_auto.diffusion.export import export_encoder
    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.training.checkpoint import load_checkpoint

    from orthodiff_auto.utils.atomic import atomic_path

    source = run / "checkpoint_final.pt" if (run / "checkpoint_final.pt").is_file() else run / "checkpoint_latest.pt"
    with atomic_path(dest / "checkpoint_final.pt") as tmp:
        shutil.copyfile(source, tmp)
    extras = load_checkpoint(dest / "checkpoint_final.pt")["extras"]
    plans = Plans.load(pre / "plans.json")
    export_encoder(dest / f"encoder_{view}.pt", extras["ema"]["model"], plans.view(view), extras["ema"]["updates"],
                   diffusion={**extras["diffusion_plan"], "prediction": extras["prediction"]},
                   patch_size=extras["patch_size"], plans=plans)


def _probe_row(probe: dict, epoch: int) -> dict:
    choice = probe["choice"]
    return {"epoch": epoch, "iterations": probe["pretrain_iterations"], "macro_auroc": choice["macro_auroc"],
            "timestep": choice["timestep"], "block": choice["block"], "num_cases": probe["num_cases"]}


# ---------------------------------------------------------------- evaluation (pure: run folders in, numbers out)

def evaluate_fraction(runs: dict, task: str, n_resamples: int, seed: int = 0) -> dict:
    """``runs``: {(subset seed, arm): [fold run folders]} of one task and fraction. Per arm the mean over the
    subset seeds of the pooled metric, its CI, and (pretrained) the paired difference to scratch with its CI."""
    _, pool, bootstrap = METRICS[task]
    pooled = {key: pool(folders) for key, folders in runs.items()}
    cases = {tuple(c) for c, _ in pooled.values()}
    if len(cases) != 1:
        raise SystemExit(f"{task}: the runs were validated on different cases ({len(cases)} different sets)")
    per_arm = {}
    for arm in ARMS:
        estimates = [bootstrap(values, n_resamples, seed) for (s, a), (_, values) in sorted(pooled.items()) if a == arm]
        if not estimates:
            raise SystemExit(f"{task}: no {arm} runs")
        per_arm[arm] = (float(np.mean([p for p, _ in estimates])), np.mean([b for _, b in estimates], axis=0),
                        len(estimates))
    out = {}
    for arm, (point, samples, n_seeds) in per_arm.items():
        out[arm] = {"value": point, "ci": _ci(samples), "n_cases": len(next(iter(cases))), "subset_seeds": n_seeds}
    point, samples, _ = per_arm["pretrained"]
    out["pretrained"]["minus_scratch"] = point - per_arm["scratch"][0]
    out["pretrained"]["minus_scratch_ci"] = _ci(samples - per_arm["scratch"][1])
    out["training_scans_per_fold"] = [_training_scans(f) for f in runs[min(k for k in runs if k[1] == "scratch")]]
    return out


def _training_scans(run: Path):
    summary = read_summary(run)
    return summary.get("num_training_scans", summary.get("num_training_cases"))


def _iterations(runs: dict) -> int | None:
    for folders in runs.values():
        config = read_summary(folders[0]).get("config") or {}
        if "num_epochs" in config:
            return int(config["num_epochs"]) * int(config["iterations_per_epoch"])
    return None


def _encoder_iterations(encoder: Path) -> int | None:
    import torch

    return int(torch.load(encoder, weights_only=True).get("iterations", 0)) if Path(encoder).is_file() else None


# ---------------------------------------------------------------- report

def _fmt(entry: dict, key: str = "value", ci: str = "ci", sign: str = "") -> str:
    return f"{entry[key]:{sign}.3f} [{entry[ci][0]:{sign}.3f}, {entry[ci][1]:{sign}.3f}]"


def markdown_report(report: dict) -> str:
    lines = [f"Label efficiency, view {report['view']}: folds {','.join(report['folds'])} pooled out of fold, "
             f"subset seeds {report['subset_seeds']}, train_fold --config {report['config']} "
             f"{' '.join(report['overrides'])} ({report['fine_tuning_iterations']} fine-tuning iterations at every "
             f"fraction); encoder {report['encoder']} ({report['pretraining_iterations']} pretraining iterations); "
             f"95% CIs: {report['bootstrap']} bootstrap resamples of the pooled cases, differences paired.", ""]
    for task, by_fraction in report["evaluation"].items():
        label = METRICS[task][0]
        lines += [f"| {task}: labels | training scans per fold | {label} scratch | {label} pretrained | "
                  "pretrained minus scratch |", "|---|---|---|---|---|"]
        for fraction, e in by_fraction.items():
            lines.append(f"| {float(fraction):.0%} | {e['training_scans_per_fold']} | {_fmt(e['scratch'])} | "
                         f"{_fmt(e['pretrained'])} | {_fmt(e['pretrained'], 'minus_scratch', 'minus_scratch_ci', '+')} |")
        lines.append("")
    probes = [p for p in report.get("probe") or [] if p]
    if probes:
        lines += ["| pretraining epoch | iterations | frozen-feature probe macro AUROC (out of fold) | t, block |",
                  "|---|---|---|---|"]
        lines += [f"| {p['epoch']} | {p['iterations']} | {p['macro_auroc']:.3f} | {p['timestep']}, {p['block']} |"
                  for p in probes]
    return "\n".join(lines) + "\n"


def learning_curve_figure(report: dict, path: Path) -> None:
    """Metric vs label fraction per task, both arms with their 95% CI bands; the probe's AUROC vs pretraining
    iterations in a last panel when there is one. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orthodiff_auto.utils.atomic import atomic_path

    tasks = list(report["evaluation"])
    probes = [p for p in report.get("probe") or [] if p]
    fig, axes = plt.subplots(1, len(tasks) + bool(probes), figsize=(4.5 * (len(tasks) + bool(probes)), 3.6),
                             squeeze=False)
    for ax, task in zip(axes[0], tasks):
        by_fraction = report["evaluation"][task]
        x = [float(f) for f in by_fraction]
        for arm, color in (("scratch", "tab:blue"), ("pretrained", "tab:orange")):
            y = [e[arm]["value"] for e in by_fraction.values()]
            lo, hi = zip(*(e[arm]["ci"] for e in by_fraction.values()))
            ax.plot(x, y, marker="o", color=color, label=arm)
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{f:.0%}" for f in x])
        ax.set_xlabel("labelled training scans")
        ax.set_ylabel(f"{METRICS[task][0]} (pooled out of fold)")
        ax.set_title(f"{task}, view {report['view']}", fontsize=9)
        ax.legend(fontsize=8)
    if probes:
        ax = axes[0][-1]
        ax.plot([p["iterations"] for p in probes], [p["macro_auroc"] for p in probes], marker="s", color="tab:green")
        ax.set_xlabel("pretraining iterations")
        ax.set_ylabel("frozen-feature probe macro AUROC")
        ax.set_title("probe as pretraining proceeds", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_report(report: dict, base: Path) -> str:
    from orthodiff_auto.utils.atomic import write_json_atomic, write_text_atomic

    text = markdown_report(report)
    write_json_atomic(base.with_suffix(".json"), report)
    write_text_atomic(base.with_suffix(".md"), text)
    learning_curve_figure(report, base.with_suffix(".png"))
    return text


if __name__ == "__main__":
    sys.exit(main())
