"""The planner: fingerprint + budget -> ``Plans`` (one ``ViewPlan`` per view). A pure function.

Rules (nnU-Net's 3d_fullres rules unless noted; documentation/planning.md explains each):

Target spacing
    Per-axis median of the training scans' spacings. When the coarsest median axis is more than 3x the
    finest other axis *and* has fewer than a third of the voxels of every other axis (median shape after
    cropping), that axis gets the 10th percentile of its spacings instead (never finer than the other axes):
    thick-slice outliers are not allowed to dictate how many slices every case is interpolated to.

Segmentation patch, topology, batch
    Start from a patch with the target spacing's aspect ratio (isotropic in mm) and the volume of
    ``preset.initial_patch_voxels``, clipped to the median shape after resampling; derive the topology
    (``plans.topology``); while the memory estimate at the minimum batch size exceeds the budget, shrink the
    axis whose patch/median-shape ratio is largest by one divisor step and re-derive the topology. Then the
    batch size is the largest whose estimate fits the budget (nnU-Net rounds, which can exceed the budget by
    up to half a sample; we floor), capped so a batch holds at most 5% of the dataset's voxels, at least 2.
    Features per stage: ``base * 2**stage`` capped at ``max_features``; 2 convolutions per stage.

Classification
    The same encoder architecture (weights transfer 1:1). Input: the whole cropped field of view (95th
    percentile per axis over the training scans, so 95% of scans fit uncropped), resampled to the target
    spacing, padded to the encoder's divisor. When the encoder's estimate at batch 2 exceeds the budget, the
    spacing is coarsened step by step (x1.03; the finer axes first until they are within 2x of the coarsest,
    as nnU-Net's 3d_lowres) until it fits. Batch: largest within budget, at least 2, at most
    ``preset.max_classification_batch`` and at most a tenth of the training scans (but >= 2).

Diffusion pretraining
    The segmentation patch and batch size, the U-Net with one output channel (predicted noise), 1000 steps,
    cosine schedule, epsilon prediction.

Configurations (nnU-Net's; ``plan_configurations``)
    ``3d_fullres`` is the view's plan above. ``2d``: one slice per patch (kernels and strides of 1 across slices,
    the bottleneck's too), in-plane the median shape clipped to twice ``max_patch_edge`` (2048 without one),
    shrunk along the larger in-plane axis while the estimate at batch 2 exceeds the budget; batch by memory
    (capped at 5% of the dataset), or at the cpu budget as many voxels per batch as 3d_fullres (within the same
    caps). ``3d_lowres`` only when the 3d_fullres patch covers under 25% of the median image: the spacing
    coarsened in 3% steps (finer axes first) until its own patch covers 25%; dropped when its median image keeps
    more than half the 3d_fullres voxels; preprocessed into ``<view>_3d_lowres``. With it,
    ``3d_cascade_fullres``: 3d_fullres's plan fed 3d_lowres's one-hot prediction as extra input channels.

Budgets
    ``gpu:<GB>``: the rules above with nnU-Net's constants (32 features doubling to 320).
    ``cpu``: ``CPU_PRESET``, a full-resolution, patch-based plan sized to train in minutes on 2 CPU cores: the
    target spacing of the rule above (``max_image_voxels`` is None: no coarsening), 8 features doubling to 64,
    an initial patch of 48**3 voxels (isotropic in mm) clipped to 64 per axis and to the median shape, a 0.25 GB
    target (``budget.CPU_BUDGET_GB``), batch 2, classification regions of at most 128k voxels and classifier
    batches of at most 4 (documentation/planning.md). ``PlannerPreset.max_image_voxels`` keeps the
    low-resolution rule (coarsen the finer axes first until the median image has at most that many voxels) for
    presets that want it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from orthodiff_auto.fingerprint.schema import DatasetFingerprint, ViewFingerprint
from orthodiff_auto.plans.memory import (
    count_to_gb,
    encoder_feature_map_count,
    feature_map_count,
)
from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.plans.schema import Plans, ViewPlan
from orthodiff_auto.plans.subplans import (
    Budget,
    ClassificationPlan,
    ConfigurationPlan,
    DiffusionPlan,
    NormalizationPlan,
    ResamplingPlan,
    SegmentationPlan,
)
from orthodiff_auto.plans.topology import Topology, get_topology, pad_to_multiple

ANISOTROPY_THRESHOLD = 3.0
# nnU-Net's rule for 3d_lowres: planned when the 3d_fullres patch covers less than this share of the median image;
# its spacing is then coarsened until its own patch covers at least this share
LOWRES_CREATION_THRESHOLD = 0.25
LOWRES_SPACING_STEP = 1.03
# nnU-Net drops 3d_lowres when the 3d_fullres median image has fewer than this many times its voxels
LOWRES_MIN_IMAGE_RATIO = 2.0
LOWRES_DATA_SUFFIX = "_3d_lowres"  # the lowres cases' folder: <preprocessed>/<view>_3d_lowres


@dataclass(frozen=True)
class PlannerPreset:
    base_features: int = 32
    max_features: int = 320
    n_conv_per_stage: int = 2
    n_conv_per_stage_decoder: int = 2
    min_feature_map_size: int = 4
    min_batch_size: int = 2
    max_batch_size: int | None = None
    max_dataset_fraction: float = 0.05
    initial_patch_voxels: int = 256**3
    max_patch_edge: int | None = None  # clip of the initial patch per axis (voxels)
    max_classification_batch: int = 16
    classification_size_percentile: float = 95.0
    roi_margin_fraction: float = 0.1  # margin on each side of the labelled anatomy's box, of its median edge
    max_classification_voxels: int | None = None  # cpu: the region's voxel count the spacing is coarsened to
    # low-resolution rule (cpu): coarsen the target spacing until the median image has at most this many voxels
    max_image_voxels: int | None = None


GPU_PRESET = PlannerPreset()
CPU_PRESET = PlannerPreset(base_features=8, max_features=64, initial_patch_voxels=48**3, max_patch_edge=64,
                           max_batch_size=2, max_classification_batch=4, max_classification_voxels=128_000)


def preset_for(budget: Budget) -> PlannerPreset:
    return CPU_PRESET if budget.kind == "cpu" else GPU_PRESET


def determine_target_spacing(spacings: Sequence[Sequence[float]], shapes_after_crop: Sequence[Sequence[int]],
                             anisotropy_threshold: float = ANISOTROPY_THRESHOLD) -> tuple[float, float, float]:
    """Median spacing with nnU-Net's anisotropy rule (see module docstring)."""
    sp = np.asarray(spacings, dtype=float)
    target = np.percentile(sp, 50, axis=0)
    size = np.percentile(np.asarray(shapes_after_crop, dtype=float), 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    aniso_spacing = target[worst] > anisotropy_threshold * max(target[a] for a in others)
    aniso_voxels = size[worst] * anisotropy_threshold < min(size[a] for a in others)
    if aniso_spacing and aniso_voxels:
        t = float(np.percentile(sp[:, worst], 10))
        finest_allowed = max(target[a] for a in others)
        if t < finest_allowed:
            t = finest_allowed + 1e-5
        target[worst] = t
    return tuple(float(v) for v in target)


def coarsen_to_fit(spacing: Sequence[float], median_shape: Sequence[float], max_voxels: int) -> tuple[float, ...]:
    """The spacing, coarsened in 3% steps (the finer axes first until they are within 2x of the coarsest, as
    nnU-Net's 3d_lowres), at which an image of ``median_shape`` voxels at ``spacing`` has at most ``max_voxels``."""
    spacing = np.asarray(spacing, dtype=float)
    extent = spacing * np.asarray(median_shape, dtype=float)
    target = spacing.copy()
    while np.prod(np.maximum(1.0, np.round(extent / target))) > max_voxels:
        finer = target.max() / target > 2
        target = np.where(finer, target * 1.03, target) if finer.any() else target * 1.03
    return tuple(float(v) for v in target)


def new_shape(shape: Sequence[float], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    return tuple(max(1, int(round(s * o / t))) for s, o, t in zip(shape, spacing, target))


def features_per_stage(n_stages: int, preset: PlannerPreset) -> tuple[int, ...]:
    return tuple(min(preset.max_features, preset.base_features * 2**i) for i in range(n_stages))


def architecture_from_topology(topo: Topology, preset: PlannerPreset) -> ArchitectureSpec:
    n = topo.n_stages
    return ArchitectureSpec(
        n_stages=n,
        features_per_stage=features_per_stage(n, preset),
        kernel_sizes=topo.kernel_sizes,
        strides=topo.strides,
        n_conv_per_stage=(preset.n_conv_per_stage,) * n,
        n_conv_per_stage_decoder=(preset.n_conv_per_stage_decoder,) * (n - 1),
    )


def _pad(shape: Sequence[float], divisor: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(math.ceil(float(s) / d - 1e-9) * d) for s, d in zip(shape, divisor))


def _topology(spacing, patch, preset: PlannerPreset) -> Topology:
    topo = get_topology(spacing, patch, preset.min_feature_map_size)
    if topo.n_stages < 2:
        # Images too small to pool even once: enlarge the patch (the loader pads) along the finest axes so the
        # U-Net gets at least one down/up-sampling step.
        finest = min(spacing)
        patch = [max(p, 2 * preset.min_feature_map_size) if s / finest < 2 else p for p, s in zip(patch, spacing)]
        topo = get_topology(spacing, patch, preset.min_feature_map_size)
    return Topology(topo.pool_per_axis, topo.strides, topo.kernel_sizes, _pad(patch, topo.shape_divisor),
                    topo.shape_divisor)


def initial_patch(spacing: Sequence[float], median_shape: Sequence[float], preset: PlannerPreset) -> list[float]:
    """The patch planning starts from: isotropic in mm with ``preset.initial_patch_voxels`` voxels, clipped to
    the median shape and to ``preset.max_patch_edge``."""
    inv = 1.0 / np.asarray(spacing, dtype=float)
    initial = [round(v) for v in inv * (preset.initial_patch_voxels / np.prod(inv)) ** (1 / 3)]
    patch = [float(min(i, m)) for i, m in zip(initial, median_shape)]
    if preset.max_patch_edge is not None:
        patch = [min(p, float(preset.max_patch_edge)) for p in patch]
    return patch


def batch_size_within(per_sample_gb: float, patch: Sequence[int], median_shape: Sequence[float], num_cases: int,
                      budget: Budget, preset: PlannerPreset) -> int:
    """The largest batch of ``patch`` within the budget, capped so that a batch holds at most
    ``preset.max_dataset_fraction`` of the dataset's voxels, at least ``preset.min_batch_size``."""
    batch = int(budget.memory_gb // per_sample_gb) if per_sample_gb > 0 else preset.min_batch_size
    dataset_voxels = float(np.prod(median_shape, dtype=np.float64)) * max(1, num_cases)
    cap = round(dataset_voxels * preset.max_dataset_fraction / float(np.prod(patch, dtype=np.float64)))
    batch = max(min(batch, cap), preset.min_batch_size)
    if preset.max_batch_size is not None:
        batch = min(batch, preset.max_batch_size)
    return int(batch)


def plan_segmentation(spacing: Sequence[float], median_shape: Sequence[float], num_classes: int,
                      num_cases: int, budget: Budget, preset: PlannerPreset) -> SegmentationPlan:
    """Patch size, topology and batch size under ``budget`` (see module docstring)."""
    patch = initial_patch(spacing, median_shape, preset)
    topo = _topology(spacing, patch, preset)
    arch = architecture_from_topology(topo, preset)
    n_cls = max(2, int(num_classes))
    count = feature_map_count(arch, topo.patch_size, 1, n_cls, True)
    seen = {topo.patch_size}
    while count_to_gb(count, preset.min_batch_size) > budget.memory_gb:
        patch = list(topo.patch_size)
        ratios = [p / m for p, m in zip(patch, median_shape)]
        order = sorted(range(3), key=lambda a: (ratios[a], a), reverse=True)
        for axis in order:
            if patch[axis] > topo.shape_divisor[axis]:
                break
        else:
            break  # cannot shrink any further; the estimate stays above the budget (recorded in the plan)
        trial = list(patch)
        trial[axis] -= topo.shape_divisor[axis]
        step = get_topology(spacing, trial, preset.min_feature_map_size).shape_divisor[axis]
        patch[axis] = max(1, patch[axis] - step)
        topo = _topology(spacing, patch, preset)
        if topo.patch_size in seen:
            break  # the smallest patch the topology rules allow; its estimate stays above the budget
        seen.add(topo.patch_size)
        arch = architecture_from_topology(topo, preset)
        count = feature_map_count(arch, topo.patch_size, 1, n_cls, True)
    batch = batch_size_within(count_to_gb(count, 1), topo.patch_size, median_shape, num_cases, budget, preset)
    return SegmentationPlan(
        patch_size=tuple(int(p) for p in topo.patch_size),
        batch_size=int(batch),
        architecture=arch,
        num_classes=int(num_classes),
        memory_estimate_gb=round(count_to_gb(count, batch), 4),
    )


@dataclass(frozen=True)
class RegionOfInterest:
    """The classification region of a view: its size (mm, canonical order), what centres it, the margin."""

    size_mm: tuple[float, float, float]
    source: str  # "labels" | "field_of_view"
    margin_mm: float


def plan_region_of_interest(vf: ViewFingerprint, preset: PlannerPreset) -> RegionOfInterest:
    """The bounding box of the labelled anatomy over the training scans (``preset.roi_percentile`` per axis, so
    that most cases fit), plus a margin on each side (``preset.roi_margin_fraction`` of the box's median edge),
    never larger than the field of view (same percentile); the field of view itself when no training scan
    of the view has labelled anatomy."""
    q = preset.classification_size_percentile
    fov = np.percentile([[n * sp for n, sp in zip(sh, spc)] for sh, spc in zip(vf.shapes_after_crop, vf.spacings)],
                        q, axis=0)
    extents = [c.label_extent_mm for c in vf.cases if c.subset == "train" and c.label_extent_mm is not None]
    if not extents:
        return RegionOfInterest(tuple(round(float(v), 3) for v in fov), "field_of_view", 0.0)
    box = np.percentile(np.asarray(extents, dtype=float), q, axis=0)
    margin = float(preset.roi_margin_fraction * np.median(box))
    size = np.minimum(box + 2 * margin, fov)
    return RegionOfInterest(tuple(round(float(v), 3) for v in size), "labels", round(margin, 3))


def plan_classification(arch: ArchitectureSpec, target_spacing: Sequence[float], roi: RegionOfInterest,
                        num_findings: int, num_cases: int, budget: Budget,
                        preset: PlannerPreset) -> ClassificationPlan:
    """Spacing, input size and batch of a view's classifier over its region of interest (module docstring)."""
    spacing = np.asarray(target_spacing, dtype=float)
    size_mm = np.asarray(roi.size_mm, dtype=float)
    for _ in range(400):
        voxels = np.maximum(1, np.round(size_mm / spacing)).astype(int)
        input_size = pad_to_multiple(voxels.tolist(), arch.shape_divisor)
        per_sample = count_to_gb(encoder_feature_map_count(arch, input_size, 1), 1)
        fits_voxels = preset.max_classification_voxels is None or voxels.prod() <= preset.max_classification_voxels
        if fits_voxels and per_sample * preset.min_batch_size <= budget.memory_gb:
            break
        coarsest = spacing.max()
        finer = coarsest / spacing > 2
        spacing = np.where(finer, spacing * 1.03, spacing) if finer.any() else spacing * 1.03
    batch = int(budget.memory_gb // per_sample) if per_sample > 0 else preset.min_batch_size
    batch = min(batch, preset.max_classification_batch, max(preset.min_batch_size, num_cases // 10))
    batch = max(batch, preset.min_batch_size)
    return ClassificationPlan(
        spacing=tuple(round(float(s), 6) for s in spacing),
        input_size=tuple(int(s) for s in input_size),
        batch_size=int(batch),
        architecture=arch,
        num_findings=int(num_findings),
        memory_estimate_gb=round(per_sample * batch, 4),
        roi_size_mm=roi.size_mm,
        roi_source=roi.source,
        roi_margin_mm=roi.margin_mm,
        antialias=True,
    )


def plan_diffusion(seg: SegmentationPlan) -> DiffusionPlan:
    count = feature_map_count(seg.architecture, seg.patch_size, 1, 1, False)
    return DiffusionPlan(
        patch_size=seg.patch_size,
        batch_size=seg.batch_size,
        memory_estimate_gb=round(count_to_gb(count, seg.batch_size), 4),
    )


def plan_normalization(vf: ViewFingerprint, modality: str) -> NormalizationPlan:
    fg = vf.foreground_intensity
    stats = dict(mean=fg.mean, std=fg.std, p005=fg.p005, p995=fg.p995) if fg else dict(mean=0.0, std=1.0, p005=0.0,
                                                                                           p995=0.0)
    if modality.strip().upper() == "CT":
        return NormalizationPlan(scheme="ct", use_mask_for_norm=False, **stats)
    return NormalizationPlan(scheme="zscore", use_mask_for_norm=vf.median_relative_size_after_crop < 0.75, **stats)


def median_shape_at(vf: ViewFingerprint, target: Sequence[float]) -> tuple[float, ...]:
    """The view's median shape (after cropping) resampled to the ``target`` spacing."""
    shapes = [new_shape(sh, sp, target) for sh, sp in zip(vf.shapes_after_crop, vf.spacings)]
    return tuple(float(v) for v in np.median(np.asarray(shapes, dtype=float), axis=0))


def _coarser(spacing: np.ndarray) -> np.ndarray:
    """One 3% step of nnU-Net's lowres coarsening: the axes more than 2x finer than the coarsest first."""
    finer = spacing.max() / spacing > 2
    return np.where(finer, spacing * LOWRES_SPACING_STEP, spacing) if finer.any() else spacing * LOWRES_SPACING_STEP


def plan_lowres(vf: ViewFingerprint, fullres: SegmentationPlan, spacing: Sequence[float],
                median_shape: Sequence[float], num_classes: int, num_cases: int, budget: Budget,
                preset: PlannerPreset, view: str) -> ConfigurationPlan | None:
    """nnU-Net's 3d_lowres: only when the 3d_fullres patch covers less than ``LOWRES_CREATION_THRESHOLD`` of the
    median image (else the whole image is already context enough); the spacing is coarsened in 3% steps (finer
    axes first) until the patch planned at it covers that share; dropped, as nnU-Net does, when the median image at
    that spacing still has more than half the voxels of the 3d_fullres one (too little difference to be worth a
    stage)."""
    if np.prod(fullres.patch_size, dtype=np.float64) / np.prod(median_shape, dtype=np.float64) >= \
            LOWRES_CREATION_THRESHOLD:
        return None
    lowres = np.asarray(spacing, dtype=float)
    plan, shape = fullres, tuple(median_shape)
    for _ in range(500):
        lowres = _coarser(lowres)
        shape = median_shape_at(vf, lowres)
        plan = plan_segmentation(lowres, shape, num_classes, num_cases, budget, preset)
        if np.prod(plan.patch_size, dtype=np.float64) / np.prod(shape, dtype=np.float64) >= LOWRES_CREATION_THRESHOLD:
            break
    if np.prod(median_shape, dtype=np.float64) / np.prod(shape, dtype=np.float64) < LOWRES_MIN_IMAGE_RATIO:
        return None
    return ConfigurationPlan(tuple(round(float(t), 6) for t in lowres), tuple(int(round(m)) for m in shape), plan,
                             view + LOWRES_DATA_SUFFIX)


def _slice_topology(flat_spacing, patch, preset: PlannerPreset) -> Topology:
    """The topology of a one-slice patch: kernels of 1 across slices at every stage, the bottleneck's too."""
    topo = _topology(flat_spacing, patch, preset)
    kernels = tuple((1, *k[1:]) for k in topo.kernel_sizes)
    return Topology(topo.pool_per_axis, topo.strides, kernels, topo.patch_size, topo.shape_divisor)


def plan_2d(spacing: Sequence[float], median_shape: Sequence[float], fullres: SegmentationPlan,
            num_classes: int, num_cases: int, budget: Budget, preset: PlannerPreset, view: str) -> ConfigurationPlan:
    """nnU-Net's 2d on the view's slices (through-plane axis 0): a patch of one slice, in-plane the median shape
    (clipped to twice ``preset.max_patch_edge``), kernels and strides of 1 across
    slices. Batch: as many slices as the memory target allows (capped by the dataset-fraction rule); under a
    preset with ``max_batch_size`` (cpu), as many voxels per batch as 3d_fullres, so a step costs about the same."""
    inplane_edge = 2048 if preset.max_patch_edge is None else preset.max_patch_edge * 2
    patch = [1.0] + [float(min(m, inplane_edge)) for m in median_shape[1:]]
    flat_spacing = [1e6, *spacing[1:]]  # an axis this coarse is never pooled and gets kernels of 1
    topo = _slice_topology(flat_spacing, patch, preset)
    arch = architecture_from_topology(topo, preset)
    n_cls = max(2, int(num_classes))
    count = feature_map_count(arch, topo.patch_size, 1, n_cls, True)
    while count_to_gb(count, preset.min_batch_size) > budget.memory_gb and max(topo.patch_size[1:]) > 8:
        axis = 1 + int(np.argmax(topo.patch_size[1:]))
        patch = list(topo.patch_size)
        patch[axis] = max(8, patch[axis] - topo.shape_divisor[axis])
        topo = _slice_topology(flat_spacing, patch, preset)
        arch = architecture_from_topology(topo, preset)
        count = feature_map_count(arch, topo.patch_size, 1, n_cls, True)
    if preset.max_batch_size is not None:
        batch = int(np.prod(fullres.patch_size) * fullres.batch_size // np.prod(topo.patch_size))
        cap = batch_size_within(count_to_gb(count, 1), topo.patch_size, median_shape, num_cases, budget,
                                PlannerPreset(**{**preset.__dict__, "max_batch_size": None}))
        batch = max(preset.min_batch_size, min(batch, cap))
    else:
        batch = batch_size_within(count_to_gb(count, 1), topo.patch_size, median_shape, num_cases, budget, preset)
    seg = SegmentationPlan(patch_size=tuple(int(p) for p in topo.patch_size), batch_size=int(batch),
                           architecture=arch, num_classes=int(num_classes),
                           memory_estimate_gb=round(count_to_gb(count, batch), 4))
    return ConfigurationPlan(tuple(float(s) for s in spacing), tuple(int(round(m)) for m in median_shape), seg, view)


def plan_configurations(vf: ViewFingerprint, seg: SegmentationPlan, spacing: Sequence[float],
                        median_shape: Sequence[float], num_classes: int, num_cases: int, budget: Budget,
                        preset: PlannerPreset) -> dict[str, ConfigurationPlan]:
    """The view's configurations besides 3d_fullres: ``2d`` always, ``3d_lowres`` and ``3d_cascade_fullres``
    (3d_fullres's plan with 3d_lowres as its previous stage) when nnU-Net's lowres rule creates them."""
    out = {"2d": plan_2d(spacing, median_shape, seg, num_classes, num_cases, budget, preset, vf.view)}
    lowres = plan_lowres(vf, seg, spacing, median_shape, num_classes, num_cases, budget, preset, vf.view)
    if lowres is not None:
        out["3d_lowres"] = lowres
        out["3d_cascade_fullres"] = ConfigurationPlan(tuple(float(s) for s in spacing),
                                                      tuple(int(round(m)) for m in median_shape), seg, vf.view,
                                                      previous_stage="3d_lowres")
    return out


def plan_view(vf: ViewFingerprint, fingerprint: DatasetFingerprint, budget: Budget,
              preset: PlannerPreset | None = None) -> ViewPlan:
    preset = preset or preset_for(budget)
    target = determine_target_spacing(vf.spacings, vf.shapes_after_crop)
    if preset.max_image_voxels is not None:
        target = coarsen_to_fit(target, median_shape_at(vf, target), preset.max_image_voxels)
    target = tuple(round(t, 6) for t in target)
    median_shape = median_shape_at(vf, target)
    num_classes = len(fingerprint.labels)
    seg_cases = vf.num_labelled or len(vf.spacings)
    seg = plan_segmentation(target, median_shape, num_classes, seg_cases, budget, preset)
    cls = plan_classification(seg.architecture, target, plan_region_of_interest(vf, preset),
                              len(fingerprint.findings), len(vf.spacings), budget, preset)
    return ViewPlan(
        view=vf.view,
        target_spacing=target,
        through_plane_axis=0,
        normalization=plan_normalization(vf, fingerprint.modality),
        resampling=ResamplingPlan(anisotropy_threshold=ANISOTROPY_THRESHOLD),
        median_shape_after_resampling=tuple(int(round(m)) for m in median_shape),
        num_training_cases=len(vf.spacings),
        segmentation=seg,
        classification=cls,
        diffusion=plan_diffusion(seg),
        configurations=plan_configurations(vf, seg, target, median_shape, num_classes, seg_cases, budget, preset),
    )


def plan_experiment(fingerprint: DatasetFingerprint, budget: Budget,
                    preset: PlannerPreset | None = None) -> Plans:
    """Plans for every view in the fingerprint."""
    views = {v: plan_view(vf, fingerprint, budget, preset) for v, vf in fingerprint.views.items()}
    return Plans(
        dataset_name=fingerprint.dataset_name,
        modality=fingerprint.modality,
        budget=budget,
        labels=dict(fingerprint.labels),
        ignore_label=fingerprint.ignore_label,
        findings=tuple(fingerprint.findings),
        views=views,
    )


__all__ = [
    "CPU_PRESET",
    "GPU_PRESET",
    "PlannerPreset",
    "batch_size_within",
    "coarsen_to_fit",
    "determine_target_spacing",
    "initial_patch",
    "median_shape_at",
    "plan_classification",
    "plan_2d",
    "plan_configurations",
    "plan_lowres",
    "plan_region_of_interest",
    "RegionOfInterest",
    "plan_diffusion",
    "plan_experiment",
    "plan_segmentation",
    "plan_view",
    "preset_for",
]
