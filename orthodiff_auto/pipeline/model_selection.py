"""``find_best_configuration``: pool the folds' validation results, choose per task, fill the model folder.

Segmentation: per view, the variant (e.g. scratch or pretrained) with the highest mean validation Dice over
its folds. Classification: among every single-view and fused configuration (fine-tuned, or frozen diffusion
features: variant ``diffusion``), the one with the highest macro AUROC of the validation predictions pooled over the folds (every case is predicted once, by the fold that
did not train on it). Only configurations trained on all labels (no label-fraction runs) and on every
requested fold compete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from orthodiff_auto.classification.metrics_io import PREDICTIONS_CSV, read_validation_predictions
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.model_dir import ModelDescription, TaskChoice
from orthodiff_auto.training.classification_metrics import auroc_scores
from orthodiff_auto.utils.atomic import atomic_path

DEFAULT_FOLDS = (0, 1, 2, 3, 4)


def _complete_runs(task_dir: Path, folds: Sequence[int], required_file: str) -> dict[tuple[str, str], list[Path]]:
    """{(name, variant): [fold dirs]} for runs that finished every requested fold."""
    runs: dict[tuple[str, str], list[Path]] = {}
    if not task_dir.is_dir():
        return runs
    for name_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
        for variant_dir in sorted(p for p in name_dir.iterdir() if p.is_dir()):
            if "_frac" in variant_dir.name:
                continue
            fold_dirs = [variant_dir / f"fold_{f}" for f in folds]
            if all((d / required_file).is_file() and (d / "checkpoint_final.pt").is_file() for d in fold_dirs):
                runs[(name_dir.name, variant_dir.name)] = fold_dirs
    return runs


def segmentation_candidates(results: Path, folds: Sequence[int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (view, variant), fold_dirs in _complete_runs(results / "seg", folds, "summary.json").items():
        per_fold = []
        per_structure: dict[str, list[float]] = {}
        for d in fold_dirs:
            s = json.loads((d / "summary.json").read_text())
            mean = s.get("mean") or {}
            if "mean" in mean and mean["mean"]["dice"]["mean"] is not None:
                per_fold.append(float(mean["mean"]["dice"]["mean"]))
            for name, m in mean.items():
                if name != "mean" and m["dice"]["mean"] is not None:
                    per_structure.setdefault(name, []).append(float(m["dice"]["mean"]))
        score = float(np.mean(per_fold)) if per_fold else float("nan")
        out.setdefault(view, {})[variant] = {
            "mean_dice": score, "per_fold": per_fold,
            "per_structure": {k: float(np.mean(v)) for k, v in per_structure.items()},
            "fold_dirs": [str(d) for d in fold_dirs],
        }
    return out


def classification_candidates(results: Path, folds: Sequence[int], findings: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (name, variant), fold_dirs in _complete_runs(results / "cls", folds, PREDICTIONS_CSV).items():
        probs, labels = [], []
        for d in fold_dirs:
            _, p, y = read_validation_predictions(d / PREDICTIONS_CSV, findings)
            probs.append(p)
            labels.append(y)
        p, y = np.concatenate(probs), np.concatenate(labels)
        macro, per_finding = auroc_scores(y, p, findings)
        out.setdefault(name, {})[variant] = {
            "macro_auroc": macro,
            "per_finding_auroc": per_finding, "n_cases": int(len(y)), "fold_dirs": [str(d) for d in fold_dirs],
        }
    return out


def _best(variants: dict[str, dict[str, Any]], key: str) -> str | None:
    scored = [(v[key], name) for name, v in variants.items() if v[key] == v[key]]
    if not scored:
        return None
    # ties go to the simpler configuration (from scratch), then alphabetically for a stable choice
    return max(scored, key=lambda x: (x[0], "scratch" in x[1], [-ord(c) for c in x[1]]))[1]


def find_best_configuration(preprocessed_dir: Path | str, model_dir: Path | str, results: Path | str | None = None,
                            folds: Sequence[int] = DEFAULT_FOLDS, log=print) -> ModelDescription:
    preprocessed_dir, model_dir = Path(preprocessed_dir), Path(model_dir)
    results = Path(results) if results else preprocessed_dir.parent / "results"
    description_path = preprocessed_dir / "dataset.json"
    if not description_path.is_file():
        raise UserInputError(f"{description_path}: missing — not a preprocessed folder")
    dataset = json.loads(description_path.read_text())
    findings = list(dataset.get("findings") or [])
    seg = segmentation_candidates(results, folds)
    if not seg:
        raise UserInputError(f"{results}: no segmentation configuration has finished folds {list(folds)}")
    cls = classification_candidates(results, folds, findings) if findings else {}

    staging = model_dir.with_name(model_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(preprocessed_dir / "plans.json", staging / "plans.json")
    seg_choice: dict[str, TaskChoice] = {}
    for view, variants in sorted(seg.items()):
        best = _best(variants, "mean_dice")
        if best is None:
            continue
        seg_choice[view] = TaskChoice(view, best, tuple(_copy_folds(variants[best]["fold_dirs"], staging, f"seg/{view}")),
                                      {k: v for k, v in variants[best].items() if k != "fold_dirs"})
        log(f"segmentation {view}: {best} (mean Dice {variants[best]['mean_dice']:.3f}; "
            + ", ".join(f"{k} {v['mean_dice']:.3f}" for k, v in variants.items()) + ")")
    cls_choice = None
    flat = {f"{name}/{variant}": v for name, vs in cls.items() for variant, v in vs.items()}
    if flat:
        best = _best(flat, "macro_auroc")
        if best is not None:
            name, variant = best.split("/", 1)
            cls_choice = TaskChoice(name, variant, tuple(_copy_folds(flat[best]["fold_dirs"], staging, f"cls/{name}")),
                                    {k: v for k, v in flat[best].items() if k != "fold_dirs"})
            log(f"classification: {best} (pooled CV macro AUROC {flat[best]['macro_auroc']:.3f}; "
                + ", ".join(f"{k} {v['macro_auroc']:.3f}" for k, v in flat.items()) + ")")
    strip = lambda d: {k: {vk: vv for vk, vv in v.items() if vk != "fold_dirs"} for k, v in d.items()}  # noqa: E731
    description = ModelDescription(
        dataset=dataset, segmentation=seg_choice, classification=cls_choice,
        candidates={"folds": list(folds), "segmentation": {v: strip(d) for v, d in seg.items()},
                    "classification": {n: strip(d) for n, d in cls.items()}},
    )
    description.save(staging)
    # swap the finished folder in at once: a crash never leaves a half-filled model folder
    if model_dir.exists():
        old = model_dir.with_name(model_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        model_dir.rename(old)
        staging.rename(model_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(model_dir)
    return description


def _copy_folds(fold_dirs: Sequence[str], staging: Path, sub: str) -> list[str]:
    rel = []
    for d in fold_dirs:
        d = Path(d)
        target = staging / sub / f"{d.name}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copy2(d / "checkpoint_final.pt", tmp)
        rel.append(f"{sub}/{d.name}.pt")
    return rel
