"""The three planning stages as functions over a preprocessed folder (used by the commands).

Each stage reads the previous stage's artifact and writes its own, so a user can stop after any stage,
inspect or edit the JSON, and go on::

    run_fingerprint(raw, out)   -> out/dataset.json, out/findings.csv, out/fingerprint.json
    run_plan(out, budget)       -> out/plans.json (``like``: planned like pretrained encoders, plans.adaptation)
    run_preprocess(raw, out)    -> out/<view>/<case>.{b2nd,_seg.b2nd,json} (and refreshes dataset.json,
                                   findings.csv)

``out/dataset.json`` is the raw dataset's description (``DatasetDescription.to_dict()``) plus
``raw_dataset``, the raw folder's absolute path (later stages read raw labels from there when reachable);
``out/findings.csv`` is the training findings table as validated (case_id, findings in dataset.json's
order, then site/field_strength when present), written only when the dataset declares findings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping

from orthodiff_auto.data.dataset import RawDataset, load_raw_dataset
from orthodiff_auto.data.validation import validate_dataset
from orthodiff_auto.errors import DatasetError, UserInputError
from orthodiff_auto.fingerprint.extract import extract_fingerprint
from orthodiff_auto.fingerprint.schema import DatasetFingerprint
from orthodiff_auto.plans.adaptation import PretrainedPlan, check_adaptable, plan_experiment_like
from orthodiff_auto.plans.budget import parse_budget
from orthodiff_auto.plans.planner import plan_experiment
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.plans.subplans import Budget
from orthodiff_auto.plans.table import format_plans
from orthodiff_auto.preprocessing.runner import PreprocessSummary, preprocess_dataset
from orthodiff_auto.utils.atomic import write_json_atomic, write_text_atomic

DATASET_JSON = "dataset.json"
FINDINGS_CSV = "findings.csv"
FINGERPRINT_JSON = "fingerprint.json"
PLANS_JSON = "plans.json"


def validated_dataset(raw: Path | str, num_workers: int = 2) -> RawDataset:
    """Validate the raw dataset completely; DatasetError (exit 2) listing every problem when it is invalid."""
    report = validate_dataset(raw, num_workers=max(1, num_workers))
    if not report.ok or report.dataset is None:
        raise DatasetError(report.problems)
    return report.dataset


def _check_out_dir(out: Path, raw: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out}: exists and is not a folder")
    if out.resolve() == raw.resolve():
        raise UserInputError(f"{out}: the output folder must not be the raw dataset folder")


def write_dataset_files(dataset: RawDataset, out: Path | str) -> None:
    """``out/dataset.json`` (description + raw folder path) and ``out/findings.csv`` (when there are findings)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / DATASET_JSON, {**dataset.description.to_dict(), "raw_dataset": str(dataset.root.resolve())})
    if dataset.description.findings and dataset.findings is not None:
        write_text_atomic(out / FINDINGS_CSV, dataset.findings.to_csv(index_label="case_id"))
    else:
        (out / FINDINGS_CSV).unlink(missing_ok=True)


def run_fingerprint(dataset: RawDataset, out: Path | str, num_workers: int = 2,
                    progress: bool = True) -> DatasetFingerprint:
    out = Path(out)
    _check_out_dir(out, dataset.root)
    fp = extract_fingerprint(dataset, num_workers=num_workers, progress=progress)
    if not fp.views:
        raise UserInputError(f"{dataset.root}: no training or unlabeled scans to fingerprint")
    write_dataset_files(dataset, out)
    fp.save(out / FINGERPRINT_JSON)
    return fp


def run_plan(out: Path | str, budget: Budget,
             like: Mapping[str, PretrainedPlan] | None = None) -> tuple[Plans, bool]:
    """Plan from ``out/fingerprint.json`` (``like``: the views with a pretrained encoder there adopt its
    architecture, normalisation and spacing); returns (plans, whether an existing different plans.json was
    replaced)."""
    out = Path(out)
    fp = DatasetFingerprint.load(out / FINGERPRINT_JSON)
    plans = plan_experiment_like(fp, budget, like) if like else plan_experiment(fp, budget)
    target = out / PLANS_JSON
    replaced = False
    if target.is_file():
        try:
            replaced = json.loads(target.read_text()) != json.loads(json.dumps(plans.to_dict()))
        except (json.JSONDecodeError, UnicodeDecodeError):
            replaced = True
    plans.save(target)
    return plans, replaced


def check_plans_match(plans: Plans, dataset: RawDataset, plans_path: Path) -> None:
    desc = dataset.description
    if dict(plans.labels) != dict(desc.labels) or plans.ignore_label != desc.ignore_label:
        raise UserInputError(f"{plans_path}: planned for labels {plans.labels} (ignore {plans.ignore_label}), but "
                             f"{dataset.root} declares {desc.labels} (ignore {desc.ignore_label}); re-run "
                             "`orthodiff fingerprint` and `orthodiff plan`")


def run_preprocess(dataset: RawDataset, out: Path | str, num_workers: int = 2,
                   progress: bool = True) -> PreprocessSummary:
    out = Path(out)
    plans_path = out / PLANS_JSON
    plans = Plans.load(plans_path)
    check_plans_match(plans, dataset, plans_path)
    write_dataset_files(dataset, out)
    return preprocess_dataset(dataset, plans, out, num_workers=num_workers, progress=progress)


# ---------------------------------------------------------------- the commands' stages, with their output

def fingerprint_raw_dataset(dataset: Path | str, out: Path | str, num_processes: int = 2,
                            skip_validation: bool = False, progress: bool = True, log=print) -> DatasetFingerprint:
    """``orthodiff fingerprint``: validate the raw dataset (unless ``skip_validation``), fingerprint it into
    ``out`` and log one line per view."""
    ds = load_raw_dataset(dataset) if skip_validation else validated_dataset(dataset, num_processes)
    fp = run_fingerprint(ds, out, num_processes, progress=progress)
    for view, vf in fp.views.items():
        sp = "x".join(f"{v:.3g}" for v in vf.median_spacing)
        sh = "x".join(f"{v:g}" for v in vf.median_shape_after_crop)
        log(f"{view}: {vf.num_train} train ({vf.num_labelled} labelled), {vf.num_unlabeled} unlabeled; "
            f"median spacing {sp} mm, median shape after crop {sh}")
    log(f"wrote {out}/fingerprint.json")
    return fp


def plan_from_fingerprint(preprocessed: Path | str, budget: str | None = None, log=print) -> Plans:
    """``orthodiff plan``: plans.json from fingerprint.json under ``budget`` (``plans.budget.parse_budget``);
    logs the plans table."""
    plans, replaced = run_plan(preprocessed, parse_budget(budget))
    log(format_plans(plans))
    if replaced:
        log(f"note: replaced a different {preprocessed}/plans.json")
    log(f"wrote {preprocessed}/plans.json")
    return plans


def preprocess_raw_dataset(dataset: Path | str, out: Path | str, num_processes: int = 2,
                           skip_validation: bool = False, progress: bool = True, log=print) -> PreprocessSummary:
    """``orthodiff preprocess``: preprocess the raw dataset with ``out/plans.json``; logs the summary."""
    if not (Path(out) / PLANS_JSON).is_file():
        raise UserInputError(f"{Path(out) / PLANS_JSON}: plans file not found (run `orthodiff plan` first)")
    ds = load_raw_dataset(dataset) if skip_validation else validated_dataset(dataset, num_processes)
    summary = run_preprocess(ds, out, num_processes, progress=progress)
    log(summary.text())
    return summary


def dataset_views(dataset: RawDataset) -> list[str]:
    """The views of the training and unlabeled scans (those the fingerprint and the plans cover)."""
    return sorted({s.view for s in dataset.scans if s.subset != "test"})


def plan_and_preprocess(dataset: Path | str, out: Path | str, budget: str | None = None, num_processes: int = 2,
                        progress: bool = True, log=print,
                        like: Mapping[str, PretrainedPlan] | None = None) -> PreprocessSummary:
    """``orthodiff plan_and_preprocess``: validate, fingerprint, plan (``like``: like pretrained encoders) and
    preprocess; logs the plans table, the preprocessing summary and the time of each stage."""
    parsed = parse_budget(budget)  # bad --budget: exit 2 before anything is read or written
    t0 = time.perf_counter()
    ds = validated_dataset(dataset, num_processes)
    if like:  # encoders that cannot be adopted: exit 2 before anything is written
        check_adaptable(dataset_views(ds), ds.description.modality, like, str(ds.root))
    t1 = time.perf_counter()
    run_fingerprint(ds, out, num_processes, progress=progress)
    t2 = time.perf_counter()
    plans, replaced = run_plan(out, parsed, like)
    t3 = time.perf_counter()
    log(format_plans(plans))
    if replaced:
        log(f"note: replaced a different {out}/plans.json")
    summary = run_preprocess(ds, out, num_processes, progress=progress)
    t4 = time.perf_counter()
    log(summary.text())
    log(f"time: validate {t1 - t0:.1f} s, fingerprint {t2 - t1:.1f} s, plan {t3 - t2:.1f} s, "
        f"preprocess {t4 - t3:.1f} s")
    return summary
