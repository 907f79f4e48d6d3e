"""Typed plans: frozen dataclasses, JSON with a schema version.

``Plans`` holds one ``ViewPlan`` per imaging view (sag, cor, ax). All spatial tuples (spacing, shapes, patch
sizes, kernel sizes, strides) are in *preprocessed array order*: every case is first brought into its view's
canonical orientation (see ``orthodiff_auto.data.orientation``) whose axis 0 is the through-plane
axis, then axes 1 and 2 in-plane. A plan file can be edited by hand and loaded again: ``Plans.load`` checks
the schema version and every field and raises ``UserInputError`` naming the file and the field.

This module holds ``Plans`` and ``ViewPlan``; the sub-plans they are made of live in ``plans.subplans`` and
the network architecture in ``networks.spec`` (networks come before plans in the stage order). All of them
are importable from here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orthodiff_auto.data.label_values import label_values
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.plans.subplans import (
    CONFIGURATIONS,
    DEFAULT_CONFIGURATION,
    Budget,
    ClassificationPlan,
    ConfigurationPlan,
    DiffusionPlan,
    Float3,
    Int3,
    NormalizationPlan,
    ResamplingPlan,
    SegmentationPlan,
    check_divisible,
)
from orthodiff_auto.utils.atomic import write_json_atomic
from orthodiff_auto.utils.fields import FieldError, check_known_keys, floats, ints, take

SCHEMA_VERSION = 2  # 2: classification plans with their own region of interest and spacing

#: a field of a plan is missing or invalid (``Plans.load`` turns it into a UserInputError naming the file)
PlanError = FieldError


@dataclass(frozen=True)
class AdaptedFrom:
    """Where a view's adopted architecture, normalisation and target spacing came from (``plans.adaptation``):
    a pretrained encoder, its file's SHA-256, the view and the dataset it was pretrained on."""

    encoder: str
    sha256: str
    view: str
    dataset_name: str

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "sha256": self.sha256, "view": self.view, "dataset_name": self.dataset_name}

    @classmethod
    def from_dict(cls, d: dict, where: str = "adapted_from") -> "AdaptedFrom":
        check_known_keys(d, cls, where)
        return cls(*(str(take(d, key, where)) for key in ("encoder", "sha256", "view", "dataset_name")))


@dataclass(frozen=True)
class ViewPlan:
    """Everything planned for one view. ``through_plane_axis`` is the preprocessed array axis across slices
    (0 by construction of the canonical orientation)."""

    view: str
    target_spacing: Float3
    through_plane_axis: int
    normalization: NormalizationPlan
    resampling: ResamplingPlan
    median_shape_after_resampling: Int3
    num_training_cases: int
    segmentation: SegmentationPlan
    classification: ClassificationPlan
    diffusion: DiffusionPlan
    adapted_from: AdaptedFrom | None = None  # planned like a pretrained encoder (plans.adaptation)
    # the view's further segmentation configurations ("2d", "3d_lowres", "3d_cascade_fullres"); the view's own
    # segmentation plan is "3d_fullres"
    configurations: dict[str, ConfigurationPlan] = field(default_factory=dict)

    def __post_init__(self):
        if any(s <= 0 for s in self.target_spacing):
            raise PlanError(f"views.{self.view}.target_spacing must be positive, got {self.target_spacing}")
        check_divisible(self.diffusion.patch_size, self.segmentation.architecture, "diffusion.patch_size")
        for name, cfg in self.configurations.items():
            if name not in CONFIGURATIONS or name == DEFAULT_CONFIGURATION:
                raise PlanError(f"views.{self.view}.configurations: {name!r} is not one of "
                                f"{[c for c in CONFIGURATIONS if c != DEFAULT_CONFIGURATION]}")
            if cfg.previous_stage is not None and cfg.previous_stage not in self.configurations:
                raise PlanError(f"views.{self.view}.configurations.{name}.previous_stage {cfg.previous_stage!r} is "
                                "not planned")

    @property
    def configuration_names(self) -> tuple[str, ...]:
        """Every segmentation configuration planned for the view, in nnU-Net's order."""
        return tuple(c for c in CONFIGURATIONS if c == DEFAULT_CONFIGURATION or c in self.configurations)

    def configuration(self, name: str = DEFAULT_CONFIGURATION) -> ConfigurationPlan:
        """The plan of configuration ``name`` ("3d_fullres": the view's own segmentation plan); UserInputError
        naming the planned ones when it is not planned."""
        if name == DEFAULT_CONFIGURATION:
            return ConfigurationPlan(self.target_spacing, self.median_shape_after_resampling, self.segmentation,
                                     self.view)
        try:
            return self.configurations[name]
        except KeyError:
            raise UserInputError(f"configuration {name!r} is not planned for view {self.view!r}; planned: "
                                 f"{list(self.configuration_names)}") from None

    def for_configuration(self, name: str = DEFAULT_CONFIGURATION) -> "ViewPlan":
        """This view's plan as configuration ``name`` sees it: its spacing, median shape and segmentation plan in
        place of the view's (what preprocessing, training and prediction of that configuration read)."""
        if name == DEFAULT_CONFIGURATION:
            return self
        cfg = self.configuration(name)
        return replace(self, target_spacing=cfg.target_spacing,
                       median_shape_after_resampling=cfg.median_shape_after_resampling, segmentation=cfg.segmentation,
                       diffusion=replace(self.diffusion, patch_size=cfg.segmentation.patch_size), configurations={})

    def input_channels(self, name: str = DEFAULT_CONFIGURATION, num_classes: int | None = None) -> int:
        """The segmentation network's input channels of configuration ``name``: the image, plus one channel per
        foreground class of the previous stage's prediction in a cascade's second stage."""
        previous = self.configuration(name).previous_stage
        n = self.segmentation.num_classes if num_classes is None else num_classes
        return 1 if previous is None else 1 + (n - 1)

    @property
    def preprocessing_key(self) -> dict[str, Any]:
        """The fields that decide what preprocessing writes (a change of any of them makes cases out of date)."""
        return {
            "target_spacing": list(self.target_spacing),
            "normalization": self.normalization.to_dict(),
            "resampling": self.resampling.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        out = {
            "view": self.view,
            "target_spacing": list(self.target_spacing),
            "through_plane_axis": self.through_plane_axis,
            "median_shape_after_resampling": list(self.median_shape_after_resampling),
            "num_training_cases": self.num_training_cases,
            "normalization": self.normalization.to_dict(),
            "resampling": self.resampling.to_dict(),
            "segmentation": self.segmentation.to_dict(),
            "classification": self.classification.to_dict(),
            "diffusion": self.diffusion.to_dict(),
        }
        if self.adapted_from is not None:  # only adapted plans carry it: other plans files stay as they were
            out["adapted_from"] = self.adapted_from.to_dict()
        if self.configurations:
            out["configurations"] = {k: v.to_dict() for k, v in self.configurations.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "view") -> "ViewPlan":
        check_known_keys(d, cls, where)
        return cls(
            view=str(take(d, "view", where)),
            target_spacing=floats(take(d, "target_spacing", where), f"{where}.target_spacing"),
            through_plane_axis=int(d.get("through_plane_axis", 0)),
            normalization=NormalizationPlan.from_dict(take(d, "normalization", where), f"{where}.normalization"),
            resampling=ResamplingPlan.from_dict(d.get("resampling", {}), f"{where}.resampling"),
            median_shape_after_resampling=ints(take(d, "median_shape_after_resampling", where),
                                                f"{where}.median_shape_after_resampling"),
            num_training_cases=int(d.get("num_training_cases", 0)),
            segmentation=SegmentationPlan.from_dict(take(d, "segmentation", where), f"{where}.segmentation"),
            classification=ClassificationPlan.from_dict(take(d, "classification", where), f"{where}.classification"),
            diffusion=DiffusionPlan.from_dict(take(d, "diffusion", where), f"{where}.diffusion"),
            adapted_from=(AdaptedFrom.from_dict(d["adapted_from"], f"{where}.adapted_from")
                          if d.get("adapted_from") is not None else None),
            configurations={str(k): ConfigurationPlan.from_dict(v, f"{where}.configurations.{k}")
                            for k, v in (d.get("configurations") or {}).items()},
        )


@dataclass(frozen=True)
class Plans:
    """The plans for a dataset: one ``ViewPlan`` per view present in its training (or unlabeled) scans."""

    dataset_name: str
    modality: str
    budget: Budget
    labels: dict[str, int]
    ignore_label: int | None
    findings: tuple[str, ...]
    views: dict[str, ViewPlan]
    schema_version: int = SCHEMA_VERSION
    planner: str = "orthodiff_auto.plans.planner"

    def __post_init__(self):
        for name, vp in self.views.items():
            if vp.view != name:
                raise PlanError(f"views.{name}.view says {vp.view!r}")

    @property
    def num_classes(self) -> int:
        """Segmentation output channels: every declared label (background included), not the ignore label."""
        return len(self.labels)

    @property
    def label_values(self) -> tuple[int, ...]:
        """The declared label value of each output channel (ascending; ``data.label_values``): preprocessed
        label arrays hold the channel index, predictions are written with these values."""
        return label_values(self.labels)

    def view(self, view: str) -> ViewPlan:
        try:
            return self.views[view]
        except KeyError:
            raise UserInputError(f"no plan for view {view!r}; planned views: {list(self.views)}") from None

    def replace_view(self, view_plan: ViewPlan) -> "Plans":
        """A copy with ``view_plan`` in place of the plan of its view."""
        views = dict(self.views)
        views[view_plan.view] = view_plan
        return replace(self, views=views)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "planner": self.planner,
            "dataset_name": self.dataset_name,
            "modality": self.modality,
            "budget": self.budget.to_dict(),
            "labels": dict(self.labels),
            "ignore_label": self.ignore_label,
            "findings": list(self.findings),
            "views": {k: v.to_dict() for k, v in self.views.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Plans":
        if not isinstance(d, dict):
            raise PlanError("plans must be a JSON object")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise PlanError(f"schema_version is {version!r}, this orthodiff_auto reads version {SCHEMA_VERSION} "
                            "(re-run `orthodiff plan`)")
        check_known_keys(d, cls, "plans")
        labels = take(d, "labels", "plans")
        if not isinstance(labels, dict) or not all(isinstance(v, int) for v in labels.values()):
            raise PlanError(f"labels must map names to integers, got {labels!r}")
        views = take(d, "views", "plans")
        if not isinstance(views, dict) or not views:
            raise PlanError("views must be a non-empty object")
        ignore = d.get("ignore_label")
        return cls(
            schema_version=int(version),
            planner=str(d.get("planner", "orthodiff_auto.plans.planner")),
            dataset_name=str(take(d, "dataset_name", "plans")),
            modality=str(d.get("modality", "MRI")),
            budget=Budget.from_dict(take(d, "budget", "plans")),
            labels={str(k): int(v) for k, v in labels.items()},
            ignore_label=None if ignore is None else int(ignore),
            findings=tuple(str(f) for f in d.get("findings", [])),
            views={str(k): ViewPlan.from_dict(v, f"views.{k}") for k, v in views.items()},
        )

    def save(self, path: Path | str) -> None:
        """Write JSON atomically (temporary file, then rename)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path | str) -> "Plans":
        """Read a plans file; UserInputError naming the file when it is missing, malformed, of another schema
        version, or has an invalid field."""
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"{path}: plans file not found (run `orthodiff plan` first)")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserInputError(f"{path}: not valid JSON ({e})") from None
        try:
            return cls.from_dict(raw)
        except (PlanError, KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"{path}: invalid plans: {e}") from None


__all__ = [
    "CONFIGURATIONS", "DEFAULT_CONFIGURATION", "ConfigurationPlan",
    "SCHEMA_VERSION", "AdaptedFrom", "ArchitectureSpec", "Budget", "ClassificationPlan", "DiffusionPlan", "Float3",
    "Int3", "NormalizationPlan", "PlanError", "Plans", "ResamplingPlan", "SegmentationPlan", "ViewPlan",
]
