"""Segmentation training of one view and fold (``train_fold ... seg VIEW FOLD``): set-up, the generic loop,
the fold's validation in the scans' original geometry (Dice and HD95 per structure) and summary.json."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from orthodiff_auto.data.dataset import scan_raw_dataset
from orthodiff_auto.data.image_io import read_image, write_image
from orthodiff_auto.data.label_values import to_label_values
from orthodiff_auto.data.preprocessed import read_preprocessed_description
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.case import revert_to_original
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.segmentation.cascade import (cascade_input, missing_cases, previous_stage_dir, read_next_stage,
                                                 stage_one_on_grid, write_next_stage)
from orthodiff_auto.segmentation.prediction import label_map_in_original_geometry, predict_logits
from orthodiff_auto.segmentation.probabilities import (VALIDATION_PROBABILITIES, probabilities_on_view_grid,
                                                       write_probabilities)
from orthodiff_auto.segmentation.task import SegmentationTask
from orthodiff_auto.training.checkpoint import refuse_to_overwrite
from orthodiff_auto.training.distributed import (DistributedContext, barrier, distributed_device, gather_objects,
                                                 shutdown, training_timeout)
from orthodiff_auto.training.fold import FoldRequest, label_fraction_subset, prepare_split
from orthodiff_auto.training.loop import Trainer
from orthodiff_auto.training.pretrained import read_encoder_checkpoint
from orthodiff_auto.training.segmentation_metrics import aggregate, evaluate_segmentation
from orthodiff_auto.utils.atomic import write_json_atomic
from orthodiff_auto.utils.json_safe import json_safe
from orthodiff_auto.utils.log import log_line


def train_segmentation_fold(request: FoldRequest, plans: Plans, log=log_line) -> dict[str, Any]:
    """Train one segmentation fold of a view and validate it; returns the summary (also in summary.json)."""
    device, ctx = distributed_device(request.device, timeout=training_timeout(request.config))
    try:
        return _train(request, plans, device, ctx, log)
    finally:
        shutdown(ctx)


def _train(request: FoldRequest, plans: Plans, device: torch.device, ctx: DistributedContext, log):
    out = request.output_dir()
    train_ids, val_ids = prepare_split(request, plans)
    config = plans.view(request.view).configuration(request.configuration)
    labelled = set(PreprocessedDataset(request.preprocessed_dir, config.data_identifier).case_ids(subset="train",
                                                                                                  labelled=True))
    train_ids = [c for c in train_ids if c in labelled]
    val_ids = [c for c in val_ids if c in labelled]
    train_ids = label_fraction_subset(request, plans, train_ids)
    if not train_ids:
        raise UserInputError(f"fold {request.fold}: no labelled training scans of view {request.view!r}")
    previous = None
    if config.previous_stage is not None:
        previous = previous_stage_dir(previous_stage_request(request, config.previous_stage).output_dir())
        missing = missing_cases(previous, train_ids + val_ids)
        if missing:
            raise UserInputError(
                f"{previous}: no {config.previous_stage} prediction of {len(missing)} of this fold's cases "
                f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}): the cascade trains on the first "
                f"stage's out-of-fold predictions; train every fold of it first (orthodiff train_fold "
                f"{request.preprocessed_dir} seg {request.view} F -c {config.previous_stage}, F = 0..4)")
    pretrained = None
    if request.pretrained is not None:
        pretrained = read_encoder_checkpoint(request.pretrained)
    latest = out / "checkpoint_latest.pt"
    refuse_to_overwrite(out, request.resume)
    out.mkdir(parents=True, exist_ok=True)
    task = SegmentationTask(plans, request.view, request.config, request.preprocessed_dir, train_ids, val_ids,
                            fold=request.fold, pretrained=pretrained, configuration=request.configuration,
                            previous_stage_dir=previous)
    trainer = Trainer(task, request.config, out, device, ctx, log=log)
    if request.resume and latest.is_file():
        trainer.resume(latest)
    trainer.log(f"seg {request.view} {request.configuration} fold {request.fold} ({request.variant}): "
                f"{len(train_ids)} training, "
                f"{len(val_ids)} validation scans; patch {list(task.patch_size)}, batch {task.batch_size}, "
                f"device {device}" + (f", {ctx.world_size} processes" if ctx.enabled else ""))
    trainer.fit()
    if trainer.stopped_early:  # stop_after_epoch: nothing to validate yet, --continue goes on
        return {}
    # every process predicts its share of the validation scans (rank 0 alone would keep the others waiting
    # at a barrier for the whole full-resolution validation)
    summary = validate_segmentation_fold(task, trainer.model, device, out, request, trainer.history, log, ctx)
    barrier(ctx)
    return summary


def validate_segmentation_fold(task, model, device, out: Path, request: FoldRequest, history, log,
                               ctx: DistributedContext = DistributedContext()) -> dict[str, Any]:
    """Predict the fold's validation scans in their original geometry; Dice and HD95 per structure. With
    ``request.save_probabilities`` each scan's class probabilities on the view's grid go to
    ``validation_probabilities/`` (``segmentation.probabilities``). Under torchrun each process takes every
    WORLD_SIZE-th scan and rank 0 writes the summary (the others return {})."""
    plans, view_plan, cfg = task.plans, task.view_plan, task.config
    source = PreprocessedDataset(request.preprocessed_dir, task.data_folder)
    # (view plan, preprocessed cases) of the configuration that reads this one as its first stage, if any
    next_stage = next_stage_of(plans, request.view, task.configuration, request.preprocessed_dir)
    next_dir = previous_stage_dir(out)
    references = raw_label_paths(request.preprocessed_dir, request.view)
    labels = {k: v for k, v in plans.labels.items() if v != 0}
    per_case: dict[str, Any] = {}
    pred_dir = out / "validation"
    # the view's own grid, which 3d_lowres's probabilities are brought to (the others predict on it)
    view_grid = plans.view(request.view)
    view_cases = (PreprocessedDataset(request.preprocessed_dir, request.view)
                  if request.save_probabilities and task.data_folder != view_grid.view else None)
    start = time.perf_counter()
    for case_id in task.val_cases[ctx.rank::ctx.world_size]:
        data, seg, props = source.load_numpy(case_id)
        if task.previous_stage is not None:
            data = cascade_input(data, read_next_stage(task.previous_stage_dir, case_id), task.num_classes)
        logits = predict_logits(model, data, task.patch_size, task.num_classes, device, overlap=cfg.val_overlap,
                                mirror_axes=(0, 1, 2) if cfg.val_mirroring else None,
                                batch_size=cfg.val_batch_size, mixed_precision=cfg.mixed_precision)
        prediction = label_map_in_original_geometry(logits, props, view_plan, plans.labels)  # predict_folder's export
        if next_stage is not None:  # this fold's share of the cascade's out-of-fold first-stage predictions
            next_plan, next_cases = next_stage
            shape = next_cases.properties(case_id).shape_after_resampling
            write_next_stage(next_dir, case_id, stage_one_on_grid(logits, shape, view_plan, next_plan))
        if request.save_probabilities:
            shape = (view_cases.properties(case_id).shape_after_resampling if view_cases is not None
                     else data.shape[1:])
            write_probabilities(out / VALIDATION_PROBABILITIES, case_id,
                                probabilities_on_view_grid(logits, shape, view_plan, view_grid))
        geometry = props.original_geometry
        write_image(pred_dir / f"{case_id}_{request.view}.nii.gz", prediction, geometry)
        ref_path = references.get(case_id)
        if ref_path is not None:
            reference, _ = read_image(ref_path, dtype=None)
            reference_source = "raw"
        else:  # raw dataset moved: compare with the preprocessed labels (class indices) mapped back
            reference = to_label_values(revert_to_original(seg, props, view_plan, kind="segmentation"),
                                        plans.label_values)
            reference_source = "preprocessed"
        per_case[case_id] = {
            "reference": reference_source,
            "metrics": evaluate_segmentation(prediction, reference.astype(np.int64), labels, geometry.spacing,
                                             plans.ignore_label),
        }
    elapsed = time.perf_counter() - start
    shares = gather_objects(per_case, ctx)
    if not ctx.is_main:
        return {}
    gathered = {case: entry for share in shares for case, entry in share.items()}
    per_case = {case: gathered[case] for case in task.val_cases if case in gathered}  # the split's order
    agg = aggregate([c["metrics"] for c in per_case.values()]) if per_case else {}
    times = history.get("epoch_time_s", [])
    waits = history.get("data_wait_s", [])
    summary = {
        "task": "seg",
        "view": request.view,
        "fold": str(request.fold),
        "variant": request.variant,
        "configuration": request.configuration,
        "previous_stage": ({"configuration": task.previous_stage,
                            "variant": previous_stage_request(request, task.previous_stage).variant}
                           if task.previous_stage is not None else None),
        "pretrained_from": str(request.pretrained) if request.pretrained else None,
        "validation_probabilities": VALIDATION_PROBABILITIES if request.save_probabilities else None,
        "label_fraction": request.label_fraction,
        "label_fraction_seed": request.label_fraction_seed,
        "num_training_scans": len(task.train_cases),
        "num_validation_scans": len(task.val_cases),
        "config": cfg.to_dict(),
        "timing": {
            "seconds_per_iteration_median": float(np.median(times) / cfg.iterations_per_epoch) if times else None,
            "data_wait_fraction": float(sum(waits) / sum(times)) if times else None,
            "validation_seconds": elapsed,
        },
        "final_train_loss": history["train_loss"][-1] if history.get("train_loss") else None,
        "mean": agg,
        "per_case": per_case,
    }
    write_json_atomic(out / "summary.json", json_safe(summary))
    if agg:
        dice = {k: v["dice"]["mean"] for k, v in agg.items() if k != "mean"}
        log("validation Dice: " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items())
            + f" | mean {agg['mean']['dice']['mean']:.3f}")
    return summary


def previous_stage_request(request: FoldRequest, previous: str) -> FoldRequest:
    """The request of a cascade's first stage: the same fold and label fraction, its configuration, from scratch
    (the one run of it the second stage reads; ``auto`` trains a first stage from scratch)."""
    return replace(request, configuration=previous, pretrained=None)


def next_stage_of(plans: Plans, view: str, configuration: str, preprocessed_dir: Path):
    """(view plan, preprocessed cases) of the configuration that reads ``configuration`` as its previous stage,
    or None when none does."""
    view_plan = plans.view(view)
    for name, config in view_plan.configurations.items():
        if config.previous_stage == configuration:
            return view_plan.for_configuration(name), PreprocessedDataset(preprocessed_dir, config.data_identifier)
    return None


def raw_label_paths(preprocessed_dir: Path, view: str) -> dict[str, Path]:
    """Label files of the raw dataset the folder was preprocessed from (empty when it is not reachable)."""
    description = read_preprocessed_description(preprocessed_dir)
    raw = description.get("raw_dataset")
    if not raw or not Path(raw).is_dir():
        return {}
    try:
        ds = scan_raw_dataset(raw)
    except UserInputError:
        return {}
    return {s.case_id: s.label for s in ds.select("train", view) if s.label is not None}


__all__ = ["next_stage_of", "previous_stage_request", "raw_label_paths", "train_segmentation_fold", "validate_segmentation_fold"]
