"""Typed plans: frozen dataclasses, JSON with a schema version.

``Plans`` holds one ``ViewPlan`` per imaging view (sag, cor, ax). All spatial tuples (spacing, shapes, patch
sizes, kernel sizes, strides) are in *preprocessed array order*: every case is first brought into its view's
canonical orientation (see ``orthodiff_auto.data.orientation``) whose axis 0 is the through-plane
axis, then axes 1 and 2 in-plane. A plan file can be edited by hand and loaded again: ``Plans.load`` checks
the schema version and every field and raises ``UserInputError`` naming the file and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.utils.atomic import write_json_atomic

SCHEMA_VERSION = 1

Int3 = tuple[int, int, int]
Float3 = tuple[float, float, float]


class PlanError(ValueError):
    """A field of a plan is missing or invalid (turned into UserInputError naming the file by ``Plans.load``)."""


def _ints(v: Any, name: str, n: int | None = 3) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in v)
        if any(float(x) != int(x) for x in v):
            raise ValueError
    except (TypeError, ValueError):
        raise PlanError(f"{name} must be a list of integers, got {v!r}") from None
    if n is not None and len(out) != n:
        raise PlanError(f"{name} must have {n} entries, got {v!r}")
    return out


def _floats(v: Any, name: str, n: int | None = 3) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise PlanError(f"{name} must be a list of numbers, got {v!r}") from None
    if n is not None and len(out) != n:
        raise PlanError(f"{name} must have {n} entries, got {v!r}")
    if not all(math.isfinite(x) for x in out):
        raise PlanError(f"{name} must be finite, got {v!r}")
    return out


def _take(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise PlanError(f"{where} must be a JSON object, got {type(d).__name__}")
    if key not in d:
        raise PlanError(f"{where}.{key} is missing")
    return d[key]


def _known_keys(d: dict, cls: type, where: str) -> None:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise PlanError(f"{where}: unknown keys {unknown} (allowed: {sorted(allowed)})")


@dataclass(frozen=True)
class Budget:
    """What the plan was sized for.

    ``kind`` "gpu": ``memory_gb`` is the GPU memory target (nnU-Net calibration, see ``plans.memory``);
    ``kind`` "cpu": a small preset that trains in minutes on 2 CPU cores (see ``plans.planner.CPU_PRESET``);
    its ``memory_gb`` is the (small) memory-estimate target that preset searches under.
    ``source``: "user" (given with --budget), "detected" (the GPU found), "default" (8 GB, nnU-Net's target).
    """

    kind: str
    memory_gb: float
    source: str = "user"

    def __post_init__(self):
        if self.kind not in ("gpu", "cpu"):
            raise PlanError(f"budget.kind must be 'gpu' or 'cpu', got {self.kind!r}")
        if not (self.memory_gb > 0 and math.isfinite(self.memory_gb)):
            raise PlanError(f"budget.memory_gb must be > 0, got {self.memory_gb!r}")

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"gpu:{self.memory_gb:g}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Budget":
        _known_keys(d, cls, "budget")
        return cls(str(_take(d, "kind", "budget")), float(_take(d, "memory_gb", "budget")),
                   str(d.get("source", "user")))


@dataclass(frozen=True)
class ArchitectureSpec:
    """Plain keyword arguments of dna's ``PlainConvUNet`` (conv/norm/nonlin as names): enough to rebuild the
    network with ``orthodiff_auto.networks.build_segmentation_network`` / ``build_encoder``.

    ``kernel_sizes[s]`` and ``strides[s]`` are per stage and per axis; ``strides[0]`` is all ones, and
    ``strides[s]`` is the downsampling entering stage ``s``.
    """

    n_stages: int
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    n_conv_per_stage: tuple[int, ...]
    n_conv_per_stage_decoder: tuple[int, ...]
    network_class: str = "PlainConvUNet"
    conv_bias: bool = True
    norm: str = "instance"
    nonlin: str = "leaky_relu"
    conv_dim: int = 3

    def __post_init__(self):
        n = self.n_stages
        if not isinstance(n, int) or n < 1:
            raise PlanError(f"architecture.n_stages must be a positive integer, got {n!r}")
        for name, length in (("features_per_stage", n), ("kernel_sizes", n), ("strides", n), ("n_conv_per_stage", n),
                             ("n_conv_per_stage_decoder", n - 1)):
            if len(getattr(self, name)) != length:
                raise PlanError(f"architecture.{name} must have {length} entries (n_stages={n}), "
                                f"got {len(getattr(self, name))}")
        for s, (k, st) in enumerate(zip(self.kernel_sizes, self.strides)):
            if len(k) != self.conv_dim or len(st) != self.conv_dim:
                raise PlanError(f"architecture stage {s}: kernel {k} / stride {st} must have {self.conv_dim} entries")
            if any(x < 1 or x % 2 == 0 for x in k):
                raise PlanError(f"architecture stage {s}: kernel sizes must be odd and >= 1, got {k}")
            if any(x < 1 for x in st):
                raise PlanError(f"architecture stage {s}: strides must be >= 1, got {st}")
        if any(f < 1 for f in self.features_per_stage):
            raise PlanError(f"architecture.features_per_stage must be positive, got {self.features_per_stage}")

    @property
    def pooling_per_axis(self) -> tuple[int, ...]:
        """How many times each axis is downsampled (by 2) through the encoder."""
        return tuple(sum(1 for st in self.strides if st[a] > 1) for a in range(self.conv_dim))

    @property
    def shape_divisor(self) -> tuple[int, ...]:
        """Every input size must be a multiple of this, per axis (product of the strides)."""
        return tuple(math.prod(st[a] for st in self.strides) for a in range(self.conv_dim))

    def to_dict(self) -> dict[str, Any]:
        return {
            "network_class": self.network_class,
            "n_stages": self.n_stages,
            "features_per_stage": list(self.features_per_stage),
            "kernel_sizes": [list(k) for k in self.kernel_sizes],
            "strides": [list(s) for s in self.strides],
            "n_conv_per_stage": list(self.n_conv_per_stage),
            "n_conv_per_stage_decoder": list(self.n_conv_per_stage_decoder),
            "conv_bias": self.conv_bias,
            "norm": self.norm,
            "nonlin": self.nonlin,
            "conv_dim": self.conv_dim,
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "architecture") -> "ArchitectureSpec":
        _known_keys(d, cls, where)
        dim = int(d.get("conv_dim", 3))
        return cls(
            network_class=str(d.get("network_class", "PlainConvUNet")),
            n_stages=int(_take(d, "n_stages", where)),
            features_per_stage=_ints(_take(d, "features_per_stage", where), f"{where}.features_per_stage", None),
            kernel_sizes=tuple(_ints(k, f"{where}.kernel_sizes", dim) for k in _take(d, "kernel_sizes", where)),
            strides=tuple(_ints(s, f"{where}.strides", dim) for s in _take(d, "strides", where)),
            n_conv_per_stage=_ints(_take(d, "n_conv_per_stage", where), f"{where}.n_conv_per_stage", None),
            n_conv_per_stage_decoder=_ints(_take(d, "n_conv_per_stage_decoder", where),
                                           f"{where}.n_conv_per_stage_decoder", None),
            conv_bias=bool(d.get("conv_bias", True)),
            norm=str(d.get("norm", "instance")),
            nonlin=str(d.get("nonlin", "leaky_relu")),
            conv_dim=dim,
        )


def _check_divisible(size: tuple[int, ...], arch: ArchitectureSpec, what: str) -> None:
    div = arch.shape_divisor
    if any(s < 1 or s % d for s, d in zip(size, div)):
        raise PlanError(f"{what} {list(size)} must be a positive multiple of the network's divisor {list(div)} "
                        "per axis")


@dataclass(frozen=True)
class NormalizationPlan:
    """Intensity normalisation.

    scheme "zscore" (MRI and anything not CT): each image separately, ``(x - mean) / std`` with mean/std of the
    image itself, computed over its non-zero region (holes filled) when ``use_mask_for_norm``, else over the
    whole (cropped) image; outside the mask the result is 0.
    scheme "ct": clip to the dataset's foreground [p005, p995], then ``(x - mean) / std`` with the dataset's
    foreground mean/std (the fields below). For "zscore" those fields are recorded for reference only.
    """

    scheme: str
    use_mask_for_norm: bool
    mean: float
    std: float
    p005: float
    p995: float

    def __post_init__(self):
        if self.scheme not in ("zscore", "ct"):
            raise PlanError(f"normalization.scheme must be 'zscore' or 'ct', got {self.scheme!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "normalization") -> "NormalizationPlan":
        _known_keys(d, cls, where)
        return cls(
            scheme=str(_take(d, "scheme", where)),
            use_mask_for_norm=bool(_take(d, "use_mask_for_norm", where)),
            **{k: float(_take(d, k, where)) for k in ("mean", "std", "p005", "p995")},
        )


@dataclass(frozen=True)
class ResamplingPlan:
    """Interpolation orders (0 nearest, 1 linear, 3 cubic), as nnU-Net's defaults.

    Images use ``image_order``; label maps are resampled one-hot with ``label_order`` (1: each class' mask is
    interpolated linearly, the voxel takes the class with the largest weight); network probabilities going back
    to the original geometry use ``probabilities_order``. When ``separate_through_plane`` is true and the source
    or target spacing is anisotropic (largest/smallest > ``anisotropy_threshold``), the coarse axis is resampled
    separately with ``through_plane_order`` (0: nearest, never blending thick slices).
    """

    image_order: int = 3
    label_order: int = 1
    probabilities_order: int = 1
    separate_through_plane: bool = True
    through_plane_order: int = 0
    anisotropy_threshold: float = 3.0

    def __post_init__(self):
        for name in ("image_order", "label_order", "probabilities_order", "through_plane_order"):
            if getattr(self, name) not in (0, 1, 3):
                raise PlanError(f"resampling.{name} must be 0, 1 or 3, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "resampling") -> "ResamplingPlan":
        _known_keys(d, cls, where)
        defaults = cls()
        kw: dict[str, Any] = {}
        for name in ("image_order", "label_order", "probabilities_order", "through_plane_order"):
            v = d.get(name, getattr(defaults, name))
            if isinstance(v, bool) or not isinstance(v, int):
                raise PlanError(f"{where}.{name} must be 0, 1 or 3, got {v!r}")
            kw[name] = v
        kw["separate_through_plane"] = bool(d.get("separate_through_plane", defaults.separate_through_plane))
        kw["anisotropy_threshold"] = float(d.get("anisotropy_threshold", defaults.anisotropy_threshold))
        return cls(**kw)


@dataclass(frozen=True)
class SegmentationPlan:
    """Patch-based U-Net training: ``patch_size`` voxels at the view's target spacing, ``batch_size`` patches."""

    patch_size: Int3
    batch_size: int
    architecture: ArchitectureSpec
    num_classes: int
    memory_estimate_gb: float
    deep_supervision: bool = True

    def __post_init__(self):
        _check_divisible(self.patch_size, self.architecture, "segmentation.patch_size")
        if self.batch_size < 1:
            raise PlanError(f"segmentation.batch_size must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "patch_size": list(self.patch_size),
            "batch_size": self.batch_size,
            "num_classes": self.num_classes,
            "deep_supervision": self.deep_supervision,
            "memory_estimate_gb": self.memory_estimate_gb,
            "architecture": self.architecture.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "segmentation") -> "SegmentationPlan":
        _known_keys(d, cls, where)
        return cls(
            patch_size=_ints(_take(d, "patch_size", where), f"{where}.patch_size"),
            batch_size=int(_take(d, "batch_size", where)),
            architecture=ArchitectureSpec.from_dict(_take(d, "architecture", where), f"{where}.architecture"),
            num_classes=int(_take(d, "num_classes", where)),
            memory_estimate_gb=float(d.get("memory_estimate_gb", 0.0)),
            deep_supervision=bool(d.get("deep_supervision", True)),
        )


@dataclass(frozen=True)
class ClassificationPlan:
    """Whole-field-of-view classification (one logit per finding).

    The classifier sees each case's cropped field of view resampled to ``spacing`` (equal to the view's target
    spacing, or coarser when the whole field of view would not fit the budget), padded or center-cropped to
    ``input_size``. Its encoder is ``architecture`` (the segmentation encoder's, so pretrained weights transfer
    one-to-one) followed by global average pooling and a linear head.
    """

    spacing: Float3
    input_size: Int3
    batch_size: int
    architecture: ArchitectureSpec
    num_findings: int
    memory_estimate_gb: float

    def __post_init__(self):
        _check_divisible(self.input_size, self.architecture, "classification.input_size")
        if any(s <= 0 for s in self.spacing):
            raise PlanError(f"classification.spacing must be positive, got {self.spacing}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "spacing": list(self.spacing),
            "input_size": list(self.input_size),
            "batch_size": self.batch_size,
            "num_findings": self.num_findings,
            "memory_estimate_gb": self.memory_estimate_gb,
            "architecture": self.architecture.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "classification") -> "ClassificationPlan":
        _known_keys(d, cls, where)
        return cls(
            spacing=_floats(_take(d, "spacing", where), f"{where}.spacing"),
            input_size=_ints(_take(d, "input_size", where), f"{where}.input_size"),
            batch_size=int(_take(d, "batch_size", where)),
            architecture=ArchitectureSpec.from_dict(_take(d, "architecture", where), f"{where}.architecture"),
            num_findings=int(d.get("num_findings", 0)),
            memory_estimate_gb=float(d.get("memory_estimate_gb", 0.0)),
        )


@dataclass(frozen=True)
class DiffusionPlan:
    """Self-supervised denoising-diffusion pretraining of the shared encoder.

    The denoiser is the segmentation U-Net topology with one output channel (the predicted noise for
    ``prediction="epsilon"``), trained on ``patch_size`` patches at the target spacing of every preprocessed
    scan (labelled or not), ``timesteps`` steps of a ``schedule`` ("cosine" or "linear") noise schedule.
    """

    patch_size: Int3
    batch_size: int
    memory_estimate_gb: float
    timesteps: int = 1000
    schedule: str = "cosine"
    prediction: str = "epsilon"

    def __post_init__(self):
        if self.schedule not in ("cosine", "linear"):
            raise PlanError(f"diffusion.schedule must be 'cosine' or 'linear', got {self.schedule!r}")
        if self.prediction not in ("epsilon", "v", "x0"):
            raise PlanError(f"diffusion.prediction must be 'epsilon', 'v' or 'x0', got {self.prediction!r}")
        if self.timesteps < 1:
            raise PlanError(f"diffusion.timesteps must be >= 1, got {self.timesteps}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "diffusion") -> "DiffusionPlan":
        _known_keys(d, cls, where)
        return cls(
            patch_size=_ints(_take(d, "patch_size", where), f"{where}.patch_size"),
            batch_size=int(_take(d, "batch_size", where)),
            memory_estimate_gb=float(d.get("memory_estimate_gb", 0.0)),
            timesteps=int(d.get("timesteps", 1000)),
            schedule=str(d.get("schedule", "cosine")),
            prediction=str(d.get("prediction", "epsilon")),
        )


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

    def __post_init__(self):
        if any(s <= 0 for s in self.target_spacing):
            raise PlanError(f"views.{self.view}.target_spacing must be positive, got {self.target_spacing}")
        _check_divisible(self.diffusion.patch_size, self.segmentation.architecture, "diffusion.patch_size")

    @property
    def preprocessing_key(self) -> dict[str, Any]:
        """The fields that decide what preprocessing writes (a change of any of them makes cases out of date)."""
        return {
            "target_spacing": list(self.target_spacing),
            "normalization": self.normalization.to_dict(),
            "resampling": self.resampling.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
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

    @classmethod
    def from_dict(cls, d: dict, where: str = "view") -> "ViewPlan":
        _known_keys(d, cls, where)
        return cls(
            view=str(_take(d, "view", where)),
            target_spacing=_floats(_take(d, "target_spacing", where), f"{where}.target_spacing"),
            through_plane_axis=int(d.get("through_plane_axis", 0)),
            normalization=NormalizationPlan.from_dict(_take(d, "normalization", where), f"{where}.normalization"),
            resampling=ResamplingPlan.from_dict(d.get("resampling", {}), f"{where}.resampling"),
            median_shape_after_resampling=_ints(_take(d, "median_shape_after_resampling", where),
                                                f"{where}.median_shape_after_resampling"),
            num_training_cases=int(d.get("num_training_cases", 0)),
            segmentation=SegmentationPlan.from_dict(_take(d, "segmentation", where), f"{where}.segmentation"),
            classification=ClassificationPlan.from_dict(_take(d, "classification", where), f"{where}.classification"),
            diffusion=DiffusionPlan.from_dict(_take(d, "diffusion", where), f"{where}.diffusion"),
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
        _known_keys(d, cls, "plans")
        labels = _take(d, "labels", "plans")
        if not isinstance(labels, dict) or not all(isinstance(v, int) for v in labels.values()):
            raise PlanError(f"labels must map names to integers, got {labels!r}")
        views = _take(d, "views", "plans")
        if not isinstance(views, dict) or not views:
            raise PlanError("views must be a non-empty object")
        ignore = d.get("ignore_label")
        return cls(
            schema_version=int(version),
            planner=str(d.get("planner", "orthodiff_auto.plans.planner")),
            dataset_name=str(_take(d, "dataset_name", "plans")),
            modality=str(d.get("modality", "MRI")),
            budget=Budget.from_dict(_take(d, "budget", "plans")),
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
