"""One prediction run's cases through read -> predict -> write (``predict_folder`` builds it).

Reading and preprocessing (numpy, SimpleITK) and writing (gzip) overlap with the network's compute: one case is
read ahead and one written behind, each by one thread, in the input order; the network runs in the calling
thread. A case that fails (unreadable file, preprocessing, prediction or writing error) is reported and the
others go on; a case counts as predicted, and is logged with what was and was not predicted for it, once its
outputs are written.
"""

from __future__ import annotations

import os
import sys
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm import tqdm

from orthodiff_auto.data.dicom import DicomSeries, read_series
from orthodiff_auto.data.image_io import read_image, write_image
from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.predictor import CasePrediction, Predictor
from orthodiff_auto.inference.probabilities import probability_paths, write_probabilities
from orthodiff_auto.inference.qc import QC_FOLDER, write_qc_png
from orthodiff_auto.training.monitor import progress_bar_wanted
from orthodiff_auto.utils.atomic import atomic_path

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


@dataclass(frozen=True)
class OutputOptions:
    """What a run writes besides the segmentations and findings."""

    qc: bool = False  # qc/<case>.png per case (inference.qc)
    probabilities: bool = False  # <scan>.npz + <scan>.json per segmented scan (inference.probabilities)
    progress_bar: bool = True  # a bar over the cases, when stderr is a terminal


@dataclass
class ReadCase:
    """A case as the reader thread left it: its readable views, its unreadable files and what preprocessing
    made of the views (or the exception it raised, re-raised when the case is predicted)."""

    case_id: str
    loaded: dict[str, tuple]
    unreadable: dict[str, str]
    prepared: dict | Exception


def findings_part(output_dir: Path, run_id: str, case_id: str) -> Path:
    """A case's row of findings.csv, written when the case is; ``findings_run_id`` names the run."""
    return output_dir / ".findings" / run_id / f"{case_id}.csv"


def case_summary(predictor: Predictor, views_read, prediction: CasePrediction) -> str:
    """What was and was not predicted for a case, for its log line: a model that segments some views only or has
    no classifier says so rather than listing views it wrote nothing for."""
    in_order = lambda views: sorted(views, key=lambda v: (VIEWS.index(v) if v in VIEWS else len(VIEWS), v))
    parts = [f"segmented {', '.join(in_order(prediction.segmentations))}" if prediction.segmentations
             else "nothing segmented"]
    unsegmented = in_order(set(views_read) - set(prediction.segmentations))
    if unsegmented:
        parts.append(f"not segmented {', '.join(unsegmented)} (the model has no segmentation of "
                     f"{'this view' if len(unsegmented) == 1 else 'these views'})")
    if not predictor.classifiers:
        parts.append("no findings (the model has no classifier)")
    elif prediction.findings_note:
        parts.append(prediction.findings_note)
    else:
        parts.append(f"findings from {prediction.classifier}")
    return "; ".join(parts)


class CasePipeline:
    """read -> predict -> write for the cases of one run into ``output_dir``; ``run`` fills ``report``."""

    def __init__(self, output_dir: Path, predictor: Predictor, cases: dict[str, list[InputScan]],
                 outputs: OutputOptions, clinical: dict[str, dict[str, str]], run_id: str | None, log: Callable):
        self.output_dir, self.predictor, self.cases = output_dir, predictor, cases
        self.outputs, self.clinical, self.run_id, self.log = outputs, clinical, run_id, log
        self.report = FolderReport()
        self.number: dict[str, int] = {}

    def outputs_of(self, case_id: str) -> list[Path]:
        """Every file a finished case has in the output folder."""
        segmented = [s for s in self.cases[case_id] if s.view in self.predictor.segmenters]
        paths = [self.output_dir / s.output_name for s in segmented]
        if self.outputs.probabilities:
            paths += [p for s in segmented for p in probability_paths(self.output_dir / s.output_name)]
        if self.outputs.qc:
            paths.append(self.output_dir / QC_FOLDER / f"{case_id}.png")
        if self.run_id is not None:
            paths.append(findings_part(self.output_dir, self.run_id, case_id))
        return paths

    def run(self, case_ids: list[str], overwrite: bool) -> FolderReport:
        """Predict ``case_ids`` (this process' share) in order; finished ones are skipped unless ``overwrite``."""
        self.number = {case_id: i for i, case_id in enumerate(case_ids, start=1)}
        bar = tqdm(total=len(case_ids), desc="cases", unit="case", file=sys.stderr, dynamic_ncols=True,
                   disable=not progress_bar_wanted(self.outputs.progress_bar))
        todo = []
        for case_id in case_ids:
            if not overwrite and all(p.is_file() for p in self.outputs_of(case_id)):
                self.report.skipped.append(case_id)
                bar.update()
            else:
                todo.append(case_id)
        writing: Future | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="read") as reader, \
                ThreadPoolExecutor(1, thread_name_prefix="write") as writer:
            ahead = reader.submit(self.read, todo[0]) if todo else None
            for i, case_id in enumerate(todo):
                case = ahead.result()
                ahead = reader.submit(self.read, todo[i + 1]) if i + 1 < len(todo) else None
                prediction = self.predict(case)
                if writing is not None:  # the previous case is reported first: the log follows the input order
                    writing.result()
                writing = None
                bar.update()
                for name, problem in case.unreadable.items():
                    self.report.failed[name] = problem
                    self.log(f"FAILED {name}: {problem}")
                if isinstance(prediction, Exception):
                    self.fail(case_id, prediction)
                elif prediction is not None:
                    writing = writer.submit(self.write, prediction, case.loaded)
            if writing is not None:
                writing.result()
        bar.close()
        return self.report

    def read(self, case_id: str) -> ReadCase:
        """Runs in the reader thread, one case ahead of the network."""
        loaded, unreadable = {}, {}
        for scan in self.cases[case_id]:  # an unreadable file is reported by name; the case goes on without it
            try:
                loaded[scan.view] = scan.read()
            except (UserInputError, OSError) as e:
                unreadable[scan.source_name] = str(e)
        try:
            prepared = self.predictor.prepare_case(loaded)
        except Exception as e:  # reported for this case by the main thread
            prepared = e
        return ReadCase(case_id, loaded, unreadable, prepared)

    def predict(self, case: ReadCase) -> CasePrediction | Exception | None:
        """The network's part (the calling thread): the prediction, the error that fails the case, or None for a
        case with no readable scan."""
        if not case.loaded:
            return None
        try:
            if isinstance(case.prepared, Exception):
                raise case.prepared
            return self.predictor.predict_case(case.case_id, case.loaded, self.clinical.get(case.case_id),
                                               probabilities=self.outputs.probabilities, prepared=case.prepared)
        except CASE_ERRORS as e:
            return e

    def write(self, prediction: CasePrediction, loaded: dict[str, tuple]) -> None:
        """Runs in the writer thread while the network predicts the next case."""
        case_id = prediction.case_id
        try:
            self._write_files(prediction, loaded)
        except CASE_ERRORS as e:
            self.fail(case_id, e)
            return
        self.report.predicted.append(case_id)
        self.log(f"predicted {case_id}: {case_summary(self.predictor, loaded, prediction)} "
                 f"[{self.number[case_id]}/{len(self.number)}]")

    def fail(self, case_id: str, e: Exception) -> None:
        self.report.failed[case_id] = f"{type(e).__name__}: {e}"
        self.log(f"FAILED {case_id}: {e}")
        if os.environ.get("ORTHODIFF_DEBUG"):
            traceback.print_exception(e, file=sys.stderr)

    def _write_files(self, prediction: CasePrediction, loaded: dict[str, tuple]) -> None:
        """A case's files: segmentations (and probabilities), its findings part, its QC picture."""
        scans = self.cases[prediction.case_id]
        for s in scans:
            if s.view in prediction.segmentations:
                write_image(self.output_dir / s.output_name, prediction.segmentations[s.view], loaded[s.view][1])
            if s.view in prediction.probabilities:
                write_probabilities(self.output_dir / s.output_name, prediction.probabilities[s.view],
                                    loaded[s.view][1], self.predictor.segmenters[s.view].plans.labels)
        if self.run_id is not None:
            self._write_findings_part(prediction, [s.view for s in scans if s.view in loaded])
        if self.outputs.qc:
            self._write_qc(prediction, loaded)

    def _write_findings_part(self, prediction: CasePrediction, views: list[str]) -> None:
        row = {"case_id": prediction.case_id, "views": "+".join(views), "classifier": prediction.classifier or ""}
        for finding, values in prediction.findings.items():
            row[finding] = values["probability"]
            row[f"{finding}_call"] = int(values["call"])
            row[f"{finding}_spread"] = values["spread"]
        with atomic_path(findings_part(self.output_dir, self.run_id, prediction.case_id)) as tmp:
            pd.DataFrame([row]).to_csv(tmp, index=False)

    def _write_qc(self, prediction: CasePrediction, loaded: dict[str, tuple]) -> None:
        predictor = self.predictor
        labels = next(iter(predictor.segmenters.values())).plans.labels if predictor.segmenters else {}
        write_qc_png(self.output_dir / QC_FOLDER / f"{prediction.case_id}.png", prediction.case_id, loaded,
                     prediction.segmentations, labels, prediction.findings,
                     prediction.thresholds, prediction.findings_note)
