"""nnU-Net's segmentation configurations in the plans (2d, 3d_lowres, 3d_cascade_fullres besides the view's own
3d_fullres): the planner's rules, the schema (JSON round trip, validation), ``ViewPlan.for_configuration``."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans import planner
from orthodiff_auto.plans.memory import count_to_gb, feature_map_count
from orthodiff_auto.plans.planner import (
    LOWRES_CREATION_THRESHOLD,
    LOWRES_SPACING_STEP,
    median_shape_at,
    plan_experiment,
    plan_segmentation,
    preset_for,
)
from orthodiff_auto.plans.schema import Budget, Plans
from tests.plans.fake_fingerprint import fake_fingerprint
from tests.plans.plans_files import assert_load_rejects

GPU8, CPU = Budget("gpu", 8.0, "user"), Budget("cpu", 0.25, "preset")
SIX_LABELS = {"background": 0, "a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
# Median images much larger than any 3d_fullres patch: thick-slice anisotropic (sag) and isotropic (ax)
LARGE = {"sag": [((4.0, 0.3, 0.3), (60, 900, 900))] * 4, "ax": [((1.0, 1.0, 1.0), (400, 400, 400))] * 4}
# Images a 3d_fullres patch covers (about) whole: a knee MRI like the demo's (cor) and a small isotropic one (ax)
SMALL = {"cor": [((5.5, 2.0, 2.0), (22, 75, 75))] * 5, "ax": [((1.0, 1.0, 1.0), (40, 40, 40))] * 3}

_cache: dict = {}


def planned(views: dict, budget: Budget, labels=None) -> tuple[Plans, object]:
    """(plans, fingerprint), memoised: planning a large fingerprint takes a second."""
    key = (repr(views), budget, repr(labels))
    if key not in _cache:
        fp = fake_fingerprint(views, labels=labels)
        _cache[key] = (plan_experiment(fp, budget), fp)
    return _cache[key]


def coverage(patch, shape) -> float:
    return float(np.prod(patch, dtype=np.float64) / np.prod(shape, dtype=np.float64))


# --- 3d_lowres and 3d_cascade_fullres ----------------------------------------------------------------------


@pytest.mark.parametrize("labels", [None, SIX_LABELS])
@pytest.mark.parametrize("budget", [GPU8, CPU])
@pytest.mark.parametrize("view", ["sag", "ax"])
def test_large_images_get_lowres_and_cascade(view, budget, labels):
    plans, fp = planned(LARGE, budget, labels)
    vp, vf = plans.views[view], fp.views[view]
    n_labels = len(fp.labels)
    assert coverage(vp.segmentation.patch_size, vp.median_shape_after_resampling) < LOWRES_CREATION_THRESHOLD
    assert vp.configuration_names == ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")
    lo = vp.configuration("3d_lowres")
    assert lo.data_identifier == f"{view}_3d_lowres" and lo.previous_stage is None
    full, low = np.asarray(vp.target_spacing), np.asarray(lo.target_spacing)
    assert (low >= full).all() and (low > full).any()
    factors = low / full
    if low.max() / low.min() > 2 * LOWRES_SPACING_STEP:
        # nnU-Net coarsens the axes more than 2x finer than the coarsest first: the coarsest one is untouched
        assert factors[int(np.argmax(full))] == pytest.approx(1.0)
        assert factors.max() > 1.5
    if np.ptp(full) == 0:  # isotropic data stays isotropic
        assert factors == pytest.approx([factors[0]] * 3)
    # its median shape is the cases' at that spacing; its own patch covers at least the threshold of it
    assert lo.median_shape_after_resampling == tuple(int(round(m)) for m in median_shape_at(vf, lo.target_spacing))
    assert coverage(lo.segmentation.patch_size, lo.median_shape_after_resampling) >= LOWRES_CREATION_THRESHOLD
    # worth a stage (nnU-Net's drop rule): the 3d_fullres median image has at least twice its voxels
    assert np.prod(vp.median_shape_after_resampling) >= 2 * np.prod(lo.median_shape_after_resampling)
    # its network is planned by the 3d_fullres rules at its spacing, within the budget
    assert lo.segmentation == plan_segmentation(lo.target_spacing, median_shape_at(vf, lo.target_spacing), n_labels,
                                                vf.num_labelled, budget, preset_for(budget))
    assert lo.segmentation.num_classes == n_labels and lo.segmentation.memory_estimate_gb <= budget.memory_gb
    # the cascade's second stage: 3d_fullres's plan with 3d_lowres's prediction as extra input channels
    cas = vp.configuration("3d_cascade_fullres")
    assert cas.previous_stage == "3d_lowres" and cas.data_identifier == view
    assert cas.segmentation == vp.segmentation and cas.target_spacing == vp.target_spacing
    assert cas.median_shape_after_resampling == vp.median_shape_after_resampling
    assert vp.input_channels("3d_cascade_fullres") == 1 + (n_labels - 1)
    assert vp.input_channels("3d_cascade_fullres", num_classes=4) == 4
    assert [vp.input_channels(c) for c in ("2d", "3d_fullres", "3d_lowres")] == [1, 1, 1]


@pytest.mark.parametrize("budget", [GPU8, CPU])
@pytest.mark.parametrize("view", ["cor", "ax"])
def test_small_images_get_neither_lowres_nor_cascade(view, budget):
    plans, _ = planned(SMALL, budget)
    vp = plans.views[view]
    assert coverage(vp.segmentation.patch_size, vp.median_shape_after_resampling) >= LOWRES_CREATION_THRESHOLD
    assert set(vp.configurations) == {"2d"} and vp.configuration_names == ("2d", "3d_fullres")
    with pytest.raises(UserInputError, match=r"'3d_lowres' is not planned .*\['2d', '3d_fullres'\]"):
        vp.configuration("3d_lowres")
    with pytest.raises(UserInputError, match="3d_cascade_fullres"):
        vp.for_configuration("3d_cascade_fullres")


def test_the_patch_share_decides_not_the_image_size(monkeypatch):
    """The same 160x400x400 images: at 8 GB the 3d_fullres patch covers under 25% of them (3d_lowres planned), at
    24 GB more (none, even when the drop rule below would keep any lowres stage)."""
    fp = fake_fingerprint({"ax": [((1.0, 0.8, 0.8), (160, 400, 400))] * 5})
    small_budget = plan_experiment(fp, GPU8).views["ax"]
    assert coverage(small_budget.segmentation.patch_size, small_budget.median_shape_after_resampling) < 0.25
    assert "3d_lowres" in small_budget.configurations
    monkeypatch.setattr(planner, "LOWRES_MIN_IMAGE_RATIO", 1.0)
    big_budget = plan_experiment(fp, Budget("gpu", 24.0)).views["ax"]
    assert coverage(big_budget.segmentation.patch_size, big_budget.median_shape_after_resampling) >= 0.25
    assert "3d_lowres" not in big_budget.configurations and "3d_cascade_fullres" not in big_budget.configurations


def test_lowres_hardly_smaller_than_fullres_is_dropped(monkeypatch):
    """nnU-Net drops 3d_lowres when its median image keeps more than half of the 3d_fullres voxels: 0.4 mm
    in-plane 500x500 slices reach 25% coverage at 0.48 mm already (1.4x fewer voxels)."""
    fp = fake_fingerprint({"sag": [((3.0, 0.4, 0.4), (40, 500, 500))] * 4})
    vp = plan_experiment(fp, GPU8).views["sag"]
    assert coverage(vp.segmentation.patch_size, vp.median_shape_after_resampling) < LOWRES_CREATION_THRESHOLD
    assert set(vp.configurations) == {"2d"}
    monkeypatch.setattr(planner, "LOWRES_MIN_IMAGE_RATIO", 1.0)
    kept = plan_experiment(fp, GPU8).views["sag"].configurations
    assert "3d_lowres" in kept and 1 < np.prod(vp.median_shape_after_resampling) / np.prod(
        kept["3d_lowres"].median_shape_after_resampling) < 2


# --- 2d ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [GPU8, CPU])
@pytest.mark.parametrize("views, view, labels", [(LARGE, "sag", None), (LARGE, "ax", SIX_LABELS),
                                                  (SMALL, "cor", None), (SMALL, "ax", {"background": 0, "a": 1})])
def test_2d_plan(views, view, labels, budget):
    plans, fp = planned(views, budget, labels)
    vp = plans.views[view]
    c = vp.configuration("2d")
    seg, arch = c.segmentation, c.segmentation.architecture
    preset = preset_for(budget)
    # one slice per patch; kernels and strides of 1 across slices: a 2D U-Net on each slice
    assert seg.patch_size[0] == 1
    assert all(k[0] == 1 for k in arch.kernel_sizes) and all(s[0] == 1 for s in arch.strides)
    assert arch.n_stages >= 2 and all(p % d == 0 for p, d in zip(seg.patch_size, arch.shape_divisor))
    # in-plane: the median slice (padded to the divisor), clipped
    edge = 2048 if preset.max_patch_edge is None else 2 * preset.max_patch_edge
    assert all(p <= math.ceil(min(m, edge) / d) * d
               for p, m, d in zip(seg.patch_size[1:], vp.median_shape_after_resampling[1:], arch.shape_divisor[1:]))
    assert (c.target_spacing, c.median_shape_after_resampling) == (vp.target_spacing, vp.median_shape_after_resampling)
    assert c.data_identifier == view and c.previous_stage is None and seg.num_classes == len(fp.labels)
    assert seg.memory_estimate_gb <= budget.memory_gb
    # batch: the largest within the memory target and 5% of the dataset's voxels, at least 2; at the cpu budget
    # at most as many voxels per batch as 3d_fullres's
    per_sample = count_to_gb(feature_map_count(arch, seg.patch_size, 1, max(2, len(fp.labels)), True), 1)
    patch_voxels = int(np.prod(seg.patch_size))
    limits = [int(budget.memory_gb // per_sample),
              round(np.prod(vp.median_shape_after_resampling) * fp.views[view].num_labelled * 0.05 / patch_voxels)]
    if budget.kind == "cpu":
        fullres_voxels = int(np.prod(vp.segmentation.patch_size)) * vp.segmentation.batch_size
        limits.append(fullres_voxels // patch_voxels)
    assert seg.batch_size == max(2, min(limits))


def test_2d_network_runs_on_one_slice():
    import torch

    from orthodiff_auto.networks import build_segmentation_network

    plans, _ = planned(SMALL, CPU)
    seg = plans.views["cor"].configuration("2d").segmentation
    net = build_segmentation_network(seg.architecture, 1, seg.num_classes, deep_supervision=False)
    with torch.no_grad():
        out = net(torch.zeros(2, 1, *seg.patch_size))
    assert out.shape == (2, seg.num_classes, *seg.patch_size)


# --- ViewPlan.for_configuration ---------------------------------------------------------------------------


def test_for_configuration_is_the_view_plan_as_the_configuration_sees_it():
    plans, _ = planned(LARGE, CPU)
    vp = plans.views["sag"]
    assert vp.for_configuration("3d_fullres") is vp and vp.for_configuration() is vp
    for name in ("2d", "3d_lowres", "3d_cascade_fullres"):
        cfg, seen = vp.configuration(name), vp.for_configuration(name)
        assert seen.target_spacing == cfg.target_spacing
        assert seen.median_shape_after_resampling == cfg.median_shape_after_resampling
        assert seen.segmentation == cfg.segmentation and seen.diffusion.patch_size == cfg.segmentation.patch_size
        assert seen.configurations == {}
        # the rest is the view's
        for f in ("view", "normalization", "resampling", "classification", "num_training_cases"):
            assert getattr(seen, f) == getattr(vp, f)
    # same spacing, same preprocessed cases: only 3d_lowres has its own
    assert vp.for_configuration("2d").preprocessing_key == vp.preprocessing_key
    assert vp.for_configuration("3d_cascade_fullres").preprocessing_key == vp.preprocessing_key
    assert vp.for_configuration("3d_lowres").preprocessing_key != vp.preprocessing_key
    assert vp.for_configuration("3d_lowres").target_spacing != vp.target_spacing
    with pytest.raises(UserInputError, match="'4d' is not planned for view 'sag'"):
        vp.for_configuration("4d")


# --- schema -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plans_with_configurations() -> Plans:
    fp = fake_fingerprint({**LARGE, "cor": SMALL["cor"]})
    return plan_experiment(fp, CPU)


def test_configurations_round_trip_through_json(plans_with_configurations, tmp_path):
    plans = plans_with_configurations
    assert Plans.from_dict(plans.to_dict()) == plans
    path = tmp_path / "plans.json"
    plans.save(path)
    raw = json.loads(path.read_text())
    assert set(raw["views"]["sag"]["configurations"]) == {"2d", "3d_lowres", "3d_cascade_fullres"}
    assert set(raw["views"]["cor"]["configurations"]) == {"2d"}
    assert raw["views"]["sag"]["configurations"]["3d_cascade_fullres"]["previous_stage"] == "3d_lowres"
    loaded = Plans.load(path)
    assert loaded == plans
    lo = loaded.views["sag"].configurations["3d_lowres"]
    assert lo == plans.views["sag"].configurations["3d_lowres"]
    assert isinstance(lo.target_spacing, tuple) and isinstance(lo.segmentation.architecture.strides[1], tuple)


def test_plans_without_configurations_still_load(plans_with_configurations, tmp_path):
    d = plans_with_configurations.to_dict()
    for v in d["views"].values():
        v.pop("configurations")
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(d))
    vp = Plans.load(path).views["sag"]
    assert vp.configurations == {} and vp.configuration_names == ("3d_fullres",)
    assert vp.configuration("3d_fullres").segmentation == plans_with_configurations.views["sag"].segmentation
    with pytest.raises(UserInputError, match="'2d' is not planned"):
        vp.configuration("2d")


def test_configuration_plan_checks_its_fields(plans_with_configurations):
    lo = plans_with_configurations.views["sag"].configurations["3d_lowres"]
    with pytest.raises(ValueError, match="previous_stage"):
        replace(lo, previous_stage="4d")
    with pytest.raises(ValueError, match="target_spacing"):
        replace(lo, target_spacing=(1.0, -1.0, 1.0))


def _cfg(d, name):
    return d["views"]["sag"]["configurations"][name]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["views"]["sag"]["configurations"].update({"3d_midres": dict(_cfg(d, "2d"))}), "3d_midres"),
    (lambda d: d["views"]["sag"]["configurations"].update({"3d_fullres": dict(_cfg(d, "2d"))}), "3d_fullres"),
    (lambda d: d["views"]["sag"]["configurations"].pop("3d_lowres"), "previous_stage '3d_lowres' is not planned"),
    (lambda d: _cfg(d, "3d_cascade_fullres").update(previous_stage="4d"), "previous_stage"),
    (lambda d: _cfg(d, "3d_lowres").update(target_spacing=[0.0, 1.0, 1.0]), "target_spacing"),
    (lambda d: _cfg(d, "3d_lowres").pop("data_identifier"), "data_identifier"),
    (lambda d: _cfg(d, "2d").update(surprise=1), "surprise"),
    (lambda d: _cfg(d, "2d")["segmentation"].update(patch_size=[1, 33, 64]), "patch_size"),
])
def test_invalid_configurations_raise_user_error_naming_file(plans_with_configurations, tmp_path, mutate, message):
    d = plans_with_configurations.to_dict()
    mutate(d)
    assert_load_rejects(d, tmp_path, message)
