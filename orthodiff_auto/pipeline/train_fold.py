"""``train_fold``: one task, view and fold. The one place that maps a task name to the package that trains it.

Each task package has one entry point ``fn(request, plans, log)`` that sets up its run, trains with the generic
loop (``training.loop``), validates the fold and returns the summary it also writes to summary.json:

- ``seg``: ``segmentation.run.train_segmentation_fold`` (a view);
- ``cls``: ``classification.run.train_classification_fold`` (a view, or ``fused``: the fold's views fused by a
  gate, by concatenation, or by a stacked gate; fine-tuned or on frozen diffusion features).

Diffusion pretraining is not a fold task: it trains on every scan of a view (``diffusion.run.pretrain``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from orthodiff_auto.classification.run import train_classification_fold
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.segmentation.run import train_segmentation_fold
from orthodiff_auto.training.config import make_config
from orthodiff_auto.training.fold import FoldRequest, check_request, parse_fold
from orthodiff_auto.utils.log import log_line

#: task name -> its package's entry point ``fn(request, plans, log)`` -> summary
FOLD_TRAINERS: dict[str, Callable[..., dict[str, Any]]] = {
    "seg": train_segmentation_fold,
    "cls": train_classification_fold,
}


def train_fold(request: FoldRequest, log=None) -> dict[str, Any]:
    """Train one fold and validate it; returns the summary (also written to summary.json)."""
    trainer = FOLD_TRAINERS.get(request.task)
    if trainer is None:
        raise UserInputError(f"unknown task {request.task!r}; choose one of {list(FOLD_TRAINERS)}")
    plans = check_request(request)
    return trainer(request, plans, log=log or log_line)


def run_train_fold(preprocessed_dir: Path, task: str, view: str, fold: str, config: str = "full",
                   overrides: Sequence[str] = (), results: Path | None = None, pretrained: Path | None = None,
                   label_fraction: float = 1.0, label_fraction_seed: int = 0,
                   device: str | None = None, resume: bool = False,
                   configuration: str = "3d_fullres", save_probabilities: bool = False) -> dict[str, Any]:
    """``orthodiff train_fold``: the request from the command's options (``fold``: 0-4 or "all"; ``config``: a
    preset with ``key=value`` overrides), then ``train_fold``."""
    request = FoldRequest(
        preprocessed_dir=preprocessed_dir, task=task, view=view, fold=parse_fold(fold),
        config=make_config(config, list(overrides)), results_dir=results, pretrained=pretrained,
        label_fraction=label_fraction, label_fraction_seed=label_fraction_seed, device=device, resume=resume,
        configuration=configuration, save_probabilities=save_probabilities,
    )
    summary = train_fold(request)
    log_line(f"fold written to {request.output_dir()} (summary.json, checkpoint_final.pt, validation/); when the "
             f"folds you want are trained: orthodiff find_best_configuration {preprocessed_dir} --out MODEL_DIR "
             "--folds F [F ...]")
    return summary


__all__ = ["FOLD_TRAINERS", "run_train_fold", "train_fold"]
