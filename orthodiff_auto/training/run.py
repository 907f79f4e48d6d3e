"""``train_fold``: one task, view and fold — set-up, the generic loop, final validation, summary.json."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.training.config import TrainingConfig
from orthodiff_auto.training.checkpoint import refuse_to_overwrite
from orthodiff_auto.training.distributed import DistributedContext, barrier, distributed_device, shutdown
from orthodiff_auto.training.splits import fold_cases, load_or_create_splits, subsample_labelled
from orthodiff_auto.utils.atomic import write_json_atomic
from orthodiff_auto.utils.json_safe import json_safe

TASKS = ("seg", "cls")
SPLITS_JSON = "splits.json"


@dataclass(frozen=True)
class FoldRequest:
    preprocessed_dir: Path
    task: str
    view: str
    fold: int | str
    config: TrainingConfig
    results_dir: Path | None = None
    pretrained: Path | None = None
    label_fraction: float = 1.0
    device: str | None = None
    resume: bool = False

    @property
    def variant(self) -> str:
        name = "pretrained" if self.pretrained else "scratch"
        if self.task == "cls" and self.config.classifier_features == "diffusion":
            name = "diffusion"  # frozen denoiser features: never shares a folder with fine-tuned runs
        if self.task == "cls" and self.view == "fused":
            name += f"_{self.config.fusion}"  # gate and concat runs of a fold must not share a folder
        if self.label_fraction < 1.0:
            name += f"_frac{self.label_fraction:g}"
        return name

    def output_dir(self) -> Path:
        root = self.results_dir or self.preprocessed_dir.parent / "results"
        return Path(root) / self.task / self.view / self.variant / f"fold_{self.fold}"


def parse_fold(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise UserInputError(f"fold must be 0-4 or 'all', got {text!r}") from None


def read_preprocessed_description(preprocessed_dir: Path) -> dict[str, Any]:
    path = preprocessed_dir / "dataset.json"
    if not path.is_file():
        raise UserInputError(f"{path}: missing — run `orthodiff plan_and_preprocess` first")
    return json.loads(path.read_text())


def training_cases_and_findings(preprocessed_dir: Path, plans: Plans) -> tuple[list[str], pd.DataFrame | None]:
    """Every training case of any view (splits are per case, shared by all views and tasks) and the findings."""
    from orthodiff_auto.preprocessing.storage import PreprocessedDataset

    cases: set[str] = set()
    for view in plans.views:
        if (preprocessed_dir / view).is_dir():
            cases.update(PreprocessedDataset(preprocessed_dir, view).case_ids(subset="train"))
    table = None
    findings_csv = preprocessed_dir / "findings.csv"
    if plans.findings and findings_csv.is_file():
        table = pd.read_csv(findings_csv, dtype={"case_id": str}).set_index("case_id")
    return sorted(cases), table


def prepare_split(request: FoldRequest, plans: Plans) -> tuple[list[str], list[str]]:
    all_cases, table = training_cases_and_findings(request.preprocessed_dir, plans)
    splits = load_or_create_splits(request.preprocessed_dir / SPLITS_JSON, all_cases, table, plans.findings)
    return fold_cases(splits, request.fold)


def check_request(request: FoldRequest) -> Plans:
    if request.task not in TASKS:
        raise UserInputError(f"unknown task {request.task!r}; choose one of {list(TASKS)}")
    if not request.preprocessed_dir.is_dir():
        raise UserInputError(f"{request.preprocessed_dir}: preprocessed folder does not exist")
    plans = Plans.load(request.preprocessed_dir / "plans.json")
    if request.task == "seg" or request.view != "fused":
        plans.view(request.view)  # clear error for an unknown view
    if request.fold != "all" and (not isinstance(request.fold, int) or not 0 <= request.fold < 5):
        raise UserInputError(f"fold {request.fold!r} out of range: choose 0-4 or 'all'")
    if not 0 < request.label_fraction <= 1:
        raise UserInputError(f"--label-fraction must be in (0, 1], got {request.label_fraction}")
    if request.pretrained is not None and not Path(request.pretrained).is_file():
        raise UserInputError(f"{request.pretrained}: pretrained checkpoint not found")
    return plans


def train_fold(request: FoldRequest, log=None) -> dict[str, Any]:
    """Train one fold and validate it; returns the summary (also written to summary.json)."""
    from orthodiff_auto.training.loop import log_line

    log = log or log_line
    plans = check_request(request)
    if request.task == "cls":
        from orthodiff_auto.classification.run import train_classification_fold

        return train_classification_fold(request, plans, log=log)
    device, ctx = distributed_device(request.device)
    try:
        return _train_segmentation(request, plans, device, ctx, log)
    finally:
        shutdown(ctx)


def _train_segmentation(request: FoldRequest, plans: Plans, device: torch.device, ctx: DistributedContext, log):
    from orthodiff_auto.preprocessing.storage import PreprocessedDataset
    from orthodiff_auto.training.loop import Trainer
    from orthodiff_auto.training.tasks.segmentation import SegmentationTask

    out = request.output_dir()
    train_ids, val_ids = prepare_split(request, plans)
    labelled = set(PreprocessedDataset(request.preprocessed_dir, request.view).case_ids(subset="train", labelled=True))
    train_ids = [c for c in train_ids if c in labelled]
    val_ids = [c for c in val_ids if c in labelled]
    if request.label_fraction < 1:
        train_ids = subsample_labelled(train_ids, request.label_fraction, request.config.seed)
    if not train_ids:
        raise UserInputError(f"fold {request.fold}: no labelled training scans of view {request.view!r}")
    pretrained = None
    if request.pretrained is not None:
        from orthodiff_auto.training.pretrained import read_encoder_checkpoint

        pretrained = read_encoder_checkpoint(request.pretrained)
    latest = out / "checkpoint_latest.pt"
    refuse_to_overwrite(out, request.resume)
    out.mkdir(parents=True, exist_ok=True)
    task = SegmentationTask(plans, request.view, request.config, request.preprocessed_dir, train_ids, val_ids,
                            fold=request.fold, pretrained=pretrained)
    trainer = Trainer(task, request.config, out, device, ctx, log=log)
    if request.resume and latest.is_file():
        trainer.resume(latest)
    trainer.log(f"seg {request.view} fold {request.fold} ({request.variant}): {len(train_ids)} training, "
                f"{len(val_ids)} validation scans; patch {list(task.patch_size)}, batch {task.batch_size}, "
                f"device {device}" + (f", {ctx.world_size} processes" if ctx.enabled else ""))
    trainer.fit()
    summary: dict[str, Any] = {}
    if ctx.is_main:
        summary = validate_segmentation_fold(task, trainer.model, device, out, request, trainer.history, log)
    barrier(ctx)
    return summary


def validate_segmentation_fold(task, model, device, out: Path, request: FoldRequest, history, log) -> dict[str, Any]:
    """Predict the fold's validation scans in their original geometry; Dice and HD95 per structure."""
    from orthodiff_auto.data.image_io import read_image, write_image
    from orthodiff_auto.training.segmentation_metrics import aggregate, evaluate_segmentation
    from orthodiff_auto.inference.segmentation import predict_probabilities
    from orthodiff_auto.preprocessing.case import revert_to_original
    from orthodiff_auto.preprocessing.storage import PreprocessedDataset

    plans, view_plan, cfg = task.plans, task.view_plan, task.config
    source = PreprocessedDataset(request.preprocessed_dir, request.view)
    references = raw_label_paths(request.preprocessed_dir, request.view)
    labels = {k: v for k, v in plans.labels.items() if v != 0}
    per_case: dict[str, Any] = {}
    pred_dir = out / "validation"
    start = time.perf_counter()
    for case_id in task.val_cases:
        data, seg, props = source.load_numpy(case_id)
        probs = predict_probabilities(model, data, task.patch_size, task.num_classes, device, overlap=cfg.val_overlap,
                                      mirror_axes=(0, 1, 2) if cfg.val_mirroring else None,
                                      batch_size=cfg.val_batch_size, mixed_precision=cfg.mixed_precision)
        original = revert_to_original(probs, props, view_plan, kind="probabilities")
        label_values = np.array(sorted(plans.labels.values()))
        prediction = label_values[np.argmax(original, axis=0)].astype(np.uint8 if label_values.max() < 256 else np.uint16)
        geometry = props.original_geometry
        write_image(pred_dir / f"{case_id}_{request.view}.nii.gz", prediction, geometry)
        ref_path = references.get(case_id)
        if ref_path is not None:
            reference, _ = read_image(ref_path, dtype=None)
            reference_source = "raw"
        else:  # raw dataset moved: compare with the preprocessed labels mapped back
            reference = revert_to_original(seg, props, view_plan, kind="segmentation")
            reference_source = "preprocessed"
        per_case[case_id] = {
            "reference": reference_source,
            "metrics": evaluate_segmentation(prediction, reference.astype(np.int64), labels, geometry.spacing,
                                             plans.ignore_label),
        }
    elapsed = time.perf_counter() - start
    agg = aggregate([c["metrics"] for c in per_case.values()]) if per_case else {}
    times = history.get("epoch_time_s", [])
    waits = history.get("data_wait_s", [])
    summary = {
        "task": "seg",
        "view": request.view,
        "fold": str(request.fold),
        "variant": request.variant,
        "pretrained_from": str(request.pretrained) if request.pretrained else None,
        "label_fraction": request.label_fraction,
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


def raw_label_paths(preprocessed_dir: Path, view: str) -> dict[str, Path]:
    """Label files of the raw dataset the folder was preprocessed from (empty when it is not reachable)."""
    from orthodiff_auto.data.dataset import scan_raw_dataset

    description = read_preprocessed_description(preprocessed_dir)
    raw = description.get("raw_dataset")
    if not raw or not Path(raw).is_dir():
        return {}
    try:
        ds = scan_raw_dataset(raw)
    except UserInputError:
        return {}
    return {s.case_id: s.label for s in ds.select("train", view) if s.label is not None}
