"""``predict_folder``: a folder of scans -> segmentations beside the same file names, and one findings.csv.

Inputs: ``<case>_<view>.<ext>`` files, plain image files (case = file stem, view from the header), or
DICOM series folders (case = folder name, view from the header); nnU-Net's channel suffix ``_0000`` is
accepted (``<case>_0000.nii.gz`` -> ``<case>.nii.gz``). Besides the outputs the folder gets
``prediction_provenance.json`` (what made them) and, on request, each scan's class probabilities
(``inference.probabilities``). Cases whose outputs exist are skipped; an
unreadable file fails alone (the case goes on with its other scans), a failing case is reported and the others
go on, and every output is written atomically. Under torchrun each process joins the process group at its start
and takes every WORLD_SIZE-th case, so several GPUs or machines share an archive with no extra tooling
(documentation/inference.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import pandas as pd
from tqdm import tqdm

from orthodiff_auto.data.clinical import read_clinical_table
from orthodiff_auto.data.dicom import DicomSeries, find_studies, parse_series_choices, read_series
from orthodiff_auto.data.file_names import case_and_view, split_image_name, without_channel_suffix
from orthodiff_auto.data.image_io import read_geometry, read_image, write_image
from orthodiff_auto.data.views import VIEWS, infer_view
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.predictor import CasePrediction, Predictor
from orthodiff_auto.inference.probabilities import probability_paths, write_probabilities
from orthodiff_auto.inference.provenance import record_prediction_run
from orthodiff_auto.inference.qc import QC_FOLDER, write_qc_png
from orthodiff_auto.training.device import SpeedOptions
from orthodiff_auto.training.distributed import DistributedContext, barrier, distributed_device, shutdown
from orthodiff_auto.training.monitor import progress_bar_wanted
from orthodiff_auto.utils.atomic import atomic_path, write_json_atomic
from orthodiff_auto.utils.lock import folder_lock

FINDINGS_CSV = "findings.csv"
# How long a process that has finished its share waits at the final barrier for the slowest one (torchrun stops
# every process when one fails, so this bounds only a hung process).
PREDICTION_WAIT = timedelta(hours=24)
# What fails one case and lets the others go on.
CASE_ERRORS = (UserInputError, ValueError, RuntimeError, OSError)


@dataclass
class InputScan:
    case_id: str
    view: str
    path: Path
    output_name: str  # file name of the segmentation in the output folder
    series: DicomSeries | None = None  # a series of a DICOM study (--dicom): read from its files, not ``path``

    @property
    def source_name(self) -> str:
        """How the log and the report name this input."""
        return self.path.name if self.series is None else f"{self.case_id}_{self.view} ({self.series.describe()})"

    def read(self) -> tuple:
        return read_image(self.path) if self.series is None else read_series(self.series)


@dataclass
class FolderReport:
    predicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


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
    checkpoints = sorted({c for choice in predictor.description.classifiers_by_views().values()
                          for c in choice.checkpoints})
    stamp = {
        "model": (root / "model.json").read_text(),
        "folds": predictor.folds,
        **({"clinical": clinical} if clinical else {}),
        "checkpoints": [[c, (root / c).stat().st_size, (root / c).stat().st_mtime_ns] for c in checkpoints
                        if (root / c).is_file()],
    }
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]


def _findings_part(output_dir: Path, run_id: str, case_id: str) -> Path:
    return output_dir / ".findings" / run_id / f"{case_id}.csv"


@dataclass(frozen=True)
class OutputOptions:
    """What a run writes besides the segmentations and findings."""

    qc: bool = False  # qc/<case>.png per case (inference.qc)
    probabilities: bool = False  # <scan>.npz + <scan>.json per segmented scan (inference.probabilities)
    progress_bar: bool = True  # a bar over the cases, when stderr is a terminal


def predict_folder(input_dir: Path | str, output_dir: Path | str, model_dir: Path | str, folds=None,
                   tta: bool = False, device: str | None = None, overwrite: bool = False, qc: bool = False,
                   log=print, clinical: Path | str | None = None, checkpoint: str = "final", step_size: float = 0.5,
                   save_probabilities: bool = False, progress_bar: bool = True, dicom: bool = False,
                   series_uids: Sequence[str] = (), speed: SpeedOptions = SpeedOptions()) -> FolderReport:
    """Predict every case of ``input_dir`` into ``output_dir``. ``checkpoint``: each segmentation fold's
    "final" or "best" checkpoint; ``step_size``: of the sliding window, in patch lengths (0.5: windows overlap
    by half); ``qc``: also ``qc/<case>.png`` per case (``inference.qc``); ``save_probabilities``: also each
    scan's class probabilities; ``progress_bar``: a bar over the cases on a terminal; ``clinical``: a CSV of the
    cases' clinical columns (``case_id`` plus any declared columns, e.g. findingsTs.csv), read by a classifier
    with a tabular branch; cases or values it lacks are missing; ``dicom``: ``input_dir`` holds DICOM studies,
    one case each (``series_uids``: ``VIEW=SERIES_UID`` choices where a study has several series of one view,
    ``data.dicom``)."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if series_uids and not dicom:
        raise UserInputError("--series-uid chooses among the series of DICOM studies: it needs --dicom")
    choices = parse_series_choices(series_uids)
    if output_dir.resolve() == input_dir.resolve():
        raise UserInputError(f"{output_dir}: the output folder must differ from the input folder")
    # Under torchrun every process joins the group first (its own GPU from LOCAL_RANK); the processes exchange
    # nothing but the barrier before the merge, so gloo (no GPU memory), waiting up to PREDICTION_WAIT.
    torch_device, ctx = distributed_device(device, backend="gloo", timeout=PREDICTION_WAIT)
    try:
        predictor = Predictor(model_dir, folds=folds, device=str(torch_device), tta=tta, overlap=1.0 - step_size,
                              checkpoint=checkpoint, speed=speed)
        rows = read_clinical_table(Path(clinical), predictor.clinical_declaration()) if clinical else {}
        options = OutputOptions(qc=qc, probabilities=save_probabilities, progress_bar=progress_bar)
        # the model is usable: from here the output folder is written, by one run at a time (or one torchrun job)
        with folder_lock(output_dir, shared=ctx.enabled):
            if dicom:
                inputs = discover_dicom_inputs(input_dir, model_views(predictor), choices, log), {}
            else:
                inputs = discover_inputs(input_dir)
            return _predict_folder(inputs, output_dir, predictor, ctx, overwrite, options, log, rows)
    finally:
        shutdown(ctx)


def _predict_folder(inputs: tuple[dict[str, list[InputScan]], dict[str, str]], output_dir: Path,
                    predictor: Predictor, ctx: DistributedContext, overwrite: bool, options: OutputOptions, log,
                    clinical: dict[str, dict[str, str]] | None = None) -> FolderReport:
    cases, problems = inputs
    report = FolderReport()
    for name, problem in problems.items():
        report.failed[name] = problem
        if ctx.is_main:
            log(f"FAILED {name}: {problem}")
    output_dir.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        record_prediction_run(output_dir, predictor)
    wants_findings = bool(predictor.classifiers)
    run_id = findings_run_id(predictor, clinical) if wants_findings else ""
    if wants_findings and ctx.is_main:  # the thresholds behind the all-view classifier's calls, for `evaluate`
        default = predictor.classifier or next(iter(predictor.classifiers.values()))
        write_json_atomic(output_dir / "thresholds.json", default.thresholds_table())
    case_ids = sorted(c for c in cases if c not in problems)
    mine = shard(case_ids, ctx)
    bar = tqdm(total=len(mine), desc="cases", unit="case", file=sys.stderr, dynamic_ncols=True,
               disable=not progress_bar_wanted(options.progress_bar))
    todo = []
    for case_id in mine:
        segmented = [s for s in cases[case_id] if s.view in predictor.segmenters]
        outputs = [output_dir / s.output_name for s in segmented]
        if options.probabilities:
            outputs += [p for s in segmented for p in probability_paths(output_dir / s.output_name)]
        if options.qc:
            outputs.append(output_dir / QC_FOLDER / f"{case_id}.png")
        done = all(p.is_file() for p in outputs) and (
            not wants_findings or _findings_part(output_dir, run_id, case_id).is_file())
        if done and not overwrite:
            report.skipped.append(case_id)
            bar.update()
        else:
            todo.append(case_id)
    number = {case_id: i for i, case_id in enumerate(mine, start=1)}

    def read_and_prepare(case_id: str):
        """Runs in the reader thread, one case ahead of the network: (readable views, unreadable files, the
        preprocessed views or the exception preprocessing raised)."""
        loaded, unreadable = _read_views(cases[case_id])
        try:
            return loaded, unreadable, predictor.prepare_case(loaded)
        except Exception as e:  # reported for this case by the main thread
            return loaded, unreadable, e

    def write(case_id: str, prediction: CasePrediction, loaded: dict[str, tuple]) -> None:
        """Runs in the writer thread while the network predicts the next case; the case counts as predicted (and
        is logged) once its outputs are written."""
        try:
            _write_outputs(output_dir, predictor, cases[case_id], prediction, loaded, options,
                           _findings_part(output_dir, run_id, case_id) if wants_findings else None)
        except CASE_ERRORS as e:
            fail(case_id, e)
            return
        report.predicted.append(case_id)
        note = f"; {prediction.findings_note}" if prediction.findings_note else ""
        log(f"predicted {case_id} ({', '.join(loaded)}){note} [{number[case_id]}/{len(mine)}]")

    def fail(case_id: str, e: Exception) -> None:
        report.failed[case_id] = f"{type(e).__name__}: {e}"
        log(f"FAILED {case_id}: {e}")
        if os.environ.get("ORTHODIFF_DEBUG"):
            traceback.print_exception(e, file=sys.stderr)

    # Reading and preprocessing (numpy, SimpleITK) and writing (gzip) overlap with the network's compute: one case
    # is read ahead and one written behind, each by one thread, in the input order.
    writing = None
    with ThreadPoolExecutor(1, thread_name_prefix="read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="write") as writer:
        ahead = reader.submit(read_and_prepare, todo[0]) if todo else None
        for i, case_id in enumerate(todo):
            loaded, unreadable, prepared = ahead.result()
            ahead = reader.submit(read_and_prepare, todo[i + 1]) if i + 1 < len(todo) else None
            prediction = error = None
            if loaded:
                try:
                    if isinstance(prepared, Exception):
                        raise prepared
                    prediction = predictor.predict_case(case_id, loaded, (clinical or {}).get(case_id),
                                                        probabilities=options.probabilities, prepared=prepared)
                except CASE_ERRORS as e:
                    error = e
            if writing is not None:  # the previous case is reported first: the log follows the input order
                writing.result()
            writing = None
            bar.update()
            for name, problem in unreadable.items():
                report.failed[name] = problem
                log(f"FAILED {name}: {problem}")
            if error is not None:
                fail(case_id, error)
            elif prediction is not None:
                writing = writer.submit(write, case_id, prediction, loaded)
        if writing is not None:
            writing.result()
    bar.close()
    barrier(ctx)  # every process has written its cases (waits up to PREDICTION_WAIT for the slowest)
    if wants_findings and ctx.is_main:
        merge_findings(output_dir, predictor.findings, run_id, case_ids)
    return report


def _write_qc(output_dir: Path, predictor: Predictor, prediction: CasePrediction, loaded: dict[str, tuple]) -> None:
    classifier = predictor.classifiers.get(prediction.classifier or "")
    labels = next(iter(predictor.segmenters.values())).plans.labels if predictor.segmenters else {}
    write_qc_png(output_dir / QC_FOLDER / f"{prediction.case_id}.png", prediction.case_id, loaded,
                 prediction.segmentations, labels, prediction.findings,
                 classifier.thresholds_table() if classifier is not None else {}, prediction.findings_note)


def _write_outputs(output_dir: Path, predictor: Predictor, scans: list[InputScan], prediction: CasePrediction,
                   loaded: dict[str, tuple], options: OutputOptions, findings_part: Path | None) -> None:
    """A case's files: segmentations (and probabilities), its findings part, its QC picture."""
    for s in scans:
        if s.view in prediction.segmentations:
            write_image(output_dir / s.output_name, prediction.segmentations[s.view], loaded[s.view][1])
        if s.view in prediction.probabilities:
            write_probabilities(output_dir / s.output_name, prediction.probabilities[s.view],
                                loaded[s.view][1], predictor.segmenters[s.view].plans.labels)
    if findings_part is not None:
        row = {"case_id": prediction.case_id, "views": "+".join(s.view for s in scans if s.view in loaded),
               "classifier": prediction.classifier or ""}
        for finding, values in prediction.findings.items():
            row[finding] = values["probability"]
            row[f"{finding}_call"] = int(values["call"])
            row[f"{finding}_spread"] = values["spread"]
        with atomic_path(findings_part) as tmp:
            pd.DataFrame([row]).to_csv(tmp, index=False)
    if options.qc:
        _write_qc(output_dir, predictor, prediction, loaded)


def _read_views(scans: list[InputScan]) -> tuple[dict[str, tuple], dict[str, str]]:
    """(view -> (array, geometry) of the case's readable scans, file name -> problem of the others): an unreadable
    file is reported by name and the case goes on with the others (its findings then use the views present)."""
    loaded, unreadable = {}, {}
    for s in scans:
        try:
            loaded[s.view] = s.read()
        except (UserInputError, OSError) as e:
            unreadable[s.source_name] = str(e)
    return loaded, unreadable


def merge_findings(output_dir: Path, findings, run_id: str, case_ids) -> Path | None:
    """One findings.csv from the per-case parts of this run (``run_id``) of the cases ``case_ids`` (written by any
    number of processes); parts of other runs or of cases not in the input folder are left out."""
    parts = [p for p in (_findings_part(output_dir, run_id, c) for c in sorted(case_ids)) if p.is_file()]
    if not parts:
        return None
    table = pd.concat([pd.read_csv(p, dtype={"case_id": str}) for p in parts], ignore_index=True)
    columns = ["case_id", "views", "classifier"] + [c for f in findings for c in (f, f"{f}_call", f"{f}_spread")]
    table = table.reindex(columns=columns).sort_values("case_id")
    target = output_dir / FINDINGS_CSV
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)
    return target
