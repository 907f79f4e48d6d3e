"""The raw dataset folder: its description (dataset.json) and the scans it holds.

Native layout (see documentation/dataset_format.md)::

    dataset.json                     name, anatomy, views, labels, findings, file_ending
    imagesTr/<case>_<view>.nii.gz    view in {sag, cor, ax}; a case may lack views
    labelsTr/<case>_<view>.nii.gz    labels for any subset of the training scans
    findings.csv                     case_id, one 0/1 column per finding; optional site, field_strength;
                                     the clinical columns dataset.json declares
    imagesTs/, labelsTs/, findingsTs.csv   optional test scans and references (evaluation only)
    unlabeled/<case>_<view>.nii.gz   optional scans for self-supervised pretraining only

A dataset in nnU-Net v2's raw format (``imagesTr/<case>_0000.nii.gz``, ``channel_names``) is read
unchanged as a single-view, segmentation-only dataset whose views come from the image headers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from orthodiff_auto.data.clinical import ClinicalVariable, parse_clinical_declaration
from orthodiff_auto.data.findings import METADATA_COLUMNS, read_findings_table
from orthodiff_auto.data.file_names import split_image_name
from orthodiff_auto.data.image_io import gzip_name_problem, read_geometry
from orthodiff_auto.data.views import VIEWS, infer_view
from orthodiff_auto.errors import DatasetError, Problem, UserInputError

SUBSETS = ("train", "test", "unlabeled")
_IMAGE_FOLDERS = {"train": "imagesTr", "test": "imagesTs", "unlabeled": "unlabeled"}
_LABEL_FOLDERS = {"train": "labelsTr", "test": "labelsTs"}
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_NNUNET_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class DatasetDescription:
    """What dataset.json says, normalised to one shape for both formats."""

    name: str
    labels: dict[str, int]  # includes background = 0; excludes the ignore label
    findings: tuple[str, ...] = ()
    views: tuple[str, ...] = VIEWS
    anatomy: str = "unknown"
    modality: str = "MRI"
    file_ending: str = ".nii.gz"
    ignore_label: int | None = None
    source_format: str = "orthodiff"  # or "nnunetv2"
    clinical: tuple[ClinicalVariable, ...] = ()  # declared clinical columns of findings.csv (data.clinical)

    @property
    def foreground_labels(self) -> dict[str, int]:
        return {k: v for k, v in self.labels.items() if v != 0}

    @property
    def allowed_label_values(self) -> set[int]:
        values = set(self.labels.values())
        if self.ignore_label is not None:
            values.add(self.ignore_label)
        return values

    def to_dict(self) -> dict[str, Any]:
        clinical = {"clinical": [v.to_dict() for v in self.clinical]} if self.clinical else {}  # old files unchanged
        return {
            "name": self.name,
            "anatomy": self.anatomy,
            "modality": self.modality,
            "views": list(self.views),
            "labels": dict(self.labels),
            "ignore_label": self.ignore_label,
            "findings": list(self.findings),
            "file_ending": self.file_ending,
            "source_format": self.source_format,
            **clinical,
        }


@dataclass(frozen=True)
class ScanEntry:
    case_id: str
    view: str
    subset: str  # train | test | unlabeled
    image: Path
    label: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.case_id}_{self.view}"


@dataclass
class RawDataset:
    root: Path
    description: DatasetDescription
    scans: list[ScanEntry]
    findings: pd.DataFrame | None = None  # index case_id; finding columns in description order, then metadata
    test_findings: pd.DataFrame | None = None
    problems: list[Problem] = field(default_factory=list)

    def select(self, subset: str | None = None, view: str | None = None, labelled: bool | None = None) -> list[ScanEntry]:
        out = []
        for s in self.scans:
            if subset is not None and s.subset != subset:
                continue
            if view is not None and s.view != view:
                continue
            if labelled is not None and (s.label is not None) != labelled:
                continue
            out.append(s)
        return out

    def case_ids(self, subset: str = "train") -> list[str]:
        return sorted({s.case_id for s in self.scans if s.subset == subset})

    def views_present(self) -> list[str]:
        present = {s.view for s in self.scans}
        return [v for v in VIEWS if v in present]


def read_description(root: Path) -> DatasetDescription:
    """Parse dataset.json; raises DatasetError naming the file and every problem found."""
    path = root / "dataset.json"
    if not path.is_file():
        raise DatasetError([Problem(path, "missing: every dataset needs a dataset.json")])
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a byte-order mark (Windows editors) is fine
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError([Problem(path, f"not valid JSON ({e})")]) from None
    except OSError as e:
        raise DatasetError([Problem(path, f"cannot read ({e.strerror or e})")]) from None
    if not isinstance(raw, dict):
        raise DatasetError([Problem(path, "must hold a JSON object")])
    problems: list[Problem] = []
    nnunet = "channel_names" in raw and "views" not in raw
    labels, ignore_label = _parse_labels(raw, path, problems)
    if nnunet:
        channels = raw.get("channel_names") or {}
        if not isinstance(channels, dict) or len(channels) != 1:
            problems.append(Problem(path, f"channel_names: exactly one channel is supported, got {channels!r}"))
        modality = str(next(iter(channels.values()), "MRI")) if isinstance(channels, dict) else "MRI"
        desc_kwargs = dict(views=VIEWS, findings=(), modality=modality, source_format="nnunetv2")
    else:
        views = raw.get("views", list(VIEWS))
        if not isinstance(views, list) or not views:
            problems.append(Problem(path, f"views must be a non-empty list of {list(VIEWS)}, got {views!r}"))
            views = list(VIEWS)
        bad_views = [v for v in views if v not in VIEWS]
        if bad_views:
            problems.append(Problem(path, f"unknown views {bad_views}; known views are {list(VIEWS)}"))
        findings = raw.get("findings", [])
        if not isinstance(findings, list) or not all(isinstance(f, str) and f for f in findings):
            problems.append(Problem(path, f"findings must be a list of names, got {findings!r}"))
            findings = []
        if len(set(findings)) != len(findings):
            problems.append(Problem(path, f"findings contains duplicates: {findings}"))
        clinical = parse_clinical_declaration(raw.get("clinical"), path,
                                              ["case_id", *findings, *METADATA_COLUMNS], problems)
        if clinical and not findings:
            problems.append(Problem(path, "clinical columns live in findings.csv, so they need declared findings"))
        desc_kwargs = dict(
            views=tuple(v for v in views if v in VIEWS),
            findings=tuple(findings),
            clinical=clinical,
            modality=str(raw.get("modality", "MRI")),
            source_format="orthodiff",
        )
    file_ending = raw.get("file_ending", ".nii.gz")
    if not isinstance(file_ending, str) or not file_ending.startswith("."):
        problems.append(Problem(path, f"file_ending must look like '.nii.gz', got {file_ending!r}"))
        file_ending = ".nii.gz"
    if problems:
        raise DatasetError(problems)
    return DatasetDescription(
        name=str(raw.get("name", root.name)),
        anatomy=str(raw.get("anatomy", "unknown")),
        labels=labels,
        ignore_label=ignore_label,
        file_ending=file_ending,
        **desc_kwargs,
    )


def _parse_labels(raw: dict, path: Path, problems: list[Problem]) -> tuple[dict[str, int], int | None]:
    labels = raw.get("labels")
    if labels is None:
        return {"background": 0}, None
    if not isinstance(labels, dict) or not labels:
        problems.append(Problem(path, f"labels must map names to integer values, got {labels!r}"))
        return {"background": 0}, None
    out: dict[str, int] = {}
    ignore_label = raw.get("ignore_label")
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            problems.append(Problem(path, f"label {name!r}: region-based labels are not supported"))
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(Problem(path, f"label {name!r}: value must be a non-negative integer, got {value!r}"))
            continue
        if name == "ignore":  # nnU-Net v2's convention for sparse annotations
            ignore_label = value
            continue
        out[name] = value
    if len(set(out.values())) != len(out):
        problems.append(Problem(path, f"labels: two names share a value: {out}"))
    if out and 0 not in out.values():
        problems.append(Problem(path, "labels: background (value 0) must be declared"))
    if ignore_label is not None:
        if not isinstance(ignore_label, int) or isinstance(ignore_label, bool):
            problems.append(Problem(path, f"ignore_label must be an integer, got {ignore_label!r}"))
            ignore_label = None
        elif ignore_label in out.values():
            problems.append(Problem(path, f"ignore_label {ignore_label} is also a class value"))
        elif out and ignore_label <= max(out.values()):
            problems.append(Problem(path, f"ignore_label {ignore_label} must be larger than every class value"))
    return out, ignore_label


def parse_scan_name(filename: str, file_ending: str) -> tuple[str, str]:
    """Split ``<case>_<view><file_ending>`` into (case, view suffix); raises ValueError when malformed."""
    if not filename.endswith(file_ending):
        raise ValueError(f"does not end with the dataset's file_ending {file_ending!r}")
    stem = filename[: -len(file_ending)]
    if "_" not in stem:
        raise ValueError("name must be <case>_<view>" + file_ending)
    case_id, view = stem.rsplit("_", 1)
    if not _CASE_ID.match(case_id):
        raise ValueError(f"malformed case id {case_id!r} (letters, digits, '_', '-', '.' only)")
    return case_id, view


def scan_raw_dataset(root: Path | str) -> RawDataset:
    """Index a dataset folder leniently: file-name problems are collected in ``problems`` and skipped.

    Raises DatasetError only when the folder or its dataset.json cannot be used at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserInputError(f"{root}: dataset folder does not exist")
    desc = read_description(root)
    problems: list[Problem] = []
    misnamed: dict[str, set[str]] = {}
    if desc.source_format == "nnunetv2":
        scans = _index_nnunet(root, desc, problems)
    else:
        scans = _index_native(root, desc, problems, misnamed)
    findings = test_findings = None
    if desc.source_format == "orthodiff":
        train_cases = sorted({s.case_id for s in scans if s.subset == "train"} | misnamed.get("train", set()))
        test_cases = sorted({s.case_id for s in scans if s.subset == "test"} | misnamed.get("test", set()))
        findings = _read_findings(root / "findings.csv", desc, train_cases, problems, required=bool(desc.findings))
        test_findings = _read_findings(root / "findingsTs.csv", desc, test_cases, problems, required=False)
    return RawDataset(root, desc, scans, findings, test_findings, problems)


def load_raw_dataset(root: Path | str) -> RawDataset:
    """Index a dataset folder; any file-name or findings problem raises DatasetError listing all of them."""
    ds = scan_raw_dataset(root)
    if ds.problems:
        raise DatasetError(ds.problems)
    return ds


def _read_findings(path: Path, desc: DatasetDescription, cases: list[str], problems: list[Problem], required: bool):
    if not path.is_file():
        if required and cases:
            problems.append(Problem(path, "missing: dataset.json declares findings"))
        return None
    if not desc.findings:
        problems.append(Problem(path, "present, but dataset.json declares no findings"))
        return None
    # findingsTs.csv may leave out a clinical column: prediction treats its values as missing
    table, found = read_findings_table(path, desc.findings, cases, desc.clinical, clinical_required=required)
    problems.extend(found)
    return table


def _key_under_its_own_ending(name: str) -> tuple[str, str] | None:
    """(case, view) of an image file named ``<case>_<view>`` with an ending other than the dataset's."""
    split = split_image_name(name)
    try:
        return parse_scan_name(name, split[1]) if split is not None else None
    except ValueError:
        return None


def _index_native(root: Path, desc: DatasetDescription, problems: list[Problem],
                  present: dict[str, set[str]] | None = None) -> list[ScanEntry]:
    """The scans of a native dataset; ``present`` gets the cases per subset whose image is there under another
    file ending (already reported), so that their findings rows are not reported too."""
    present = {} if present is None else present
    scans: list[ScanEntry] = []
    for subset, folder_name in _IMAGE_FOLDERS.items():
        folder = root / folder_name
        if not folder.is_dir():
            if subset == "train":
                problems.append(Problem(folder, "missing: a dataset needs an imagesTr folder"))
            continue
        label_folder = root / _LABEL_FOLDERS[subset] if subset in _LABEL_FOLDERS else None
        seen: set[tuple[str, str]] = set()
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            try:
                case_id, view = parse_scan_name(path.name, desc.file_ending)
            except ValueError as e:
                problems.append(Problem(path, gzip_name_problem(path) or str(e)))
                # an image under another ending is one problem: its label and findings row are not orphans
                misnamed = _key_under_its_own_ending(path.name)
                if misnamed is not None:
                    seen.add(misnamed)
                    present.setdefault(subset, set()).add(misnamed[0])
                continue
            if view not in VIEWS:
                problems.append(Problem(path, f"unknown view {view!r}; known views are {list(VIEWS)}"))
                continue
            if view not in desc.views:
                problems.append(Problem(path, f"view {view!r} is not listed in dataset.json views {list(desc.views)}"))
                continue
            seen.add((case_id, view))
            label = None
            if label_folder is not None and (label_folder / path.name).is_file():
                label = label_folder / path.name
            scans.append(ScanEntry(case_id, view, subset, path, label))
        if label_folder is not None and label_folder.is_dir():
            for path in sorted(label_folder.iterdir()):
                if path.name.startswith("."):
                    continue
                try:
                    key = parse_scan_name(path.name, desc.file_ending)
                except ValueError as e:
                    problems.append(Problem(path, str(e)))
                    continue
                if key not in seen:
                    problems.append(Problem(path, f"label without an image in {folder_name}/"))
    _check_case_id_collisions(scans, problems)
    if not any(s.subset == "train" for s in scans) and (root / "imagesTr").is_dir():
        problems.append(Problem(root / "imagesTr", "empty dataset: no training scans"))
    return scans


def _check_case_id_collisions(scans: list[ScanEntry], problems: list[Problem]) -> None:
    # A case id may appear in one subset only: otherwise test scans could leak into training.
    subsets_of: dict[str, set[str]] = {}
    for s in scans:
        subsets_of.setdefault(s.case_id, set()).add(s.subset)
    for case_id, subsets in sorted(subsets_of.items()):
        if len(subsets) > 1:
            first = next(sub for sub in SUBSETS if sub in subsets)
            for s in scans:
                if s.case_id == case_id and s.subset != first:
                    problems.append(Problem(s.image, f"duplicate case id {case_id!r}: already used in {first}"))


def _index_nnunet(root: Path, desc: DatasetDescription, problems: list[Problem]) -> list[ScanEntry]:
    scans: list[ScanEntry] = []
    for subset, folder_name in (("train", "imagesTr"), ("test", "imagesTs")):
        folder = root / folder_name
        if not folder.is_dir():
            if subset == "train":
                problems.append(Problem(folder, "missing: a dataset needs an imagesTr folder"))
            continue
        label_folder = root / _LABEL_FOLDERS[subset]
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            if not path.name.endswith(desc.file_ending):
                problems.append(Problem(path, f"does not end with the dataset's file_ending {desc.file_ending!r}"))
                continue
            m = _NNUNET_CHANNEL.match(path.name[: -len(desc.file_ending)])
            if not m:
                problems.append(Problem(path, "nnU-Net v2 image names must be <case>_<XXXX>" + desc.file_ending))
                continue
            if m.group("channel") != "0000":
                problems.append(Problem(path, "only single-channel nnU-Net datasets are supported"))
                continue
            case_id = m.group("case")
            if not _CASE_ID.match(case_id):
                problems.append(Problem(path, f"malformed case id {case_id!r}"))
                continue
            try:
                view = infer_view(read_geometry(path))
            except UserInputError as e:
                problems.append(Problem(path, str(e).split(": ", 1)[-1]))
                continue
            label = label_folder / f"{case_id}{desc.file_ending}"
            scans.append(ScanEntry(case_id, view, subset, path, label if label.is_file() else None))
    if not any(s.subset == "train" for s in scans) and (root / "imagesTr").is_dir():
        problems.append(Problem(root / "imagesTr", "empty dataset: no training scans"))
    _check_case_id_collisions(scans, problems)
    return scans
