"""Helpers shared by the training benchmarks (bench_label_efficiency.py, bench_transfer.py): running an
``orthodiff`` command in this process, training one fold unless its summary exists, and reading the metric of a
fold's summary.json."""

from __future__ import annotations

import json
from pathlib import Path


def run_orthodiff(cli_args: list[str], dry_run: bool = False) -> None:
    """``orthodiff CLI_ARGS`` through ``orthodiff_auto.cli.main`` in this process (printed first); a non-zero exit
    code stops the benchmark."""
    from orthodiff_auto.cli import main

    print("$ orthodiff " + " ".join(cli_args), flush=True)
    if dry_run:
        return
    rc = main(cli_args)
    if rc != 0:
        raise SystemExit(f"orthodiff {cli_args[0]} failed with exit code {rc}")


def fold_dir(results: Path, task: str, view: str, fraction: float, fold: str, pretrained: bool,
             subset_seed: int = 0) -> Path:
    """Where ``train_fold --results RESULTS`` writes one run (documentation/training.md: the variant folder;
    ``subset_seed``: ``--label-fraction-seed``, its own folder below 100%)."""
    name = ("pretrained" if pretrained else "scratch") + (f"_frac{fraction:g}" if fraction < 1 else "")
    if fraction < 1 and subset_seed:
        name += f"_seed{subset_seed}"
    return results / task / view / name / f"fold_{fold}"


def train_fold_once(pre: Path, results: Path, task: str, view: str, fold: str, fraction: float, config: str,
                    sets: list[str], device: list[str], encoder: Path | None, dry_run: bool = False,
                    subset_seed: int = 0) -> Path:
    """Train one fold unless its summary.json exists (``--continue`` when a latest checkpoint does, so an
    interrupted benchmark resumes); returns the run's folder."""
    out = fold_dir(results, task, view, fraction, fold, encoder is not None, subset_seed)
    if not (out / "summary.json").is_file():
        resume = ["--continue"] if (out / "checkpoint_latest.pt").is_file() else []
        seed = ["--label-fraction-seed", str(subset_seed)] if subset_seed else []
        run_orthodiff(["train_fold", str(pre), task, view, fold, "--config", config, *sets,
                       "--label-fraction", f"{fraction:g}", *seed, "--results", str(results), *device, *resume,
                       *(["--pretrained", str(encoder)] if encoder is not None else [])], dry_run)
    return out


def pretrain_once(pre: Path, view: str, results: Path, config: str, sets: list[str], device: str | None,
                  dry_run: bool = False) -> Path:
    """``orthodiff pretrain`` unless RESULTS/pretrain/VIEW/encoder_VIEW.pt exists (continued when a latest
    checkpoint does); returns the encoder's path."""
    encoder = results / "pretrain" / view / f"encoder_{view}.pt"
    if not encoder.is_file():
        resume = ["--continue"] if (encoder.parent / "checkpoint_latest.pt").is_file() else []
        run_orthodiff(["pretrain", str(pre), view, "--config", config, *sets, "--results", str(results),
                       *(["--device", device] if device in ("cpu", "cuda") else []), *resume], dry_run)
    return encoder


def mean_dice(summary: dict) -> float | None:
    try:
        return float(summary["mean"]["mean"]["dice"]["mean"])
    except (KeyError, TypeError, ValueError):
        return None


def macro_auroc(summary: dict) -> float | None:
    try:
        return float(summary["metrics"]["macro"]["auroc"])
    except (KeyError, TypeError, ValueError):
        return None


def read_summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())
