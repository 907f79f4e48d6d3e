"""Tiny plans built by hand (a 3-stage U-Net on 8x16x16 patches), shared by the tests that need plans but no
planner run (diffusion, encoder export)."""

from __future__ import annotations

from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.plans import subplans
from orthodiff_auto.plans.schema import Plans, ViewPlan

PATCH = (8, 16, 16)


def tiny_arch(features=(4, 8, 16), n_stages=3, kernels=None, strides=None) -> ArchitectureSpec:
    kernels = kernels or ((1, 3, 3),) + ((3, 3, 3),) * (n_stages - 1)
    strides = strides or ((1, 1, 1), (1, 2, 2)) + ((2, 2, 2),) * (n_stages - 2)
    return ArchitectureSpec(n_stages=n_stages, features_per_stage=tuple(features), kernel_sizes=tuple(kernels),
                            strides=tuple(strides), n_conv_per_stage=(2,) * n_stages,
                            n_conv_per_stage_decoder=(2,) * (n_stages - 1))


def tiny_view_plan(view="sag", arch: ArchitectureSpec | None = None, patch=PATCH, batch=2, prediction="epsilon",
                   spacing=(3.0, 0.5, 0.5)) -> ViewPlan:
    arch = arch or tiny_arch()
    return ViewPlan(
        view=view, target_spacing=tuple(spacing), through_plane_axis=0,
        normalization=subplans.NormalizationPlan("zscore", False, 0.0, 1.0, -2.0, 2.0),
        resampling=subplans.ResamplingPlan(), median_shape_after_resampling=(10, 24, 24), num_training_cases=4,
        segmentation=subplans.SegmentationPlan(patch, batch, arch, 3, 0.01),
        classification=subplans.ClassificationPlan(tuple(spacing), patch, 2, arch, 2, 0.01),
        diffusion=subplans.DiffusionPlan(patch, batch, 0.01, prediction=prediction),
    )


def tiny_plans(views=("sag",), **kw) -> Plans:
    return Plans(dataset_name="Tiny", modality="MRI", budget=subplans.Budget("cpu", 0.25),
                 labels={"background": 0, "bone": 1}, ignore_label=None, findings=("tear",),
                 views={v: tiny_view_plan(v, **kw) for v in views})
