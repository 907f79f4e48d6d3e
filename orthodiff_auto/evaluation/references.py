"""What ``evaluate`` scores against: the reference label maps (with the prediction file names that match each)
and findings, from a raw dataset's test part or from a plain folder of label files.

A raw dataset (dataset.json beside ``imagesTr/``, ``imagesTs/`` or ``labelsTs/``): its test scans with a label,
and ``findingsTs.csv``. A plain folder (what nnU-Net users keep as ``labelsTs``): every image file in it is a
reference label map (case and view from ``<case>_<view>``, else case = file stem and view from the header);
``dataset.json`` (the folder's, or ``--dataset-json``) names the labels and findings, and a findings CSV (the
folder's ``findingsTs.csv`` or ``findings.csv``, or ``--findings``) holds the reference findings. Without a
dataset.json the labels are the values found in the reference files (named ``label_<value>``) and the findings
the CSV's 0/1 columns.

A prediction matches a reference under either naming: ours (the input file name, ``<case>_<view>.nii.gz``) or
nnU-Net's (``<case>.nii.gz``, the image's name without its ``_0000`` channel suffix), and the older
predict_folder outputs that kept the ``_0000``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orthodiff_auto.data.dataset import DatasetDescription, read_description, scan_raw_dataset
from orthodiff_auto.data.findings import METADATA_COLUMNS, read_findings_table
from orthodiff_auto.data.file_names import IMAGE_ENDINGS, case_and_view, split_image_name, without_channel_suffix
from orthodiff_auto.data.image_io import read_geometry, read_image
from orthodiff_auto.data.views import infer_view
from orthodiff_auto.errors import DatasetError, UserInputError

FINDINGS_CSV_NAMES = ("findingsTs.csv", "findings.csv")


@dataclass(frozen=True)
class ReferenceScan:
    case_id: str
    view: str
    label: Path
    names: tuple[str, ...]  # prediction file names that match it, the first one naming it in the summary


@dataclass(frozen=True)
class References:
    root: Path
    labels: dict[str, int]  # foreground structures scored: name -> value
    ignore_label: int | None
    findings: tuple[str, ...]
    scans: list[ReferenceScan]
    findings_table: pd.DataFrame | None  # index case_id; 0/1 finding columns, then metadata (site)

    def prediction_for(self, scan: ReferenceScan, pred_dir: Path) -> Path | None:
        """The prediction in ``pred_dir`` for ``scan`` under any accepted name; None when there is none."""
        return next((pred_dir / n for n in scan.names if (pred_dir / n).is_file()), None)


def _candidate_names(image_name: str, label_name: str, case_id: str, view: str, alone: bool) -> tuple[str, ...]:
    """Our name, nnU-Net's name (without the channel suffix), the older one with it; ``<case>.<ext>`` only for a
    case's only reference scan (two views of one case must not claim one file)."""
    names = [image_name, label_name]
    for name in (image_name, label_name):
        stem, ending = split_image_name(name) or (name, "")
        without, channel = without_channel_suffix(stem)
        names.append(f"{without}{ending}" if channel is not None else f"{stem}_0000{ending}")
        names.append(f"{case_id}_{view}{ending}")
        if alone:
            names += [f"{case_id}{ending}", f"{case_id}_0000{ending}"]
    return tuple(dict.fromkeys(names))  # unique, in order


def is_raw_dataset(folder: Path) -> bool:
    """A dataset.json beside the raw format's image or label folders (a plain folder has label files only)."""
    return (folder / "dataset.json").is_file() and any(
        (folder / name).is_dir() for name in ("imagesTr", "imagesTs", "labelsTs"))


def load_references(reference: Path | str, dataset_json: Path | str | None = None,
                    findings_csv: Path | str | None = None) -> References:
    """The references of a raw dataset or of a plain folder (module docstring); UserInputError naming the
    folder or file when there is nothing to score against or a file cannot be used."""
    reference = Path(reference)
    if not reference.is_dir():
        raise UserInputError(f"{reference}: reference folder does not exist")
    if is_raw_dataset(reference) and dataset_json is None and findings_csv is None:
        return _from_raw_dataset(reference)
    return _from_plain_folder(reference, dataset_json, findings_csv)


def _from_raw_dataset(root: Path) -> References:
    ds = scan_raw_dataset(root)
    test = [s for s in ds.select("test") if s.label is not None]
    per_case: dict[str, int] = {}
    for s in test:
        per_case[s.case_id] = per_case.get(s.case_id, 0) + 1
    scans = [ReferenceScan(s.case_id, s.view, s.label,
                           _candidate_names(s.image.name, s.label.name, s.case_id, s.view, per_case[s.case_id] == 1))
             for s in test]
    desc = ds.description
    if not scans and ds.test_findings is None:
        raise UserInputError(f"{root}: no test references (labelsTs/ or findingsTs.csv) to evaluate against")
    return References(root, desc.foreground_labels, desc.ignore_label, desc.findings, scans, ds.test_findings)


def _from_plain_folder(folder: Path, dataset_json: Path | str | None, findings_csv: Path | str | None) -> References:
    desc = _description(folder, dataset_json)
    entries = []
    for path in sorted(folder.iterdir()):
        split = split_image_name(path.name)
        if path.name.startswith(".") or not path.is_file() or split is None:
            continue
        case_id, view = case_and_view(split[0])
        if view is None:
            try:
                view = infer_view(read_geometry(path))
            except UserInputError:
                view = "unknown"  # only the per-view table needs it
        entries.append((case_id, view, path))
    per_case: dict[str, int] = {}
    for case_id, _, _ in entries:
        per_case[case_id] = per_case.get(case_id, 0) + 1
    scans = [ReferenceScan(c, v, p, _candidate_names(p.name, p.name, c, v, per_case[c] == 1)) for c, v, p in entries]
    table_path = Path(findings_csv) if findings_csv else next(
        (folder / n for n in FINDINGS_CSV_NAMES if (folder / n).is_file()), None)
    findings = tuple(desc.findings) if desc is not None else ()
    table = None
    if table_path is not None:
        if not table_path.is_file():
            raise UserInputError(f"{table_path}: findings CSV does not exist")
        if desc is None:  # the CSV's own 0/1 columns
            header = pd.read_csv(table_path, nrows=0).columns
            findings = tuple(c.strip() for c in header if c.strip() not in ("case_id", *METADATA_COLUMNS))
        table, problems = read_findings_table(table_path, findings, None, desc.clinical if desc else (),
                                              clinical_required=False)
        if problems:
            raise DatasetError(problems)
    if not scans and table is None:
        raise UserInputError(f"{folder}: no reference label files ({', '.join(IMAGE_ENDINGS)}) and no findings "
                             f"CSV ({' or '.join(FINDINGS_CSV_NAMES)}, or --findings) to evaluate against")
    if desc is not None:
        labels, ignore = desc.foreground_labels, desc.ignore_label
    else:
        labels, ignore = _labels_found(scans), None
    return References(folder, labels, ignore, findings, scans, table)


def _description(folder: Path, dataset_json: Path | str | None) -> DatasetDescription | None:
    if dataset_json is None:
        return read_description(folder) if (folder / "dataset.json").is_file() else None
    path = Path(dataset_json)
    if not path.is_file():
        raise UserInputError(f"{path}: dataset.json does not exist")
    if path.name == "dataset.json":
        return read_description(path.parent)
    raise UserInputError(f"{path}: --dataset-json must name a file called dataset.json")


def _labels_found(scans: list[ReferenceScan]) -> dict[str, int]:
    """Without a dataset.json: every non-zero value of the reference files, named ``label_<value>``."""
    values: set[int] = set()
    for scan in scans:
        values.update(int(v) for v in np.unique(read_image(scan.label, dtype=None)[0]))
    return {f"label_{v}": v for v in sorted(values) if v != 0}


__all__ = ["ReferenceScan", "References", "is_raw_dataset", "load_references"]
