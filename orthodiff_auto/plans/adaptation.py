"""Adaptation plans: a dataset's plans made like a pretrained encoder's, so that its weights load.

``plan_experiment_like(fingerprint, budget, like)`` plans every view as ``plans.planner`` does, except that a
view with a pretrained encoder in ``like`` (view -> ``PretrainedPlan``: what the encoder's file says about the
plan it was pretrained under, read by ``training.pretrained.read_pretrained_bundle``) adopts

- the encoder's architecture (stages, features, kernels, strides, convolutions, norm; the decoder's too): its
  weights load 1:1 into the segmentation U-Net, the classifier's encoder and the denoiser;
- its normalisation (scheme, mask, and the statistics a CT scheme clips and scales with): inputs arrive as the
  encoder saw them;
- its target spacing and resampling: the features keep the physical scale (mm per voxel) they were learnt at,
  and the kernels and strides the anisotropy they were chosen for.

An encoder trained on a fixed input grid instead of a spacing (the OrthoDiffusion authors' weights: the centre
slices, each resized to a fixed in-plane size) carries ``input_grid`` (slices, rows, columns): its view is
resampled to the dataset's median slice spacing through the plane and, in plane, to the spacing that puts the
median field of view on the grid's size (``grid_spacing``); the classifier reads the centre slices
(``grid_region``), the whole field of view in plane.

What depends on this dataset is still planned for it: the segmentation and diffusion patch (a multiple of the
adopted network's divisor, shrunk within the budget) and batch, and the classifier's region, spacing and batch.
``adaptation_problems`` lists what makes an encoder unusable for a dataset, naming both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.fingerprint.schema import DatasetFingerprint, ViewFingerprint
from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.plans.memory import count_to_gb, feature_map_count
from orthodiff_auto.plans.planner import (
    PlannerPreset,
    RegionOfInterest,
    batch_size_within,
    initial_patch,
    median_shape_at,
    plan_classification,
    plan_configurations,
    plan_diffusion,
    plan_experiment,
    plan_region_of_interest,
    preset_for,
)
from orthodiff_auto.plans.schema import AdaptedFrom, Plans, ViewPlan
from orthodiff_auto.plans.subplans import Budget, Float3, NormalizationPlan, ResamplingPlan, SegmentationPlan
from orthodiff_auto.plans.topology import pad_to_multiple

# The raw format holds one single-channel image per view and case (data.dataset): every network's input has one
# channel.
SCAN_CHANNELS = 1
SCAN_DIMENSIONS = 3


@dataclass(frozen=True)
class PretrainedPlan:
    """What a pretrained encoder says about the plan it was pretrained under (one view)."""

    encoder: str  # the encoder file
    sha256: str
    view: str
    dataset_name: str
    modality: str
    in_channels: int
    target_spacing: Float3
    normalization: NormalizationPlan
    resampling: ResamplingPlan
    architecture: ArchitectureSpec
    input_grid: tuple[int, int, int] | None = None  # (slices, rows, columns): then target_spacing is unused

    def adapted_from(self) -> AdaptedFrom:
        return AdaptedFrom(self.encoder, self.sha256, self.view, self.dataset_name)


def adaptation_problems(views: Sequence[str], modality: str, like: Mapping[str, PretrainedPlan]) -> list[str]:
    """Why the encoders in ``like`` cannot be adopted for a dataset with these views and this modality (empty:
    they can): input channels, dimensions, modality, no view in common. Each names what the encoder has and what
    the dataset has."""
    common = [v for v in views if v in like]
    if not common:
        return [f"views: the pretrained encoders are of views {sorted(like)}, the dataset has views {list(views)}; "
                "none in common"]
    problems = []
    for view in common:
        p = like[view]
        if p.in_channels != SCAN_CHANNELS:
            problems.append(f"{view}: input channels: the encoder takes {p.in_channels}, the dataset's scans have "
                            f"{SCAN_CHANNELS}")
        if p.architecture.conv_dim != SCAN_DIMENSIONS or (p.input_grid is None
                                                          and len(p.target_spacing) != SCAN_DIMENSIONS):
            problems.append(f"{view}: dimensions: the encoder is {p.architecture.conv_dim}D (spacing "
                            f"{list(p.target_spacing)}), the dataset's scans are {SCAN_DIMENSIONS}D")
        if p.modality.strip().upper() != modality.strip().upper():
            problems.append(f"{view}: modality: the encoder was pretrained on {p.modality} ({p.normalization.scheme} "
                            f"normalisation), the dataset is {modality}")
    return problems


def check_adaptable(views: Sequence[str], modality: str, like: Mapping[str, PretrainedPlan], dataset: str) -> None:
    """UserInputError naming the encoders, the dataset and every problem when the encoders cannot be adopted."""
    problems = adaptation_problems(views, modality, like)
    if problems:
        encoders = sorted({p.encoder for p in like.values()})
        raise UserInputError(f"{', '.join(encoders)}: cannot plan {dataset} like this pretrained encoder: "
                             + "; ".join(problems))


def plan_segmentation_like(arch: ArchitectureSpec, spacing: Sequence[float], median_shape: Sequence[float],
                           num_classes: int, num_cases: int, budget: Budget, preset: PlannerPreset) -> SegmentationPlan:
    """Patch and batch for a fixed architecture: the planner's initial patch rounded up to the network's divisor,
    shrunk by one divisor step at a time on the axis that covers most of the median image until the estimate at
    the minimum batch fits the budget; then the planner's batch rule."""
    divisor = arch.shape_divisor
    patch = list(pad_to_multiple([max(1, round(p)) for p in initial_patch(spacing, median_shape, preset)], divisor))
    n_cls = max(2, int(num_classes))
    count = feature_map_count(arch, patch, 1, n_cls, True)
    while count_to_gb(count, preset.min_batch_size) > budget.memory_gb:
        ratios = [p / m for p, m in zip(patch, median_shape)]
        shrinkable = [a for a in sorted(range(3), key=lambda a: (ratios[a], a), reverse=True) if patch[a] > divisor[a]]
        if not shrinkable:
            break  # the smallest patch this network takes; its estimate stays above the budget (recorded)
        patch[shrinkable[0]] -= divisor[shrinkable[0]]
        count = feature_map_count(arch, patch, 1, n_cls, True)
    batch = batch_size_within(count_to_gb(count, 1), patch, median_shape, num_cases, budget, preset)
    return SegmentationPlan(patch_size=tuple(int(p) for p in patch), batch_size=batch, architecture=arch,
                            num_classes=int(num_classes), memory_estimate_gb=round(count_to_gb(count, batch), 4))


def grid_spacing(vf: ViewFingerprint, grid: Sequence[int]) -> Float3:
    """Through the plane the median slice spacing (slices kept as acquired); in plane the spacing that maps the
    median field of view (after cropping) onto the grid's rows and columns."""
    fov = np.median([[n * sp for n, sp in zip(sh, spc)] for sh, spc in zip(vf.shapes_after_crop, vf.spacings)],
                    axis=0)
    return (round(float(vf.median_spacing[0]), 6),) + tuple(round(float(fov[a] / grid[a]), 6) for a in (1, 2))


def grid_region(vf: ViewFingerprint, grid: Sequence[int], spacing: Sequence[float]) -> RegionOfInterest:
    """The centre ``grid[0]`` slices (fewer when scans have fewer), the whole field of view in plane."""
    fov = np.median([[n * sp for n, sp in zip(sh, spc)] for sh, spc in zip(vf.shapes_after_crop, vf.spacings)],
                    axis=0)
    size = (min(float(fov[0]), grid[0] * float(spacing[0])), float(fov[1]), float(fov[2]))
    return RegionOfInterest(tuple(round(v, 3) for v in size), "field_of_view", 0.0)


def plan_view_like(vf: ViewFingerprint, fingerprint: DatasetFingerprint, budget: Budget, like: PretrainedPlan,
                   preset: PlannerPreset | None = None) -> ViewPlan:
    """The view's plan with the encoder's architecture, normalisation, spacing (or input grid) and resampling
    adopted; its further configurations planned by the usual rules around it (the encoder fits 3d_fullres and the
    cascade's second stage, which share its architecture)."""
    preset = preset or preset_for(budget)
    grid = like.input_grid
    target = grid_spacing(vf, grid) if grid else tuple(float(t) for t in like.target_spacing)
    median_shape = median_shape_at(vf, target)
    arch = like.architecture
    seg_cases = vf.num_labelled or len(vf.spacings)
    seg = plan_segmentation_like(arch, target, median_shape, len(fingerprint.labels), seg_cases, budget, preset)
    roi = grid_region(vf, grid, target) if grid else plan_region_of_interest(vf, preset)
    cls = plan_classification(arch, target, roi, len(fingerprint.findings), len(vf.spacings), budget, preset)
    return ViewPlan(
        view=vf.view,
        target_spacing=target,
        through_plane_axis=0,
        normalization=like.normalization,
        resampling=like.resampling,
        median_shape_after_resampling=tuple(int(round(m)) for m in median_shape),
        num_training_cases=len(vf.spacings),
        segmentation=seg,
        classification=cls,
        diffusion=plan_diffusion(seg),
        adapted_from=like.adapted_from(),
        configurations=plan_configurations(vf, seg, target, median_shape, len(fingerprint.labels), seg_cases, budget,
                                           preset),
    )


def plan_experiment_like(fingerprint: DatasetFingerprint, budget: Budget, like: Mapping[str, PretrainedPlan],
                         preset: PlannerPreset | None = None) -> Plans:
    """Plans for every view in the fingerprint: like its pretrained encoder where ``like`` has one, as the
    planner plans otherwise. UserInputError (``check_adaptable``) when the encoders cannot be adopted."""
    check_adaptable(list(fingerprint.views), fingerprint.modality, like, repr(fingerprint.dataset_name))
    plans = plan_experiment(fingerprint, budget, preset)
    for view, vf in fingerprint.views.items():
        if view in like:
            plans = plans.replace_view(plan_view_like(vf, fingerprint, budget, like[view], preset))
    return plans


__all__ = [
    "PretrainedPlan", "SCAN_CHANNELS", "SCAN_DIMENSIONS", "adaptation_problems", "check_adaptable",
    "grid_region", "grid_spacing", "plan_experiment_like", "plan_segmentation_like", "plan_view_like",
]
