"""Adaptation plans: a dataset planned like a pretrained encoder keeps its architecture, normalisation and spacing
(so the weights load) and plans patch and batch for its own data; what cannot be adopted is named."""

from __future__ import annotations

import dataclasses

import pytest

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.orthodiffusion.unet import OrthoDiffusionHyperParameters
from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.plans.adaptation import (
    PretrainedPlan, adaptation_problems, check_adaptable, plan_experiment_like, plan_segmentation_like,
)
from orthodiff_auto.plans.planner import GPU_PRESET, plan_experiment
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.plans.subplans import Budget, NormalizationPlan, ResamplingPlan

from tests.plans.fake_fingerprint import fake_fingerprint

# the pretrained dataset: large thick-slice knee-like scans; the new one: smaller scans at another spacing
SOURCE = fake_fingerprint({v: [((4.0, 0.45, 0.45), (32, 320, 320))] * 6 for v in ("sag", "cor")})
TARGET = fake_fingerprint({v: [((3.0, 0.7, 0.7), (24, 150, 150))] * 6 for v in ("sag", "cor")},
                          labels={"background": 0, "x": 1, "y": 2, "z": 3}, findings=("f1", "f2"))


def pretrained(plans: Plans, view: str, **changes) -> PretrainedPlan:
    vp = plans.view(view)
    plan = PretrainedPlan(encoder=f"/bundle/encoder_{view}.pt", sha256="ab" * 32, view=view,
                          dataset_name=plans.dataset_name, modality=plans.modality, in_channels=1,
                          target_spacing=vp.target_spacing, normalization=vp.normalization,
                          resampling=vp.resampling, architecture=vp.segmentation.architecture)
    return dataclasses.replace(plan, **changes)


@pytest.fixture(scope="module")
def source_plans() -> Plans:
    return plan_experiment(SOURCE, Budget("gpu", 8.0))


def test_adopts_architecture_normalisation_and_spacing_and_plans_patch_for_its_data(source_plans):
    budget = Budget("gpu", 4.0)
    like = {"sag": pretrained(source_plans, "sag")}
    plans = plan_experiment_like(TARGET, budget, like)
    own = plan_experiment(TARGET, budget).view("sag")
    vp, src = plans.view("sag"), source_plans.view("sag")
    arch = src.segmentation.architecture
    # adopted: what decides whether the encoder's weights fit and what they expect
    assert vp.segmentation.architecture == vp.classification.architecture == arch
    assert vp.target_spacing == src.target_spacing and vp.normalization == src.normalization
    assert vp.resampling == src.resampling
    assert own.segmentation.architecture != arch or own.target_spacing != src.target_spacing  # not a coincidence
    # planned for this dataset: patch within its median image (rounded to the network's divisor), the budget
    assert all(p % d == 0 for p, d in zip(vp.segmentation.patch_size, arch.shape_divisor))
    assert vp.segmentation.patch_size != src.segmentation.patch_size
    assert all(p <= m + d for p, m, d in zip(vp.segmentation.patch_size, vp.median_shape_after_resampling,
                                             arch.shape_divisor))
    assert vp.segmentation.memory_estimate_gb <= budget.memory_gb
    assert vp.segmentation.num_classes == 4 and vp.classification.num_findings == 2
    assert vp.diffusion.patch_size == vp.segmentation.patch_size
    assert vp.adapted_from.encoder == "/bundle/encoder_sag.pt" and vp.adapted_from.dataset_name == "Fake"
    # views without an encoder are planned as usual
    assert plans.view("cor") == plan_experiment(TARGET, budget).view("cor")
    # the record survives the JSON round trip; plans made without an encoder carry no such key
    assert Plans.from_dict(plans.to_dict()) == plans
    assert "adapted_from" not in plan_experiment(TARGET, budget).to_dict()["views"]["sag"]


def test_a_smaller_budget_shrinks_the_patch_not_the_network(source_plans):
    arch = source_plans.view("sag").segmentation.architecture
    big = plan_segmentation_like(arch, (4.0, 0.45, 0.45), (32, 320, 320), 3, 10, Budget("gpu", 8.0), GPU_PRESET)
    small = plan_segmentation_like(arch, (4.0, 0.45, 0.45), (32, 320, 320), 3, 10, Budget("gpu", 2.0), GPU_PRESET)
    assert small.architecture == big.architecture == arch
    assert sum(small.patch_size) < sum(big.patch_size) and small.memory_estimate_gb <= 2.0
    assert all(p % d == 0 and p >= d for p, d in zip(small.patch_size, arch.shape_divisor))


def _two_dimensional(arch: ArchitectureSpec) -> ArchitectureSpec:
    return dataclasses.replace(arch, conv_dim=2, kernel_sizes=tuple(k[1:] for k in arch.kernel_sizes),
                               strides=tuple(s[1:] for s in arch.strides))


@pytest.mark.parametrize("change, message", [
    (dict(in_channels=2), "sag: input channels: the encoder takes 2, the dataset's scans have 1"),
    ("2d", "sag: dimensions: the encoder is 2D"),
    (dict(modality="CT"), "sag: modality: the encoder was pretrained on CT (zscore normalisation), the dataset is MRI"),
    (dict(view="ax"), "views: the pretrained encoders are of views ['ax'], the dataset has views ['sag', 'cor']"),
])
def test_what_cannot_be_adopted_is_named(source_plans, change, message):
    plan = pretrained(source_plans, "sag")
    if change == "2d":
        plan = dataclasses.replace(plan, architecture=_two_dimensional(plan.architecture),
                                   target_spacing=plan.target_spacing[1:])
    else:
        plan = dataclasses.replace(plan, **change)
    like = {plan.view: plan}
    assert any(message in p for p in adaptation_problems(["sag", "cor"], "MRI", like))
    with pytest.raises(UserInputError, match=r"/bundle/encoder_sag\.pt: cannot plan .* like this pretrained encoder"):
        check_adaptable(["sag", "cor"], "MRI", like, "RAW")
    with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        plan_experiment_like(TARGET, Budget("gpu", 4.0), like)


def test_an_input_grid_encoder_sets_spacing_from_the_datasets_field_of_view():
    """The OrthoDiffusion weights saw 16 centre slices resized to 256 x 256: through the plane the dataset's
    slice spacing, in plane its median field of view over 256 voxels; the classifier reads the centre slices."""
    arch = OrthoDiffusionHyperParameters(32, (1, 2, 2), 1, (2,)).to_spec()
    grid = PretrainedPlan(encoder="/od/sag/encoder_sag.pt", sha256="cd" * 32, view="sag", dataset_name="od",
                          modality="MRI", in_channels=1, target_spacing=(),
                          normalization=NormalizationPlan("range", False, 0.0, 1.0, 0.0, 0.0),
                          resampling=ResamplingPlan(image_order=1), architecture=arch, input_grid=(16, 256, 256))
    plans = plan_experiment_like(TARGET, Budget("gpu", 4.0), {"sag": grid})
    vp = plans.view("sag")
    fov = 150 * 0.7  # the fake scans: 24 x 150 x 150 voxels at 3.0 x 0.7 x 0.7 mm
    assert vp.target_spacing == pytest.approx((3.0, fov / 256, fov / 256))
    assert vp.normalization.scheme == "range" and vp.segmentation.architecture == arch
    assert vp.classification.roi_size_mm == pytest.approx((16 * 3.0, fov, fov))
    assert plans.view("cor").target_spacing != vp.target_spacing  # the view without an encoder: planned as usual
    assert adaptation_problems(["sag"], "MRI", {"sag": grid}) == []
