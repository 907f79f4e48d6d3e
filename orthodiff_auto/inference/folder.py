"""``predict_folder``: a folder of scans -> segmentations beside the same file names, and one findings.csv.

Inputs: ``<case>_<view>.<ext>`` files, plain image files (case = file stem, view from the header), or
DICOM series folders (case = folder name, view from the header); nnU-Net's channel suffix ``_0000`` is
accepted (``<case>_0000.nii.gz`` -> ``<case>.nii.gz``). Besides the outputs the folder gets
``prediction_provenance.json`` (what made them) and, on request, each scan's class probabilities
(``inference.probabilities``). A folder holds one model's predictions (``inference.output_folder``); nothing
to predict, a dataset root or another model's folder is refused before the folder is made. The cases run
through ``inference.case_pipeline`` (read -> predict -> write): cases whose outputs exist are skipped, an
unreadable file fails alone (the case goes on with its other scans), a failing case is reported and the others
go on, and every output is written atomically. Under torchrun each process joins the process group at its start
and takes every WORLD_SIZE-th case, so several GPUs or machines share an archive with no extra tooling
(documentation/inference.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from orthodiff_auto.data.clinical import read_clinical_table
from orthodiff_auto.data.dicom import find_studies, parse_series_choices
from orthodiff_auto.data.file_names import case_and_view, split_image_name, without_channel_suffix
from orthodiff_auto.data.image_io import read_geometry, read_image
from orthodiff_auto.data.views import VIEWS, infer_view
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.case_pipeline import (  # noqa: F401 (InputScan, FolderReport: this module's API)
    CasePipeline, FolderReport, InputScan, OutputOptions, findings_part,
)
from orthodiff_auto.inference.output_folder import claim_for_model, output_folder
from orthodiff_auto.inference.predictor import Predictor
from orthodiff_auto.inference.provenance import model_folder_digest, record_prediction_run
from orthodiff_auto.training.device import SpeedOptions
from orthodiff_auto.training.distributed import DistributedContext, barrier, distributed_device, shutdown
from orthodiff_auto.utils.atomic import atomic_path, write_json_atomic

FINDINGS_CSV = "findings.csv"
# How long a process that has finished its share waits at the final barrier for the slowest one (torchrun stops
# every process when one fails, so this bounds only a hung process).
PREDICTION_WAIT = timedelta(hours=24)


def discover_inputs(input_dir: Path) -> tuple[dict[str, list[InputScan]], dict[str, str]]:
    """Group the folder's scans by case; returns (cases, problems per file name)."""
    if not input_dir.is_dir():
        raise UserInputError(f"{input_dir}: input folder does not exist")
    cases: dict[str, list[InputScan]] = {}
    problems: dict[str, str] = {}
    for path in sorted(input_dir.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():  # a DICOM series
            case_id, output_name, named_view = path.name, f"{path.name}.nii.gz", None
        else:
            split = split_image_name(path.name)
            if split is None:
                continue
            stem, channel = without_channel_suffix(split[0])
            if channel not in (None, "0000"):
                problems[path.name] = (f"channel {channel}: the models read one channel per scan, so only "
                                       f"nnU-Net's _0000 files are predicted")
                continue
            case_id, named_view = case_and_view(stem)
            output_name = path.name if channel is None else stem + split[1]  # nnU-Net's: without the channel
        try:
            if path.is_dir():
                view = infer_view(read_image(path)[1])
            elif named_view is not None:
                view = named_view
            else:
                view = infer_view(read_geometry(path))
        except UserInputError as e:
            problems[path.name] = str(e)
            continue
        cases.setdefault(case_id, []).append(InputScan(case_id, view, path, output_name))
    for case_id, scans in cases.items():
        views = [s.view for s in scans]
        if len(set(views)) != len(views):
            problems[case_id] = f"case {case_id!r} has several scans of the same view: {[s.path.name for s in scans]}"
    return cases, problems


def discover_dicom_inputs(input_dir: Path, views, choices=None, log=print) -> dict[str, list[InputScan]]:
    """One case per DICOM study under ``input_dir`` (``data.dicom``), one scan per view of ``views``;
    UserInputError when a study has two series of one view and ``choices`` picks none of them."""
    cases = {}
    for study in find_studies(input_dir, views, choices):
        cases[study.case_id] = [InputScan(study.case_id, view, series.folder, f"{study.case_id}_{view}.nii.gz", series)
                                for view, series in study.series.items()]
        for series, why in study.ignored:
            log(f"{study.case_id}: not using {series.describe()}: {why}")
    return cases


def model_views(predictor: Predictor) -> list[str]:
    """The views a model folder reads: its segmenters' and its classifiers'."""
    read = set(predictor.segmenters) | {v for key in predictor.classifier_by_views for v in key}
    return [v for v in VIEWS if v in read]


def shard(items: list[str], ctx: DistributedContext = DistributedContext()) -> list[str]:
    """This process' share under torchrun (every WORLD_SIZE-th item from its RANK), all of them otherwise."""
    return items[ctx.rank::ctx.world_size] if ctx.enabled else items


def findings_run_id(predictor: Predictor, clinical: dict[str, dict[str, str]] | None = None) -> str:
    """What a case's findings part was computed with: the model description, the chosen folds, the
    classification checkpoints (name, size, modification time) and the clinical values read (when a classifier
    reads any). Parts live under ``.findings/<run id>/``, so a rerun with the same model resumes from them, and
    parts of another model, other folds or other clinical values are never merged."""
    root = predictor.model_dir
    choices = [*predictor.description.classifiers_by_views().values(), *predictor.description.readers.values()]
    checkpoints = sorted({c for choice in choices for c in choice.checkpoints})
    stamp = {
        "model": (root / "model.json").read_text(),
        "folds": predictor.folds,
        **({"clinical": clinical} if clinical else {}),
        "checkpoints": [[c, (root / c).stat().st_size, (root / c).stat().st_mtime_ns] for c in checkpoints
                        if (root / c).is_file()],
    }
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PredictionOptions:
    """How a folder is predicted (``OutputOptions``: what is written besides segmentations and findings)."""

    folds: tuple[int, ...] | None = None  # None: every fold of the model folder
    tta: bool = False  # mirroring test-time augmentation
    device: str | None = None  # None: cuda when available
    checkpoint: str = "final"  # each segmentation fold's "final" or "best" checkpoint
    step_size: float = 0.5  # of the sliding window, in patch lengths (0.5: windows overlap by half)
    overwrite: bool = False  # predict cases whose outputs exist; replace another model's outputs
    clinical: Path | None = None  # CSV of the cases' clinical columns, for a classifier with a tabular branch
    dicom: bool = False  # the input folder holds DICOM studies, one case each (data.dicom)
    series_uids: tuple[str, ...] = ()  # VIEW=SERIES_UID where a study has several series of one view
    speed: SpeedOptions = SpeedOptions()


def check_input_folder(input_dir: Path, output_dir: Path, options: PredictionOptions) -> None:
    """What can be refused before a model is loaded: a missing input folder, a dataset root, the output folder
    equal to the input, --series-uid without --dicom (UserInputError, exit 2)."""
    if options.series_uids and not options.dicom:
        raise UserInputError("--series-uid chooses among the series of DICOM studies: it needs --dicom")
    if not input_dir.is_dir():
        raise UserInputError(f"{input_dir}: input folder does not exist")
    if output_dir.resolve() == input_dir.resolve():
        raise UserInputError(f"{output_dir}: the output folder must differ from the input folder")
    held = [d for d in ("imagesTs", "imagesTr") if (input_dir / d).is_dir()]
    if (input_dir / "dataset.json").is_file() or held:
        raise UserInputError(f"{input_dir}: is a dataset root (it holds {'dataset.json' if not held else held[0]}), "
                             "not a folder of scans; predict one of its scan folders, e.g. "
                             f"{input_dir / (held[0] if held else 'imagesTs')}")


def check_something_to_predict(input_dir: Path, inputs: tuple[dict, dict], dicom: bool) -> None:
    cases, problems = inputs
    if not cases and not problems:
        kinds = ("DICOM studies (folders of .dcm files)" if dicom else
                 "scans (<case>_<view>.nii.gz, nnU-Net's <case>_0000.nii.gz, other image files or DICOM series "
                 "folders; with DICOM studies add --dicom)")
        raise UserInputError(f"{input_dir}: nothing to predict: the folder holds no {kinds}")


def predict_folder(input_dir: Path | str, output_dir: Path | str, model_dir: Path | str,
                   options: PredictionOptions = PredictionOptions(), outputs: OutputOptions = OutputOptions(),
                   log=print) -> FolderReport:
    """Predict every case of ``input_dir`` into ``output_dir`` with the model folder ``model_dir``. Refused
    (UserInputError, exit 2) before the output folder is made: a missing or empty input, a dataset root, an
    output folder holding another model's predictions (unless ``options.overwrite``: then that run's outputs
    are replaced)."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_input_folder(input_dir, output_dir, options)
    choices = parse_series_choices(options.series_uids)
    # Under torchrun every process joins the group first (its own GPU from LOCAL_RANK); the processes exchange
    # nothing but the barrier before the merge, so gloo (no GPU memory), waiting up to PREDICTION_WAIT.
    torch_device, ctx = distributed_device(options.device, backend="gloo", timeout=PREDICTION_WAIT)
    try:
        predictor = Predictor(model_dir, folds=options.folds, device=str(torch_device), tta=options.tta,
                              overlap=1.0 - options.step_size, checkpoint=options.checkpoint, speed=options.speed)
        rows = read_clinical_table(Path(options.clinical), predictor.clinical_declaration()) if (
            options.clinical) else {}
        if options.dicom:
            inputs = discover_dicom_inputs(input_dir, model_views(predictor), choices, log), {}
        else:
            inputs = discover_inputs(input_dir)
        check_something_to_predict(input_dir, inputs, options.dicom)
        digest = model_folder_digest(predictor.model_dir)
        # the model and input are usable: from here the output folder is written, by one run (or torchrun job)
        with output_folder(output_dir, shared=ctx.enabled):
            if ctx.is_main:
                claim_for_model(output_dir, digest[0], options.overwrite, log)
            barrier(ctx)  # the other model's outputs are gone before any process writes
            return _predict_cases(inputs, output_dir, predictor, ctx, options.overwrite, outputs, log, rows, digest)
    finally:
        shutdown(ctx)


def _predict_cases(inputs: tuple[dict[str, list[InputScan]], dict[str, str]], output_dir: Path,
                   predictor: Predictor, ctx: DistributedContext, overwrite: bool, outputs: OutputOptions, log,
                   clinical: dict[str, dict[str, str]], digest) -> FolderReport:
    """The run once the folder is claimed: provenance and thresholds, this process' share of the cases through
    a ``CasePipeline``, then (main process) one findings.csv from every process' parts."""
    cases, problems = inputs
    if ctx.is_main:
        for name, problem in problems.items():
            log(f"FAILED {name}: {problem}")
        record_prediction_run(output_dir, predictor, digest)
        log(what_the_model_predicts(predictor))
    run_id = findings_run_id(predictor, clinical) if predictor.classifiers else None
    if run_id is not None and ctx.is_main:  # the thresholds behind the calls of a case with every view, for `evaluate`
        write_json_atomic(output_dir / "thresholds.json", predictor.thresholds_for(model_views(predictor)))
    case_ids = sorted(c for c in cases if c not in problems)
    pipeline = CasePipeline(output_dir, predictor, cases, outputs, clinical, run_id, log)
    pipeline.report.failed.update(problems)
    report = pipeline.run(shard(case_ids, ctx), overwrite)
    barrier(ctx)  # every process has written its cases (waits up to PREDICTION_WAIT for the slowest)
    if run_id is not None and ctx.is_main:
        merge_findings(output_dir, predictor.findings, run_id, case_ids)
    return report


def what_the_model_predicts(predictor: Predictor) -> str:
    """One line at the start of a run: the views the model segments and whether it writes findings."""
    segments = ", ".join(v for v in VIEWS if v in predictor.segmenters) or "no view"
    if not predictor.classifiers:
        return f"model: segments {segments}; no findings classifier (no findings.csv is written)"
    reads = sorted({v for key in predictor.classifier_by_views for v in key}, key=VIEWS.index)
    return f"model: segments {segments}; findings {', '.join(predictor.findings)} from {', '.join(reads)}"

def merge_findings(output_dir: Path, findings, run_id: str, case_ids) -> Path | None:
    """One findings.csv from the per-case parts of this run (``run_id``) of the cases ``case_ids`` (written by any
    number of processes); parts of other runs or of cases not in the input folder are left out."""
    parts = [p for p in (findings_part(output_dir, run_id, c) for c in sorted(case_ids)) if p.is_file()]
    if not parts:
        return None
    table = pd.concat([pd.read_csv(p, dtype={"case_id": str}) for p in parts], ignore_index=True)
    columns = ["case_id", "views", "classifier"] + [c for f in findings for c in (f, f"{f}_call", f"{f}_spread")]
    table = table.reindex(columns=columns).sort_values("case_id")
    target = output_dir / FINDINGS_CSV
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)
    return target
