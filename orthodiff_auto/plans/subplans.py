"""The parts of a view's plan: budget, normalisation, resampling, and the segmentation, classification and
diffusion sub-plans (frozen dataclasses with ``to_dict`` / ``from_dict``; ``plans.schema`` assembles them).

All spatial tuples are in preprocessed array order (see ``plans.schema``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.utils.fields import FieldError, check_known_keys, floats, ints, take

Int3 = tuple[int, int, int]
Float3 = tuple[float, float, float]


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
            raise FieldError(f"budget.kind must be 'gpu' or 'cpu', got {self.kind!r}")
        if not (self.memory_gb > 0 and math.isfinite(self.memory_gb)):
            raise FieldError(f"budget.memory_gb must be > 0, got {self.memory_gb!r}")

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"gpu:{self.memory_gb:g}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Budget":
        check_known_keys(d, cls, "budget")
        return cls(str(take(d, "kind", "budget")), float(take(d, "memory_gb", "budget")),
                   str(d.get("source", "user")))


def check_divisible(size: tuple[int, ...], arch: ArchitectureSpec, what: str) -> None:
    div = arch.shape_divisor
    if any(s < 1 or s % d for s, d in zip(size, div)):
        raise FieldError(f"{what} {list(size)} must be a positive multiple of the network's divisor {list(div)} "
                        "per axis")


NORMALIZATION_SCHEMES = ("zscore", "ct", "range")


@dataclass(frozen=True)
class NormalizationPlan:
    """Intensity normalisation.

    scheme "zscore" (MRI and anything not CT): each image separately, ``(x - mean) / std`` with mean/std of the
    image itself, computed over its non-zero region (holes filled) when ``use_mask_for_norm``, else over the
    whole (cropped) image; outside the mask the result is 0.
    scheme "ct": clip to the dataset's foreground [p005, p995], then ``(x - mean) / std`` with the dataset's
    foreground mean/std (the fields below). For "zscore" those fields are recorded for reference only.
    scheme "range": each image separately scaled linearly from its [min, max] to [-1, 1] (the OrthoDiffusion
    authors' input; a plan adopts it from their imported weights, ``diffusion.orthodiffusion_import``).
    """

    scheme: str
    use_mask_for_norm: bool
    mean: float
    std: float
    p005: float
    p995: float

    def __post_init__(self):
        if self.scheme not in NORMALIZATION_SCHEMES:
            raise FieldError(f"normalization.scheme must be one of {list(NORMALIZATION_SCHEMES)}, got {self.scheme!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "normalization") -> "NormalizationPlan":
        check_known_keys(d, cls, where)
        return cls(
            scheme=str(take(d, "scheme", where)),
            use_mask_for_norm=bool(take(d, "use_mask_for_norm", where)),
            **{k: float(take(d, k, where)) for k in ("mean", "std", "p005", "p995")},
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
                raise FieldError(f"resampling.{name} must be 0, 1 or 3, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "resampling") -> "ResamplingPlan":
        check_known_keys(d, cls, where)
        defaults = cls()
        kw: dict[str, Any] = {}
        for name in ("image_order", "label_order", "probabilities_order", "through_plane_order"):
            v = d.get(name, getattr(defaults, name))
            if isinstance(v, bool) or not isinstance(v, int):
                raise FieldError(f"{where}.{name} must be 0, 1 or 3, got {v!r}")
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
        check_divisible(self.patch_size, self.architecture, "segmentation.patch_size")
        if self.batch_size < 1:
            raise FieldError(f"segmentation.batch_size must be >= 1, got {self.batch_size}")

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
        check_known_keys(d, cls, where)
        return cls(
            patch_size=ints(take(d, "patch_size", where), f"{where}.patch_size"),
            batch_size=int(take(d, "batch_size", where)),
            architecture=ArchitectureSpec.from_dict(take(d, "architecture", where), f"{where}.architecture"),
            num_classes=int(take(d, "num_classes", where)),
            memory_estimate_gb=float(d.get("memory_estimate_gb", 0.0)),
            deep_supervision=bool(d.get("deep_supervision", True)),
        )


#: nnU-Net's segmentation configurations. "3d_fullres" is the view's own plan (``ViewPlan.segmentation`` at
#: ``ViewPlan.target_spacing``); the others are ``ViewPlan.configurations`` when the planner's rules create them.
DEFAULT_CONFIGURATION = "3d_fullres"
CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")


@dataclass(frozen=True)
class ConfigurationPlan:
    """A further segmentation configuration of a view (nnU-Net's ``2d``, ``3d_lowres``, ``3d_cascade_fullres``).

    ``segmentation`` is trained on the cases preprocessed at ``target_spacing`` into the folder
    ``data_identifier`` below the preprocessed folder (the view's own folder when the spacing is the view's).
    ``previous_stage``: the configuration whose prediction (one-hot, every foreground class) is given to this
    one as extra input channels (the cascade's second stage); its network then has ``1 + num_classes - 1`` input
    channels. A ``2d`` plan has a patch of one slice along the through-plane axis and kernels and strides of 1
    there: the 3D network then computes exactly a 2D U-Net on each slice.
    """

    target_spacing: Float3
    median_shape_after_resampling: Int3
    segmentation: SegmentationPlan
    data_identifier: str
    previous_stage: str | None = None

    def __post_init__(self):
        if any(s <= 0 for s in self.target_spacing):
            raise FieldError(f"target_spacing must be positive, got {self.target_spacing}")
        if self.previous_stage is not None and self.previous_stage not in CONFIGURATIONS:
            raise FieldError(f"previous_stage must be one of {list(CONFIGURATIONS)}, got {self.previous_stage!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_spacing": list(self.target_spacing),
            "median_shape_after_resampling": list(self.median_shape_after_resampling),
            "data_identifier": self.data_identifier,
            "previous_stage": self.previous_stage,
            "segmentation": self.segmentation.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "configuration") -> "ConfigurationPlan":
        check_known_keys(d, cls, where)
        previous = d.get("previous_stage")
        return cls(
            target_spacing=floats(take(d, "target_spacing", where), f"{where}.target_spacing"),
            median_shape_after_resampling=ints(take(d, "median_shape_after_resampling", where),
                                               f"{where}.median_shape_after_resampling"),
            segmentation=SegmentationPlan.from_dict(take(d, "segmentation", where), f"{where}.segmentation"),
            data_identifier=str(take(d, "data_identifier", where)),
            previous_stage=None if previous is None else str(previous),
        )


ROI_SOURCES = ("labels", "field_of_view")


@dataclass(frozen=True)
class ClassificationPlan:
    """What a view's classifier reads: a region of interest at a diagnostic spacing (one logit per finding).

    The region is a box of ``roi_size_mm`` (canonical axis order) centred on the case's labelled anatomy
    (``roi_source`` "labels": the reference labels' bounding box when training, the predicted segmentation's
    when predicting) or on its non-zero field of view ("field_of_view": datasets without segmentation labels).
    It is sampled at ``spacing`` (the view's target spacing, coarsened only as far as the budget requires for
    this region), with Gaussian anti-aliasing before any downsampling when ``antialias``, and padded to
    ``input_size`` (the region in voxels rounded up to the encoder's divisor). The encoder is ``architecture``
    (the segmentation encoder's, so pretrained weights transfer one-to-one).
    """

    spacing: Float3
    input_size: Int3
    batch_size: int
    architecture: ArchitectureSpec
    num_findings: int
    memory_estimate_gb: float
    roi_size_mm: Float3 = (0.0, 0.0, 0.0)
    roi_source: str = "field_of_view"
    roi_margin_mm: float = 0.0
    antialias: bool = True

    def __post_init__(self):
        check_divisible(self.input_size, self.architecture, "classification.input_size")
        if any(s <= 0 for s in self.spacing):
            raise FieldError(f"classification.spacing must be positive, got {self.spacing}")
        if self.roi_source not in ROI_SOURCES:
            raise FieldError(f"classification.roi_source must be one of {list(ROI_SOURCES)}, got {self.roi_source!r}")
        if any(s < 0 for s in self.roi_size_mm) or self.roi_margin_mm < 0:
            raise FieldError(f"classification.roi_size_mm and roi_margin_mm must be >= 0, got {self.roi_size_mm}, "
                             f"{self.roi_margin_mm}")

    @property
    def roi_voxels(self) -> tuple[int, int, int]:
        """The region's size in voxels at ``spacing`` (before padding to the divisor); ``input_size`` when the
        plan has no region size."""
        if not any(self.roi_size_mm):
            return tuple(self.input_size)
        return tuple(max(1, int(round(m / s))) for m, s in zip(self.roi_size_mm, self.spacing))

    def to_dict(self) -> dict[str, Any]:
        return {
            "spacing": list(self.spacing),
            "input_size": list(self.input_size),
            "roi_size_mm": list(self.roi_size_mm),
            "roi_source": self.roi_source,
            "roi_margin_mm": self.roi_margin_mm,
            "antialias": self.antialias,
            "batch_size": self.batch_size,
            "num_findings": self.num_findings,
            "memory_estimate_gb": self.memory_estimate_gb,
            "architecture": self.architecture.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "classification") -> "ClassificationPlan":
        check_known_keys(d, cls, where)
        return cls(
            spacing=floats(take(d, "spacing", where), f"{where}.spacing"),
            input_size=ints(take(d, "input_size", where), f"{where}.input_size"),
            batch_size=int(take(d, "batch_size", where)),
            architecture=ArchitectureSpec.from_dict(take(d, "architecture", where), f"{where}.architecture"),
            num_findings=int(d.get("num_findings", 0)),
            memory_estimate_gb=float(d.get("memory_estimate_gb", 0.0)),
            roi_size_mm=floats(take(d, "roi_size_mm", where), f"{where}.roi_size_mm"),
            roi_source=str(take(d, "roi_source", where)),
            roi_margin_mm=float(take(d, "roi_margin_mm", where)),
            antialias=bool(d.get("antialias", True)),
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
            raise FieldError(f"diffusion.schedule must be 'cosine' or 'linear', got {self.schedule!r}")
        if self.prediction not in ("epsilon", "v", "x0"):
            raise FieldError(f"diffusion.prediction must be 'epsilon', 'v' or 'x0', got {self.prediction!r}")
        if self.timesteps < 1:
            raise FieldError(f"diffusion.timesteps must be >= 1, got {self.timesteps}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "diffusion") -> "DiffusionPlan":
        check_known_keys(d, cls, where)
        return cls(
            patch_size=ints(take(d, "patch_size", where), f"{where}.patch_size"),
            batch_size=int(take(d, "batch_size", where)),
            memory_estimate_gb=float(d.get("memory_estimate_gb", 0.0)),
            timesteps=int(d.get("timesteps", 1000)),
            schedule=str(d.get("schedule", "cosine")),
            prediction=str(d.get("prediction", "epsilon")),
        )
