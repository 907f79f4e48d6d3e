"""Per-case properties stored beside each preprocessed case (``<view>/<case>.json``).

They hold everything needed to map network output back onto the original image exactly
(``revert_to_original``) and everything the data loader needs (foreground locations for oversampling).
Spatial fields other than ``original_geometry`` are in the view's canonical array order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.data.orientation import Orientation
from orthodiff_auto.utils.atomic import write_text_atomic

PROPERTIES_SCHEMA_VERSION = 1
# The resampling code's numerics (issue 26: nnU-Net's B-spline and label rule replaced Keys cubic convolution):
# part of every case's key, so cases preprocessed by earlier code are preprocessed again, not reused.
RESAMPLING_NUMERICS = "nnunet-v2"


def preprocessing_key(view_plan_key: dict[str, Any]) -> str:
    """Short hash of the plan fields that decide preprocessing output (``ViewPlan.preprocessing_key``) and of
    the resampling code's numerics."""
    text = json.dumps({"v": PROPERTIES_SCHEMA_VERSION, "resampling_numerics": RESAMPLING_NUMERICS, **view_plan_key},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_signature(path: Path | str | None) -> dict[str, Any] | None:
    """Size and modification time of a source file (what the up-to-date check compares)."""
    if path is None:
        return None
    st = Path(path).stat()
    return {"name": Path(path).name, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


@dataclass(frozen=True)
class CaseProperties:
    """Properties of one preprocessed case.

    ``crop_bbox`` ([lo, hi) per axis) and ``shape_before_cropping`` refer to the image after reorientation
    (``orientation``); ``spacing`` is the original spacing in canonical order. ``class_locations`` maps each
    foreground label value to an (N, 3) int array of voxel indices into the preprocessed array (N capped);
    ``class_voxel_counts`` to its full number of voxels (empty in data preprocessed before it was stored).
    """

    case_id: str
    view: str
    subset: str | None
    original_geometry: ImageGeometry
    orientation: Orientation
    shape_before_cropping: tuple[int, int, int]
    crop_bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    shape_after_cropping: tuple[int, int, int]
    spacing: tuple[float, float, float]
    spacing_after_resampling: tuple[float, float, float]
    shape_after_resampling: tuple[int, int, int]
    normalization: dict[str, float]
    has_seg: bool
    class_locations: dict[int, np.ndarray] = field(default_factory=dict)
    class_voxel_counts: dict[int, int] = field(default_factory=dict)
    preprocessing_key: str = ""
    source: dict[str, Any] | None = None
    schema_version: int = PROPERTIES_SCHEMA_VERSION

    def with_source(self, case_id: str, subset: str, source: dict[str, Any], key: str) -> "CaseProperties":
        return replace(self, case_id=case_id, subset=subset, source=source, preprocessing_key=key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "case_id": self.case_id,
            "view": self.view,
            "subset": self.subset,
            "original_geometry": self.original_geometry.to_dict(),
            "orientation": self.orientation.to_dict(),
            "shape_before_cropping": list(self.shape_before_cropping),
            "crop_bbox": [list(b) for b in self.crop_bbox],
            "shape_after_cropping": list(self.shape_after_cropping),
            "spacing": list(self.spacing),
            "spacing_after_resampling": list(self.spacing_after_resampling),
            "shape_after_resampling": list(self.shape_after_resampling),
            "normalization": dict(self.normalization),
            "has_seg": self.has_seg,
            "preprocessing_key": self.preprocessing_key,
            "source": self.source,
            "class_locations": {str(k): np.asarray(v).tolist() for k, v in self.class_locations.items()},
            "class_voxel_counts": {str(k): int(v) for k, v in self.class_voxel_counts.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CaseProperties":
        return cls(
            schema_version=int(d["schema_version"]),
            case_id=str(d["case_id"]),
            view=str(d["view"]),
            subset=d.get("subset"),
            original_geometry=ImageGeometry.from_dict(d["original_geometry"]),
            orientation=Orientation.from_dict(d["orientation"]),
            shape_before_cropping=tuple(int(v) for v in d["shape_before_cropping"]),
            crop_bbox=tuple((int(lo), int(hi)) for lo, hi in d["crop_bbox"]),
            shape_after_cropping=tuple(int(v) for v in d["shape_after_cropping"]),
            spacing=tuple(float(v) for v in d["spacing"]),
            spacing_after_resampling=tuple(float(v) for v in d["spacing_after_resampling"]),
            shape_after_resampling=tuple(int(v) for v in d["shape_after_resampling"]),
            normalization={k: float(v) for k, v in d.get("normalization", {}).items()},
            has_seg=bool(d["has_seg"]),
            preprocessing_key=str(d.get("preprocessing_key", "")),
            source=d.get("source"),
            class_locations={int(k): np.asarray(v, dtype=np.int32).reshape(-1, 3)
                             for k, v in d.get("class_locations", {}).items()},
            class_voxel_counts={int(k): int(v) for k, v in d.get("class_voxel_counts", {}).items()},
        )

    def save(self, path: Path | str) -> None:
        """Atomic write; one line per top-level key (foreground locations stay compact)."""
        d = self.to_dict()
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in d.items())
        write_text_atomic(path, "{\n" + body + "\n}\n")

    @classmethod
    def load(cls, path: Path | str) -> "CaseProperties":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            if d.get("schema_version") != PROPERTIES_SCHEMA_VERSION:
                raise ValueError(f"schema_version {d.get('schema_version')!r}, expected {PROPERTIES_SCHEMA_VERSION}")
            return cls.from_dict(d)
        except FileNotFoundError:
            raise UserInputError(f"{path}: case properties not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"{path}: invalid case properties ({e})") from None
