"""``convert_dicom``: a folder of DICOM studies -> images of the raw dataset format (``<case>_<view>.nii.gz``).

Images only: labels and findings are the user's to add. Every study is resolved first (``data.dicom``), so an
ambiguous study stops the command before anything is written; each image is written atomically, and
``dicom_series.csv`` records which series became which file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from orthodiff_auto.data.dataset import read_description
from orthodiff_auto.data.dicom import DicomStudy, find_studies, parse_series_choices, read_series
from orthodiff_auto.data.image_io import write_image
from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.utils.atomic import atomic_path

SUBSET_FOLDERS = {"train": "imagesTr", "test": "imagesTs", "unlabeled": "unlabeled"}
SOURCES_CSV = "dicom_series.csv"


@dataclass
class ConversionReport:
    written: list[Path] = field(default_factory=list)
    studies: list[DicomStudy] = field(default_factory=list)


def dataset_views(out_raw: Path, views: Sequence[str] | None) -> tuple[str, ...]:
    """The views to convert: ``views`` when given, else those of ``out_raw/dataset.json`` when it exists, else all."""
    if views:
        unknown = [v for v in views if v not in VIEWS]
        if unknown:
            raise UserInputError(f"--views: unknown views {unknown}; known views are {list(VIEWS)}")
        return tuple(views)
    if (out_raw / "dataset.json").is_file():
        return read_description(out_raw).views
    return VIEWS


def convert_dicom_studies(studies_dir: Path | str, out_raw: Path | str, subset: str = "train",
                          views: Sequence[str] | None = None, series_uids: Sequence[str] = (),
                          overwrite: bool = False, log=print) -> ConversionReport:
    """Write each study's series as ``OUT_RAW/<imagesTr|imagesTs|unlabeled>/<case>_<view>.nii.gz``;
    ``series_uids``: ``VIEW=SERIES_UID`` choices (``data.dicom.parse_series_choices``)."""
    studies_dir, out_raw = Path(studies_dir), Path(out_raw)
    if subset not in SUBSET_FOLDERS:
        raise UserInputError(f"--subset {subset!r}: expected one of {', '.join(SUBSET_FOLDERS)}")
    studies = find_studies(studies_dir, dataset_views(out_raw, views), parse_series_choices(series_uids))
    folder = out_raw / SUBSET_FOLDERS[subset]
    targets = {(study.case_id, view): folder / f"{study.case_id}_{view}.nii.gz"
               for study in studies for view in study.series}
    existing = [p.name for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise UserInputError(f"{folder}: {len(existing)} images exist already ({', '.join(existing[:3])}"
                             f"{', ...' if len(existing) > 3 else ''}); --overwrite replaces them")
    report = ConversionReport(studies=studies)
    rows = []
    for study in studies:
        for view, series in study.series.items():
            image, geometry = read_series(series, dtype=None)
            write_image(targets[study.case_id, view], image, geometry)
            report.written.append(targets[study.case_id, view])
            rows.append({"case_id": study.case_id, "view": view, "subset": subset, "study_uid": study.study_uid,
                         "series_uid": series.series_uid, "description": series.description,
                         "folder": str(series.folder)})
        ignored = "; ".join(f"{s.series_uid} ({why})" for s, why in study.ignored)
        log(f"{study.case_id}: {', '.join(study.series)}" + (f"; not used: {ignored}" if ignored else ""))
    _record_sources(out_raw / SOURCES_CSV, pd.DataFrame(rows))
    return report


def _record_sources(path: Path, rows: pd.DataFrame) -> None:
    """Add this conversion's rows to ``path``, replacing earlier rows of the same case, view and subset."""
    if path.is_file():
        earlier = pd.read_csv(path, dtype=str)
        keys = set(zip(rows["case_id"], rows["view"], rows["subset"]))
        keep = [(c, v, s) not in keys for c, v, s in zip(earlier["case_id"], earlier["view"], earlier["subset"])]
        rows = pd.concat([earlier[keep], rows], ignore_index=True)
    with atomic_path(path) as tmp:
        rows.sort_values(["subset", "case_id", "view"]).to_csv(tmp, index=False)
