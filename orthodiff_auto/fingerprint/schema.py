"""Dataset fingerprint: per-case records and per-view reductions, saved as fingerprint.json.

All spatial tuples named without ``original_`` are in each view's canonical array order (through-plane axis
first, see ``data.orientation``), the order plans and preprocessed data use. The fingerprint is a pure
function of the dataset: no paths outside the dataset, no timestamps, fixed random seeds, sorted records.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.utils.atomic import write_json_atomic

FINGERPRINT_SCHEMA_VERSION = 1


@dataclass
class IntensityStats:
    mean: float
    std: float
    median: float
    min: float
    max: float
    p005: float
    p995: float
    num_voxels: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "IntensityStats | None":
        if d is None:
            return None
        return cls(**{k: (int(d[k]) if k == "num_voxels" else float(d[k])) for k in cls.__dataclass_fields__})


@dataclass
class CaseFingerprint:
    """What one scan contributes to the fingerprint."""

    case_id: str
    view: str
    subset: str  # train | unlabeled
    labelled: bool
    image: str  # path relative to the dataset root
    orientation_code: str  # DICOM-style code of the ITK axes, e.g. LPS
    transpose: tuple[int, int, int]  # original array axis of each canonical axis
    flip: tuple[bool, bool, bool]
    original_spacing: tuple[float, float, float]  # array order
    original_shape: tuple[int, int, int]  # array order
    spacing: tuple[float, float, float]  # canonical order
    shape_before_crop: tuple[int, int, int]  # canonical order
    shape_after_crop: tuple[int, int, int]  # canonical order
    crop_bbox: tuple[tuple[int, int], ...]  # canonical order, [lo, hi)
    foreground_intensity: IntensityStats | None  # voxels with label > 0 (labelled scans with foreground)
    nonzero_intensity: IntensityStats | None  # voxels != 0 inside the crop
    label_voxels: dict[str, int] = field(default_factory=dict)  # per class name (background included)
    label_volumes_mm3: dict[str, float] = field(default_factory=dict)
    # bounding box [lo, hi) of the labelled anatomy (label > 0, ignore label excluded), canonical order, in the
    # uncropped canonical array; None for unlabelled scans or scans without foreground
    label_bbox: tuple[tuple[int, int], ...] | None = None

    @property
    def label_extent_mm(self) -> tuple[float, float, float] | None:
        """Size of ``label_bbox`` in mm per canonical axis."""
        if self.label_bbox is None:
            return None
        return tuple(float((hi - lo) * sp) for (lo, hi), sp in zip(self.label_bbox, self.spacing))

    @property
    def relative_size_after_crop(self) -> float:
        before = 1
        after = 1
        for b, a in zip(self.shape_before_crop, self.shape_after_crop):
            before *= b
            after *= a
        return after / before

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["foreground_intensity"] = self.foreground_intensity.to_dict() if self.foreground_intensity else None
        d["nonzero_intensity"] = self.nonzero_intensity.to_dict() if self.nonzero_intensity else None
        for k in ("transpose", "flip", "original_spacing", "original_shape", "spacing", "shape_before_crop",
                  "shape_after_crop"):
            d[k] = list(d[k])
        d["crop_bbox"] = [list(b) for b in self.crop_bbox]
        d["label_bbox"] = None if self.label_bbox is None else [list(b) for b in self.label_bbox]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CaseFingerprint":
        return cls(
            case_id=str(d["case_id"]),
            view=str(d["view"]),
            subset=str(d["subset"]),
            labelled=bool(d["labelled"]),
            image=str(d["image"]),
            orientation_code=str(d["orientation_code"]),
            transpose=tuple(int(v) for v in d["transpose"]),
            flip=tuple(bool(v) for v in d["flip"]),
            original_spacing=tuple(float(v) for v in d["original_spacing"]),
            original_shape=tuple(int(v) for v in d["original_shape"]),
            spacing=tuple(float(v) for v in d["spacing"]),
            shape_before_crop=tuple(int(v) for v in d["shape_before_crop"]),
            shape_after_crop=tuple(int(v) for v in d["shape_after_crop"]),
            crop_bbox=tuple((int(lo), int(hi)) for lo, hi in d["crop_bbox"]),
            foreground_intensity=IntensityStats.from_dict(d.get("foreground_intensity")),
            nonzero_intensity=IntensityStats.from_dict(d.get("nonzero_intensity")),
            label_voxels={str(k): int(v) for k, v in d.get("label_voxels", {}).items()},
            label_volumes_mm3={str(k): float(v) for k, v in d.get("label_volumes_mm3", {}).items()},
            label_bbox=None if d.get("label_bbox") is None else tuple((int(lo), int(hi)) for lo, hi in d["label_bbox"]),
        )


@dataclass
class ViewFingerprint:
    """The reduction over one view's scans. Statistics used for planning come from the ``train`` scans (all
    scans of the view when it has none); ``cases`` lists every fingerprinted scan (train and unlabeled)."""

    view: str
    num_train: int
    num_labelled: int
    num_unlabeled: int
    spacings: list[tuple[float, float, float]]  # planning scans, canonical order
    shapes_after_crop: list[tuple[int, int, int]]
    median_spacing: tuple[float, float, float]
    median_shape_after_crop: tuple[float, float, float]
    median_relative_size_after_crop: float
    foreground_intensity: IntensityStats | None
    foreground_intensity_source: str  # "labels" (label > 0) | "nonzero" (no labelled foreground in this view)
    label_volumes_mm3: dict[str, dict[str, float]]  # class -> median/mean/min/max over labelled scans, num_cases
    orientations: dict[str, int]  # orientation code -> number of scans
    findings_prevalence: dict[str, dict[str, float]]  # site ("all" first) -> {"num_cases": n, finding: prevalence}
    cases: list[CaseFingerprint]

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "num_train": self.num_train,
            "num_labelled": self.num_labelled,
            "num_unlabeled": self.num_unlabeled,
            "median_spacing": list(self.median_spacing),
            "median_shape_after_crop": list(self.median_shape_after_crop),
            "median_relative_size_after_crop": self.median_relative_size_after_crop,
            "foreground_intensity": self.foreground_intensity.to_dict() if self.foreground_intensity else None,
            "foreground_intensity_source": self.foreground_intensity_source,
            "label_volumes_mm3": self.label_volumes_mm3,
            "orientations": self.orientations,
            "findings_prevalence": self.findings_prevalence,
            "spacings": [list(s) for s in self.spacings],
            "shapes_after_crop": [list(s) for s in self.shapes_after_crop],
            "cases": [c.to_dict() for c in self.cases],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ViewFingerprint":
        return cls(
            view=str(d["view"]),
            num_train=int(d["num_train"]),
            num_labelled=int(d["num_labelled"]),
            num_unlabeled=int(d["num_unlabeled"]),
            spacings=[tuple(float(v) for v in s) for s in d["spacings"]],
            shapes_after_crop=[tuple(int(v) for v in s) for s in d["shapes_after_crop"]],
            median_spacing=tuple(float(v) for v in d["median_spacing"]),
            median_shape_after_crop=tuple(float(v) for v in d["median_shape_after_crop"]),
            median_relative_size_after_crop=float(d["median_relative_size_after_crop"]),
            foreground_intensity=IntensityStats.from_dict(d.get("foreground_intensity")),
            foreground_intensity_source=str(d.get("foreground_intensity_source", "labels")),
            label_volumes_mm3={str(k): dict(v) for k, v in d.get("label_volumes_mm3", {}).items()},
            orientations={str(k): int(v) for k, v in d.get("orientations", {}).items()},
            findings_prevalence={str(k): dict(v) for k, v in d.get("findings_prevalence", {}).items()},
            cases=[CaseFingerprint.from_dict(c) for c in d.get("cases", [])],
        )


@dataclass
class DatasetFingerprint:
    dataset_name: str
    modality: str
    labels: dict[str, int]
    ignore_label: int | None
    findings: tuple[str, ...]
    views: dict[str, ViewFingerprint]
    schema_version: int = FINGERPRINT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "dataset_name": self.dataset_name,
            "modality": self.modality,
            "labels": dict(self.labels),
            "ignore_label": self.ignore_label,
            "findings": list(self.findings),
            "views": {k: v.to_dict() for k, v in self.views.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetFingerprint":
        version = d.get("schema_version")
        if version != FINGERPRINT_SCHEMA_VERSION:
            raise ValueError(f"schema_version is {version!r}, expected {FINGERPRINT_SCHEMA_VERSION} "
                             "(re-run `orthodiff fingerprint`)")
        return cls(
            dataset_name=str(d["dataset_name"]),
            modality=str(d.get("modality", "MRI")),
            labels={str(k): int(v) for k, v in d["labels"].items()},
            ignore_label=d.get("ignore_label"),
            findings=tuple(d.get("findings", [])),
            views={str(k): ViewFingerprint.from_dict(v) for k, v in d["views"].items()},
        )

    def save(self, path: Path | str) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path | str) -> "DatasetFingerprint":
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"{path}: fingerprint not found (run `orthodiff fingerprint` first)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserInputError(f"{path}: not valid JSON ({e})") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserInputError(f"{path}: invalid fingerprint ({type(e).__name__}: {e})") from None
