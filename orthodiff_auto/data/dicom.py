"""Study-level DICOM: a folder of studies -> one case per study, one series per view.

Series and tags come from SimpleITK's GDCM reader (``ImageSeriesReader.GetGDCMSeriesIDs`` /
``GetGDCMSeriesFileNames`` per folder, tags from one file's header), the reader the rest of the package already
uses for images, so DICOM adds no dependency. Series are grouped into studies by StudyInstanceUID (0020|000d);
each series' view comes from its ImageOrientationPatient (0020|0037): the slice normal, the cross product of the
row and column direction cosines, along L-R is sagittal, A-P coronal, S-I axial (``data.views``). Only the views
the caller asks for (dataset.json's) are kept; where a study has two series of one view the caller must choose
one with ``--series-uid VIEW=UID``, else ``UserInputError`` names the candidates.

Not volumes, and left out (listed in ``DicomStudy.ignored``): localizers (ImageType holds LOCALIZER) and series
whose files do not share one orientation (a three-plane scout).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from orthodiff_auto.data.image_io import ImageGeometry, image_to_array
from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.errors import UserInputError

STUDY_UID, SERIES_UID = "0020|000d", "0020|000e"
ORIENTATION, SERIES_DESCRIPTION, IMAGE_TYPE = "0020|0037", "0008|103e", "0008|0008"
_NOT_IN_CASE_ID = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True)
class DicomSeries:
    """One series as GDCM found it in one folder (files in GDCM's slice order)."""

    study_uid: str
    series_uid: str
    folder: Path
    files: tuple[Path, ...]
    description: str = ""
    view: str | None = None  # from the orientation; None: not a volume (why in ``not_a_volume``)
    not_a_volume: str = ""

    def describe(self) -> str:
        text = f" {self.description!r}" if self.description else ""
        return f"series {self.series_uid}{text} in {self.folder} ({len(self.files)} files)"


@dataclass(frozen=True)
class DicomStudy:
    case_id: str
    study_uid: str
    series: dict[str, DicomSeries]  # view -> the series used
    ignored: tuple[tuple[DicomSeries, str], ...] = field(default_factory=tuple)  # (series, why not used)


def view_from_orientation(orientation: Sequence[float]) -> str:
    """The view whose slice normal (row cosines x column cosines, DICOM's LPS axes) is closest to the normal."""
    row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    normal = np.cross(row, column)
    return {0: "sag", 1: "cor", 2: "ax"}[int(np.argmax(np.abs(normal)))]


def _header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _orientation(reader: sitk.ImageFileReader) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in _tag(reader, ORIENTATION).split("\\"))
    except ValueError:
        return None
    return values if len(values) == 6 else None


def _series_in_folder(folder: Path) -> list[DicomSeries]:
    found = []
    reader = sitk.ImageSeriesReader()
    for uid in reader.GetGDCMSeriesIDs(str(folder)):
        files = tuple(Path(f) for f in reader.GetGDCMSeriesFileNames(str(folder), uid))
        if not files:
            continue
        try:
            headers = [_header(files[i]) for i in sorted({0, len(files) // 2, len(files) - 1})]
        except RuntimeError as e:
            raise UserInputError(f"{folder}: cannot read the DICOM header of series {uid} "
                                 f"({str(e).strip().splitlines()[-1]})") from None
        first = headers[0]
        orientations = [_orientation(h) for h in headers]
        why = ""
        if "LOCALIZER" in _tag(first, IMAGE_TYPE).upper():
            why = "a localizer"
        elif orientations[0] is None:
            why = "no ImageOrientationPatient (0020|0037)"
        elif any(o is None or not np.allclose(o, orientations[0], atol=1e-3) for o in orientations[1:]):
            why = "its files have different orientations"
        found.append(DicomSeries(
            study_uid=_tag(first, STUDY_UID), series_uid=_tag(first, SERIES_UID) or uid, folder=folder,
            files=files, description=_tag(first, SERIES_DESCRIPTION),
            view=None if why else view_from_orientation(orientations[0]), not_a_volume=why))
    return found


def find_series(root: Path) -> list[DicomSeries]:
    """Every DICOM series under ``root`` (any depth), in folder order."""
    if not root.is_dir():
        raise UserInputError(f"{root}: folder of DICOM studies does not exist")
    series = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        if any(not f.startswith(".") for f in files):
            series += _series_in_folder(Path(folder))
    return series


def parse_series_choices(items: Iterable[str] | None) -> dict[str, str]:
    """``--series-uid VIEW=UID`` arguments -> {UID: VIEW}."""
    choices: dict[str, str] = {}
    for item in items or ():
        view, sep, uid = item.partition("=")
        view, uid = view.strip(), uid.strip()
        if not sep or view not in VIEWS or not uid:
            raise UserInputError(f"--series-uid {item!r}: expected VIEW=SERIES_INSTANCE_UID with VIEW one of "
                                 f"{', '.join(VIEWS)}")
        if choices.get(uid, view) != view:
            raise UserInputError(f"--series-uid: series {uid} is named for two views ({choices[uid]}, {view})")
        choices[uid] = view
    return choices


def _case_ids(root: Path, by_study: Mapping[str, list[DicomSeries]]) -> dict[str, str]:
    """Study UID -> case id: the name of the top folder under ``root`` holding the study, when it holds that study
    only (characters outside [A-Za-z0-9_.-] become _); otherwise the StudyInstanceUID."""
    tops = {uid: {s.folder.relative_to(root).parts[:1] for s in series} for uid, series in by_study.items()}
    owners: dict[tuple, list[str]] = {}
    for uid, names in tops.items():
        for name in names:
            owners.setdefault(name, []).append(uid)
    ids = {}
    for uid, names in tops.items():
        name = next(iter(names))
        usable = len(names) == 1 and name and len(owners[name]) == 1
        ids[uid] = _NOT_IN_CASE_ID.sub("_", name[0]).lstrip("._-") if usable else uid
    clashes = {c for c in ids.values() if list(ids.values()).count(c) > 1 or not c}
    return {uid: (uid if case in clashes else case) for uid, case in ids.items()}


def group_studies(root: Path, series: Sequence[DicomSeries], views: Sequence[str],
                  choices: Mapping[str, str] | None = None) -> list[DicomStudy]:
    """One ``DicomStudy`` per StudyInstanceUID holding a series of one of ``views``. ``choices`` ({series UID:
    view}, ``parse_series_choices``) picks a series where a study has several of one view, and sets that
    series' view. UserInputError when a choice names no series found, or a study has several series of one
    view and no choice among them (the message names them)."""
    choices = dict(choices or {})
    known = {s.series_uid for s in series}
    unknown = [uid for uid in choices if uid not in known]
    if unknown:
        raise UserInputError(f"--series-uid: no series {', '.join(unknown)} under {root}")
    by_study: dict[str, list[DicomSeries]] = {}
    for s in series:
        by_study.setdefault(s.study_uid, []).append(s)
    case_ids = _case_ids(root, by_study)
    studies, ambiguous = [], []
    for study_uid, members in by_study.items():
        chosen: dict[str, DicomSeries] = {}
        ignored: list[tuple[DicomSeries, str]] = []
        for view in VIEWS:
            candidates = [s for s in members if choices.get(s.series_uid, s.view) == view and
                          (s.series_uid in choices or not s.not_a_volume)]
            picked = [s for s in candidates if s.series_uid in choices] or candidates
            if view not in views:
                ignored += [(s, f"view {view} is not one of {', '.join(views)}") for s in candidates]
            elif len(picked) == 1:
                chosen[view] = picked[0]
                ignored += [(s, f"--series-uid chose {picked[0].series_uid} for {view}") for s in candidates
                            if s is not picked[0]]
            elif len(picked) > 1:
                ambiguous.append(f"study {study_uid} ({case_ids[study_uid]}) has {len(picked)} {view} series: "
                                 + "; ".join(s.describe() for s in picked))
        ignored += [(s, s.not_a_volume) for s in members if s.not_a_volume and s.series_uid not in choices]
        if chosen:
            studies.append(DicomStudy(case_ids[study_uid], study_uid, chosen, tuple(ignored)))
    if ambiguous:
        raise UserInputError(f"{root}: cannot choose a series: {' | '.join(ambiguous)}; choose one per view with "
                             "--series-uid VIEW=SERIES_UID")
    return sorted(studies, key=lambda st: st.case_id)


def find_studies(root: Path | str, views: Sequence[str], choices: Mapping[str, str] | None = None
                 ) -> list[DicomStudy]:
    """``find_series`` then ``group_studies``; UserInputError when the folder holds no series of ``views``."""
    root = Path(root)
    studies = group_studies(root, find_series(root), views, choices)
    if not studies:
        raise UserInputError(f"{root}: no DICOM series of the views {', '.join(views)} found")
    return studies


def read_series(series: DicomSeries, dtype=np.float32) -> tuple[np.ndarray, ImageGeometry]:
    """The series' volume (array in SimpleITK order, geometry), read by GDCM from its files."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise UserInputError(f"{series.folder}: cannot read {series.describe()} "
                             f"({str(e).strip().splitlines()[-1]})") from None
    return image_to_array(image, series.folder, dtype)
