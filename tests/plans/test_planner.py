import math

import numpy as np
import pytest

from orthodiff_auto.plans.memory import (
    REFERENCE_FEATURE_MAP_3D,
    count_to_gb,
    encoder_feature_map_count,
    feature_map_count,
)
from orthodiff_auto.plans.planner import (
    CPU_PRESET,
    coarsen_to_fit,
    GPU_PRESET,
    architecture_from_topology,
    determine_target_spacing,
    plan_experiment,
    plan_segmentation,
)
from orthodiff_auto.plans.schema import Budget
from orthodiff_auto.plans.topology import get_topology
from tests.plans.fake_fingerprint import fake_fingerprint

# --- target spacing ---------------------------------------------------------------------------------------


def estimate_segmentation_memory_gb(arch, patch_size, batch_size, num_input_channels=1, num_classes=2):
    """The planner's estimate of the U-Net's training memory (GB)."""
    return count_to_gb(feature_map_count(arch, patch_size, num_input_channels, num_classes, True), batch_size,
                       arch.conv_dim)


def estimate_encoder_memory_gb(arch, input_size, batch_size):
    """The planner's estimate of the encoder's training memory (GB, classifier)."""
    return count_to_gb(encoder_feature_map_count(arch, input_size, 1), batch_size, arch.conv_dim)


def test_target_spacing_is_median_for_isotropic_data():
    spacings = [(1.0, 0.9, 0.9), (1.2, 1.0, 1.0), (0.8, 1.1, 1.1)]
    shapes = [(100, 100, 100)] * 3
    assert determine_target_spacing(spacings, shapes) == pytest.approx((1.0, 1.0, 1.0))


def test_anisotropy_rule_uses_10th_percentile_through_plane():
    # Thick slices (ratio > 3) and few of them: the through-plane target is the 10th percentile.
    thick = [2.5, 3.0, 3.0, 3.3, 3.5, 4.0, 4.5, 5.0, 6.0, 6.0]
    spacings = [(t, 0.4, 0.4) for t in thick]
    shapes = [(30, 160, 160)] * len(thick)
    target = determine_target_spacing(spacings, shapes)
    assert target[0] == pytest.approx(np.percentile(thick, 10))
    assert target[0] < np.median(thick)
    assert target[1:] == pytest.approx((0.4, 0.4))


def test_anisotropy_rule_needs_both_conditions():
    thick = [2.5, 3.0, 4.0, 5.0, 6.0]
    # Ratio > 3 but the thick axis has as many voxels as the others (nnU-Net's second condition): median.
    many_slices = determine_target_spacing([(t, 0.4, 0.4) for t in thick], [(160, 160, 160)] * 5)
    assert many_slices[0] == pytest.approx(4.0)
    # Few slices but ratio <= 3: median.
    mild = determine_target_spacing([(t / 4, 0.4, 0.4) for t in thick], [(30, 160, 160)] * 5)
    assert mild[0] == pytest.approx(1.0)


def test_anisotropy_rule_never_finer_than_in_plane():
    spacings = [(0.3, 0.9, 0.9)] + [(4.0, 0.9, 0.9)] * 9
    target = determine_target_spacing(spacings, [(20, 200, 200)] * 10)
    assert target[0] >= 0.9


def test_anisotropy_rule_on_any_axis():
    # The coarse axis is found wherever it is.
    spacings = [(0.5, 0.5, t) for t in (2.5, 3.0, 4.0, 5.0, 6.0)]
    target = determine_target_spacing(spacings, [(160, 160, 30)] * 5)
    assert target[2] == pytest.approx(np.percentile([2.5, 3.0, 4.0, 5.0, 6.0], 10))


# --- topology -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing, patch", [
    ((3.0, 0.4, 0.4), (32, 160, 160)),
    ((1.0, 1.0, 1.0), (128, 128, 128)),
    ((4.0, 0.7, 0.7), (20, 256, 224)),
    ((0.5, 0.5, 3.3), (192, 160, 24)),
    ((1.0, 2.5, 1.0), (96, 40, 100)),
    ((3.0, 0.5, 0.5), (7, 33, 50)),
])
def test_topology_respects_patch_and_anisotropy(spacing, patch):
    topo = get_topology(spacing, patch, min_feature_map_size=4)
    assert topo.strides[0] == (1, 1, 1)
    assert len(topo.kernel_sizes) == len(topo.strides) == topo.n_stages
    assert topo.kernel_sizes[-1] == (3, 3, 3)
    # Patch: padded up to a multiple of the divisor, never smaller than asked.
    assert all(p % d == 0 and p >= q for p, d, q in zip(topo.patch_size, topo.shape_divisor, patch))
    assert topo.shape_divisor == tuple(2**p for p in topo.pool_per_axis)
    size = np.array(patch, dtype=float)
    sp = np.array(spacing, dtype=float)
    for stage in range(1, topo.n_stages):
        stride = np.array(topo.strides[stage])
        kernel = np.array(topo.kernel_sizes[stage - 1])
        # Kernel 1 exactly along axes still >= 2x coarser than the finest (in-plane-only convolutions).
        assert all((k == 1) == (s / sp.min() >= 2) or k == 3 for k, s in zip(kernel, sp))
        pooled = stride == 2
        assert pooled.any()
        # A pooled axis keeps a feature map of at least 4 voxels and was within 2x of the finest pooled spacing.
        assert (np.ceil(size[pooled] / 2) >= 4).all()
        finest = sp[size >= 8].min()
        assert (sp[pooled] / finest < 2).all()
        size = np.where(pooled, np.ceil(size / 2), size)
        sp = np.where(pooled, sp * 2, sp)
    # Stopping: no axis could be pooled further under the same rule.
    cand = [a for a in range(3) if size[a] >= 8]
    if cand:
        finest = min(sp[a] for a in cand)
        cand = [a for a in cand if sp[a] / finest < 2]
    assert not cand or (len(cand) == 1 and size[cand[0]] < 12)


def test_thick_slice_axis_gets_in_plane_only_stages():
    topo = get_topology((3.0, 0.4, 0.4), (32, 160, 160))
    assert topo.kernel_sizes[0] == (1, 3, 3)
    assert topo.strides[1] == (1, 2, 2)
    assert topo.pool_per_axis[0] < topo.pool_per_axis[1] == topo.pool_per_axis[2]


# --- memory estimate ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arch():
    topo = get_topology((3.0, 0.5, 0.5), (16, 64, 64))
    return architecture_from_topology(topo, CPU_PRESET)


def test_memory_estimate_counts_a_real_network_and_scales_with_batch(arch):
    from orthodiff_auto.networks import build_segmentation_network

    # the count is that of the network really built (on the CPU, not the meta device the planner uses)
    net = build_segmentation_network(arch, 1, 3, deep_supervision=True)
    assert feature_map_count(arch, (16, 64, 64), 1, 3, True) == int(net.compute_conv_feature_map_size([16, 64, 64]))
    # more output classes, more feature maps (the heads); memory proportional to the batch
    assert feature_map_count(arch, (16, 64, 64), 1, 8, True) > feature_map_count(arch, (16, 64, 64), 1, 3, True)
    one = estimate_segmentation_memory_gb(arch, (16, 64, 64), 1, 1, 3)
    assert estimate_segmentation_memory_gb(arch, (16, 64, 64), 4, 1, 3) == pytest.approx(4 * one)
    # nnU-Net's calibration point: its reference count at batch 2 is its 8 GB budget
    assert count_to_gb(REFERENCE_FEATURE_MAP_3D, 2) == pytest.approx(8.0)


def test_isotropic_8gb_plan_is_nnunets_known_default():
    """nnU-Net v2's 3d_fullres plan for isotropic 1 mm data with large images under its 8 GB target: a 128^3
    patch, batch 2, a 6-stage PlainConvUNet with 32 to 320 features, 3x3x3 kernels and isotropic pooling."""
    plan = plan_segmentation((1.0, 1.0, 1.0), (300, 300, 300), 3, 500, Budget("gpu", 8.0), GPU_PRESET)
    assert plan.patch_size == (128, 128, 128) and plan.batch_size == 2
    arch = plan.architecture
    assert arch.n_stages == 6 and arch.features_per_stage == (32, 64, 128, 256, 320, 320)
    assert all(k == (3, 3, 3) for k in arch.kernel_sizes)
    assert arch.strides == ((1, 1, 1),) + ((2, 2, 2),) * 5
    # and the budget is what stops it: the next larger cube does not fit
    assert plan.memory_estimate_gb <= 8.0 < estimate_segmentation_memory_gb(arch, (160, 160, 160), 2, 1, 3)


def test_memory_estimate_monotone_in_patch_and_batch(arch):
    base = (16, 64, 64)
    m = estimate_segmentation_memory_gb(arch, base, 2)
    for axis in range(3):
        bigger = list(base)
        bigger[axis] += arch.shape_divisor[axis]
        assert estimate_segmentation_memory_gb(arch, bigger, 2) > m
    sizes = [estimate_segmentation_memory_gb(arch, base, b) for b in range(1, 6)]
    assert all(b > a for a, b in zip(sizes, sizes[1:]))
    enc = [estimate_encoder_memory_gb(arch, (16, 64 + 16 * i, 64), 2) for i in range(4)]
    assert all(b > a for a, b in zip(enc, enc[1:]))
    assert estimate_encoder_memory_gb(arch, base, 2) < m  # the encoder alone needs less than the U-Net


# --- planner --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget_gb", [1.0, 4.0, 8.0, 24.0])
@pytest.mark.parametrize("spacing, median", [((3.0, 0.4, 0.4), (32, 300, 300)), ((1.0, 1.0, 1.0), (160, 180, 150))])
def test_segmentation_plan_fits_budget(spacing, median, budget_gb):
    plan = plan_segmentation(spacing, median, 3, 50, Budget("gpu", budget_gb), GPU_PRESET)
    assert plan.batch_size >= 2
    assert plan.memory_estimate_gb <= budget_gb + 1e-9
    assert plan.memory_estimate_gb == pytest.approx(
        estimate_segmentation_memory_gb(plan.architecture, plan.patch_size, plan.batch_size, 1, 3), rel=1e-3)
    assert all(p <= math.ceil(m / d) * d for p, m, d in zip(plan.patch_size, median, plan.architecture.shape_divisor))
    # Topology as derived from the final patch.
    topo = get_topology(spacing, plan.patch_size)
    assert plan.architecture.strides == topo.strides and plan.architecture.kernel_sizes == topo.kernel_sizes
    assert plan.architecture.features_per_stage[0] == 32 and max(plan.architecture.features_per_stage) <= 320


def test_bigger_budget_gives_bigger_patch_or_batch():
    spacing, median = (1.0, 1.0, 1.0), (300, 300, 300)
    plans = [plan_segmentation(spacing, median, 3, 500, Budget("gpu", gb), GPU_PRESET) for gb in (2, 8, 32)]
    work = [np.prod(p.patch_size) * p.batch_size for p in plans]
    assert work[0] < work[1] < work[2]


def test_batch_capped_by_dataset_fraction():
    # Tiny images: the patch covers them whole, and 5% of 4 cases is less than 2 patches -> batch 2.
    plan = plan_segmentation((1.0, 1.0, 1.0), (32, 32, 32), 2, 4, Budget("gpu", 80.0), GPU_PRESET)
    assert plan.batch_size == 2
    many = plan_segmentation((1.0, 1.0, 1.0), (32, 32, 32), 2, 2000, Budget("gpu", 80.0), GPU_PRESET)
    assert many.batch_size > 2
    assert many.memory_estimate_gb <= 80.0


def test_cpu_budget_gives_small_fast_plan():
    fp = fake_fingerprint({"sag": [((3.0, 0.4, 0.4), (32, 384, 384))] * 6,
                           "ax": [((1.0, 1.0, 1.0), (200, 200, 200))] * 6})
    plans = plan_experiment(fp, Budget("cpu", 0.25, "preset"))
    for vp in plans.views.values():
        seg = vp.segmentation
        assert max(seg.architecture.features_per_stage) <= 64 and seg.architecture.features_per_stage[0] == 8
        assert max(seg.patch_size) <= 64 and seg.batch_size == 2
        assert 2 <= seg.architecture.n_stages <= 6
        assert seg.memory_estimate_gb <= 0.25
        assert vp.classification.memory_estimate_gb <= 0.25
        # full resolution: patches of the native spacing, and a classification region of at most 128k voxels
        assert np.prod(vp.classification.roi_voxels) <= CPU_PRESET.max_classification_voxels
    sag = plans.views["sag"]
    assert sag.target_spacing == (3.0, 0.4, 0.4)
    # the region (here the whole field of view: no labels) is coarsened in-plane first, to within 2x of the
    # thick-slice axis, then all axes together, only as far as the budget needs
    cls = sag.classification
    assert cls.roi_source == "field_of_view" and cls.spacing[0] > 3.0
    assert cls.spacing[0] / cls.spacing[1] == pytest.approx(2, rel=0.05)
    assert np.prod(cls.roi_voxels) > 0.9 * CPU_PRESET.max_classification_voxels


def test_coarsen_to_fit_leaves_small_images_alone_and_prefers_finer_axes():
    assert coarsen_to_fit((3.0, 1.0, 1.0), (10, 40, 40), 100_000) == (3.0, 1.0, 1.0)
    sp = coarsen_to_fit((4.0, 0.5, 0.5), (30, 300, 300), 200_000)
    assert sp[0] == 4.0 and sp[1] == sp[2] > 0.5
    voxels = np.prod([round(e / s) for e, s in zip((120.0, 150.0, 150.0), sp)])
    assert voxels <= 200_000
    iso = coarsen_to_fit((1.0, 1.0, 1.0), (100, 100, 100), 50_000)
    assert iso[0] == iso[1] == iso[2] > 2.5


def test_plan_experiment_views_share_encoder_and_record_budget():
    fp = fake_fingerprint({"sag": [((3.0, 0.4, 0.4), (30, 200, 180))] * 5,
                           "cor": [((3.3, 0.35, 0.35), (28, 220, 220))] * 5}, findings=("tear", "effusion"))
    budget = Budget("gpu", 8.0, "user")
    plans = plan_experiment(fp, budget)
    assert plans.budget == budget and set(plans.views) == {"sag", "cor"}
    for vp in plans.views.values():
        # The classifier's encoder is exactly the segmentation encoder (weights transfer 1:1).
        assert vp.classification.architecture == vp.segmentation.architecture
        assert all(s % d == 0 for s, d in zip(vp.classification.input_size, vp.segmentation.architecture.shape_divisor))
        assert vp.classification.num_findings == 2
        assert vp.diffusion.patch_size == vp.segmentation.patch_size
        assert (vp.diffusion.timesteps, vp.diffusion.schedule, vp.diffusion.prediction) == (1000, "cosine", "epsilon")
        assert vp.normalization.scheme == "zscore"
        assert vp.resampling.image_order == 3 and vp.resampling.label_order == 1
        assert vp.resampling.through_plane_order == 0 and vp.resampling.separate_through_plane
    # Deterministic: a pure function of the fingerprint and the budget.
    assert plan_experiment(fp, budget) == plans


def test_classification_coarsens_spacing_when_field_of_view_does_not_fit():
    fp = fake_fingerprint({"ax": [((1.0, 1.0, 1.0), (256, 256, 256))] * 4})
    small = plan_experiment(fp, Budget("gpu", 1.0)).views["ax"].classification
    large = plan_experiment(fp, Budget("gpu", 40.0)).views["ax"].classification
    assert min(small.spacing) > 1.0  # coarsened to fit 1 GB
    assert large.spacing == pytest.approx((1.0, 1.0, 1.0)) and large.input_size == (256, 256, 256)
    assert small.memory_estimate_gb <= 1.0 and large.memory_estimate_gb <= 40.0


def test_ct_modality_gets_ct_normalisation():
    fp = fake_fingerprint({"ax": [((1.0, 1.0, 1.0), (64, 64, 64))] * 3}, modality="CT")
    norm = plan_experiment(fp, Budget("gpu", 8.0)).views["ax"].normalization
    assert norm.scheme == "ct" and norm.p005 == 120.0 and norm.p995 == 800.0


@pytest.mark.parametrize("spacing, median, gb", [
    ((1.0, 1.0, 1.0), (6, 6, 6), 8.0),  # too small to pool: the patch grows to allow one stage
    ((3.0, 0.5, 0.5), (1, 64, 64), 8.0),  # a single slice
    ((1.0, 1.0, 1.0), (6, 6, 6), 1e-4),  # an impossible budget ends at the smallest patch instead of looping
    ((3.0, 0.4, 0.4), (32, 160, 160), 1e-4),
])
def test_degenerate_inputs_still_give_a_buildable_unet(spacing, median, gb):
    import torch

    from orthodiff_auto.networks import build_segmentation_network

    plan = plan_segmentation(spacing, median, 2, 3, Budget("gpu", gb), GPU_PRESET)
    assert plan.architecture.n_stages >= 2 and plan.batch_size == 2
    net = build_segmentation_network(plan.architecture, 1, 2, deep_supervision=False)
    with torch.no_grad():
        assert net(torch.zeros(1, 1, *plan.patch_size)).shape == (1, 2, *plan.patch_size)
