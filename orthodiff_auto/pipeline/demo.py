"""The demo job (``orthodiff demo``, ``python -m orthodiff_auto.demo``, ``make demo``): the whole pipeline on a
freshly generated synthetic knee dataset, sized to finish in 15 minutes on a 2-core CPU."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from orthodiff_auto.data.validation import validate_dataset
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.evaluation.evaluate_folder import evaluate_predictions, report_table
from orthodiff_auto.inference.folder import predict_folder
from orthodiff_auto.pipeline.auto import AutoOptions, check_folds, run_auto
from orthodiff_auto.synthetic.cases import check_size
from orthodiff_auto.synthetic.generator import generate_dataset

# 40 test cases: with 10, a finding had 2-5 positives and its AUROC's 95% CI spanned half the scale.
DEMO_DATASET = dict(n_cases=30, n_unlabeled=10, n_test=40, size="demo", seed=7)
# 500 segmentation steps per view (the demo preset has 800), the 250 pretraining steps (used with
# --all-classifiers) cut to 100 per view, to fit 15 minutes (README: the measured run). The cpu budget's 2d
# configuration (chosen at 300 steps: benchmarks/bench_configurations.py) needs no pretraining, and the minutes
# that saves buy steps: on the sagittal fold 0, 500 steps reached mean Dice 0.548 against 0.350 at 300, the
# fibula, patellar cartilage, PCL and lateral meniscus appearing (documentation/benchmarks.md). No
# augmentation and no deep supervision: in a few hundred steps augmentation only slows learning (2d, 300 steps,
# diagnostic preset, sagittal fold 0 of 120 cases: mean Dice 0.409 without, 0.238 at probability 0.2, paired
# difference +0.17 [+0.167, +0.174]; deep supervision +0.004: benchmarks.md, "Segmentation settings for a short
# budget").
DEMO_OVERRIDES = ("num_epochs=20", "augmentation_probability=0", "deep_supervision=false")
DEMO_PRETRAIN_OVERRIDES = ("num_epochs=4",)
# With --all-classifiers: about 25 training scans; the fine-tuned classifiers' validation AUROC peaked within
# the first 100-300 steps of the demo preset's 800 and the validation loss rose after, so 300 steps.
DEMO_CLASSIFICATION_OVERRIDES = ("num_epochs=12",)


def demo_dataset(size: str | None = None, cases: int | None = None) -> dict:
    """The generator's arguments for the demo's dataset: DEMO_DATASET with the size preset and the number of
    labelled training cases replaced where given (UserInputError for an unknown preset or fewer than 10 cases: five
    folds need two validation cases each)."""
    dataset = dict(DEMO_DATASET)
    if size is not None:
        dataset["size"] = check_size(size)
    if cases is not None:
        if cases < 10:
            raise UserInputError(f"--cases: at least 10 labelled training cases (five folds), got {cases}")
        dataset["n_cases"] = cases
    return dataset


def check_existing_dataset(raw: Path, dataset: dict) -> None:
    """UserInputError when RAW was generated with other settings than ``dataset`` (another --size or --cases):
    re-running reuses RAW, and a silent reuse would report on data the command line did not ask for."""
    record = raw / ".orthodiff_synthetic.json"
    if not record.is_file():
        return  # not written by the generator (a dataset put there by hand): used as it is
    params = json.loads(record.read_text()).get("params", {})
    differ = [f"{key} {params.get(key)!r} (asked {value!r})" for key, value in dataset.items()
              if key in params and params[key] != value]
    if differ:
        raise UserInputError(f"{raw}: generated with other settings: {', '.join(differ)}; use another --work or "
                             f"remove {raw}")


def run_demo(work: Path, config: str, folds: Sequence[int], num_processes: int,
             compare_scratch: bool = False, all_classifiers: bool = False, size: str | None = None,
             cases: int | None = None) -> int:
    """Generate (once) the synthetic knee dataset in WORK/raw, validate it, ``auto`` with the cpu budget,
    ``predict_folder`` on its test scans and ``evaluate``, printing each step and the table; 1 when a test case
    failed to predict. UserInputError for a fold outside 0-4, before anything is written.

    The findings come from the anatomy-feature classifier on each view combination (the cascade: segment, then
    read the segmented anatomy); ``all_classifiers`` also trains the fine-tuned, noised-input and frozen
    diffusion-feature classifiers for model selection to choose from (about 10 more minutes on 2 cores, and on
    fold 0's 6 validation cases the choice is mostly noise: benchmarks/bench_diagnosis.py compares them over
    five folds)."""
    folds = check_folds(folds)
    dataset = demo_dataset(size, cases)
    start = time.perf_counter()
    raw = work / "raw"
    if not (raw / "dataset.json").is_file():
        print(f"== generating the synthetic knee dataset in {raw}", flush=True)
        generate_dataset(raw, num_processes=num_processes, **dataset)
    check_existing_dataset(raw, dataset)
    report = validate_dataset(raw, num_workers=num_processes)
    if not report.ok:
        raise UserInputError(f"{raw}: generated dataset is invalid:\n{report.problems_text()}")
    print(report.summary_text(), flush=True)
    model_dir = run_auto(raw, work, AutoOptions(budget="cpu", config=config, folds=folds,
                                                compare_scratch=compare_scratch, num_processes=num_processes,
                                                overrides=DEMO_OVERRIDES, pretrain_overrides=DEMO_PRETRAIN_OVERRIDES,
                                                classification_overrides=DEMO_CLASSIFICATION_OVERRIDES,
                                                finetune_classifiers=all_classifiers,
                                                noised_classifiers=all_classifiers,
                                                frozen_features=all_classifiers))
    predictions = work / "predictions"
    print(f"== predict_folder {raw / 'imagesTs'} -> {predictions}", flush=True)
    folder_report = predict_folder(raw / "imagesTs", predictions, model_dir)
    print("== evaluate", flush=True)
    summary = evaluate_predictions(predictions, raw)
    print()
    print(report_table(summary))
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; outputs in {work}")
    return 1 if folder_report.failed else 0


__all__ = ["run_demo"]
