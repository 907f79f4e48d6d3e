"""``predict_folder``: a folder of scans -> segmentations beside the same file names, and one findings.csv.

Inputs: ``<case>_<view>.<ext>`` files, plain image files (case = file stem, view from the header), or
DICOM series folders (case = folder name, view from the header). Cases whose outputs exist are skipped, a
failing case is reported and the others go on, and every output is written atomically. Under torchrun each
process takes every WORLD_SIZE-th case, so several GPUs or machines share an archive with no extra tooling.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from orthodiff_auto.data.image_io import read_geometry, read_image, write_image
from orthodiff_auto.data.views import VIEWS, infer_view
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.predictor import Predictor
from orthodiff_auto.utils.atomic import atomic_path, write_json_atomic

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
FINDINGS_CSV = "findings.csv"
_VIEW_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<view>" + "|".join(VIEWS) + r")$")


@dataclass
class InputScan:
    case_id: str
    view: str
    path: Path
    output_name: str  # file name of the segmentation in the output folder


@dataclass
class FolderReport:
    predicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _stem(path: Path) -> str | None:
    for ending in IMAGE_ENDINGS:
        if path.name.endswith(ending):
            return path.name[: -len(ending)]
    return None


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
            case_id, output_name = path.name, f"{path.name}.nii.gz"
        else:
            stem = _stem(path)
            if stem is None:
                continue
            m = _VIEW_SUFFIX.match(stem)
            case_id, output_name = (m.group("case") if m else stem), path.name
        try:
            if path.is_dir():
                view = infer_view(read_image(path)[1])
            elif (m := _VIEW_SUFFIX.match(_stem(path))) is not None:
                view = m.group("view")
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


def shard(items: list[str]) -> list[str]:
    """This process' share under torchrun (RANK/WORLD_SIZE), all of them otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return items[rank::world] if world > 1 else items


def _findings_part(output_dir: Path, case_id: str) -> Path:
    return output_dir / ".findings" / f"{case_id}.csv"


def predict_folder(input_dir: Path | str, output_dir: Path | str, model_dir: Path | str, folds=None,
                   tta: bool = False, device: str | None = None, overwrite: bool = False, log=print) -> FolderReport:
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise UserInputError(f"{output_dir}: the output folder must differ from the input folder")
    predictor = Predictor(model_dir, folds=folds, device=device, tta=tta)
    cases, problems = discover_inputs(input_dir)
    report = FolderReport()
    for name, problem in problems.items():
        report.failed[name] = problem
        log(f"FAILED {name}: {problem}")
    output_dir.mkdir(parents=True, exist_ok=True)
    wants_findings = bool(predictor.classifiers)
    if wants_findings:  # the thresholds behind the calls (of the all-view classifier), for `evaluate`
        default = predictor.classifier or next(iter(predictor.classifiers.values()))
        write_json_atomic(output_dir / "thresholds.json", default.thresholds_table())
    for case_id in shard(sorted(c for c in cases if c not in problems)):
        scans = cases[case_id]
        outputs = [output_dir / s.output_name for s in scans if s.view in predictor.segmenters]
        done = all(p.is_file() for p in outputs) and (not wants_findings or _findings_part(output_dir, case_id).is_file())
        if done and not overwrite:
            report.skipped.append(case_id)
            continue
        try:
            loaded = {s.view: read_image(s.path) for s in scans}
            prediction = predictor.predict_case(case_id, loaded)
            for s in scans:
                if s.view in prediction.segmentations:
                    write_image(output_dir / s.output_name, prediction.segmentations[s.view], loaded[s.view][1])
            if wants_findings:
                row = {"case_id": case_id, "views": "+".join(s.view for s in scans),
                       "classifier": prediction.classifier or ""}
                for finding, values in prediction.findings.items():
                    row[finding] = values["probability"]
                    row[f"{finding}_call"] = int(values["call"])
                    row[f"{finding}_spread"] = values["spread"]
                with atomic_path(_findings_part(output_dir, case_id)) as tmp:
                    pd.DataFrame([row]).to_csv(tmp, index=False)
            report.predicted.append(case_id)
            note = f"; {prediction.findings_note}" if prediction.findings_note else ""
            log(f"predicted {case_id} ({', '.join(s.view for s in scans)}){note}")
        except (UserInputError, ValueError, RuntimeError, OSError) as e:
            report.failed[case_id] = f"{type(e).__name__}: {e}"
            log(f"FAILED {case_id}: {e}")
            if os.environ.get("ORTHODIFF_DEBUG"):
                traceback.print_exc(file=sys.stderr)
    if wants_findings and _wait_for_all_processes():
        merge_findings(output_dir, predictor.findings)
    return report


def _wait_for_all_processes() -> bool:
    """Under torchrun: wait until every process has written its cases; True on the process that merges."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    import torch.distributed as dist  # only under torchrun

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()
    merge_here = dist.get_rank() == 0
    dist.destroy_process_group()
    return merge_here


def merge_findings(output_dir: Path, findings) -> Path | None:
    """One findings.csv from the per-case parts (written by any number of processes)."""
    parts = sorted((output_dir / ".findings").glob("*.csv"))
    if not parts:
        return None
    table = pd.concat([pd.read_csv(p, dtype={"case_id": str}) for p in parts], ignore_index=True)
    columns = ["case_id", "views", "classifier"] + [c for f in findings for c in (f, f"{f}_call", f"{f}_spread")]
    table = table.reindex(columns=columns).sort_values("case_id")
    target = output_dir / FINDINGS_CSV
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)
    return target
