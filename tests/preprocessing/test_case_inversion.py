from dataclasses import replace

import numpy as np
import pytest

from orthodiff_auto.data.image_io import ImageGeometry, read_geometry, read_image, write_image
from orthodiff_auto.plans.planner import plan_view
from orthodiff_auto.plans.schema import Budget, ViewPlan
from orthodiff_auto.preprocessing import preprocess_case, revert_to_original
from orthodiff_auto.preprocessing.resampling import resample_image
from tests.plans.fake_fingerprint import fake_fingerprint
from tests.preprocessing.synth import VIEW_DIRECTIONS, phantom

# A sagittal scan stored with its slices along array axis 2 and its S-I axis running inferior: canonical
# orientation must transpose and flip it, and the inverse must undo both.
ODD_SAG = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)


def view_plan(target, view="sag") -> ViewPlan:
    fp = fake_fingerprint({view: [((3.0, 0.5, 0.5), (12, 48, 48))] * 3})
    vp = plan_view(fp.views[view], fp, Budget("cpu", 0.25))
    return replace(vp, target_spacing=tuple(float(t) for t in target))


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _case(shape, spacing, direction, border=2, seed=0):
    rng = np.random.default_rng(seed)
    image, label = phantom(shape, spacing, rng, border=border)
    g = ImageGeometry(tuple(shape), tuple(spacing), (10.0, -20.0, 5.0), tuple(direction))
    return image, label, g


@pytest.mark.parametrize("direction, shape, spacing", [
    (VIEW_DIRECTIONS["sag"], (12, 40, 36), (3.0, 0.5, 0.5)),
    (ODD_SAG, (36, 40, 12), (0.5, 0.5, 3.0)),
])
def test_case_at_target_spacing_comes_back_voxel_identical(direction, shape, spacing):
    image, label, g = _case(shape, spacing, direction)
    vp = view_plan((3.0, 0.5, 0.5))
    data, seg, props = preprocess_case(image, g, vp, label)
    # Cropped (zero border) but not resampled; canonical order puts the 3 mm axis first.
    assert props.crop_bbox != tuple((0, s) for s in props.shape_before_cropping)
    assert data.shape[1:] == props.shape_after_cropping == seg.shape[1:]
    assert data.shape[1] == shape[int(np.argmax(spacing))] - 4
    back = revert_to_original(seg, props, vp)
    assert back.shape == label.shape and back.dtype == seg.dtype
    assert np.array_equal(back, label)
    probs = np.stack([seg[0] == c for c in range(3)]).astype(np.float32)
    back_p = revert_to_original(probs, props, vp)
    assert back_p.shape == (3,) + label.shape
    assert np.array_equal(back_p.argmax(0), label)


@pytest.mark.parametrize("direction, shape, spacing, target", [
    (VIEW_DIRECTIONS["sag"], (11, 44, 40), (3.3, 0.45, 0.55), (3.0, 0.5, 0.5)),
    (ODD_SAG, (40, 44, 10), (0.55, 0.45, 3.6), (3.0, 0.5, 0.5)),
    (VIEW_DIRECTIONS["ax"], (30, 30, 30), (1.1, 0.9, 1.0), (1.0, 1.0, 1.0)),
])
def test_resampled_case_reverts_to_original_geometry(tmp_path, direction, shape, spacing, target):
    image, label, g = _case(shape, spacing, direction)
    src = tmp_path / "img.nii.gz"
    write_image(src, image, g)
    image, g = read_image(src)  # exactly what a file gives (float32 spacing etc.)
    vp = view_plan(target)
    data, seg, props = preprocess_case(image, g, vp, label)
    assert data.dtype == np.float32 and seg.dtype == np.uint8
    assert props.shape_after_resampling != props.shape_after_cropping
    back = revert_to_original(seg, props, vp)
    assert back.shape == label.shape
    for c in (1, 2):
        # The phantom's structures are several voxels thick along every axis.
        assert dice(back == c, label == c) > 0.95
    out = tmp_path / "pred.nii.gz"
    write_image(out, back, props.original_geometry)
    assert read_geometry(out) == read_geometry(src)
    probs = np.stack([seg[0] == c for c in range(3)]).astype(np.float32)
    back_p = revert_to_original(probs, props, vp)
    assert np.allclose(back_p.sum(0), 1, atol=1e-5)
    for c in (1, 2):
        assert dice(back_p.argmax(0) == c, label == c) > 0.95


def test_preprocessed_outputs(tmp_path):
    image, label, g = _case((12, 40, 36), (3.0, 0.5, 0.5), VIEW_DIRECTIONS["sag"], border=0)
    vp = view_plan((3.0, 0.4, 0.4))
    data, seg, props = preprocess_case(image, g, vp, label)
    assert data.shape == (1, 12, 50, 45) == (1,) + props.shape_after_resampling
    # Per-image z-score over the whole image (no zero background here), then resampled (nnU-Net's order).
    at_source, _, _ = preprocess_case(image, g, view_plan((3.0, 0.5, 0.5)), label)
    assert at_source.mean() == pytest.approx(0, abs=1e-3) and at_source.std() == pytest.approx(1, abs=1e-2)
    expected = resample_image(at_source, data.shape[1:], (3.0, 0.5, 0.5), (3.0, 0.4, 0.4), vp.resampling)
    assert np.array_equal(data, expected)
    for c, locs in props.class_locations.items():
        assert c in (1, 2) and 0 < len(locs) <= 2000
        assert (seg[0][tuple(locs.T)] == c).all()
    # the full voxel count per class (the stored locations are capped): what volume-weighted sampling reads
    assert props.class_voxel_counts == {c: int((seg[0] == c).sum()) for c in (1, 2)}
    assert type(props).from_dict(props.to_dict()).class_voxel_counts == props.class_voxel_counts
    # Unlabelled scan: no seg, no locations.
    data2, seg2, props2 = preprocess_case(image, g, vp)
    assert seg2 is None and not props2.has_seg and np.array_equal(data2, data)
    with pytest.raises(ValueError, match="shape"):
        revert_to_original(seg[:, :-1], props, vp)


def test_zero_background_uses_nonzero_mask():
    image, label, g = _case((12, 40, 36), (3.0, 0.5, 0.5), VIEW_DIRECTIONS["sag"], border=0)
    image[:, :8, :10] = 0  # a real zero background inside the crop box (touching the border: not a hole)
    vp = view_plan((3.0, 0.5, 0.5))
    vp = replace(vp, normalization=replace(vp.normalization, use_mask_for_norm=True))
    data, _, props = preprocess_case(image, g, vp, label)
    assert props.shape_after_cropping == image.shape
    inside = data[0][image != 0]
    assert inside.mean() == pytest.approx(0, abs=1e-3) and inside.std() == pytest.approx(1, abs=1e-2)
    assert (data[0][:, :8, :10] == 0).all()
    # Without the mask, the zeros take part in the statistics.
    plain, _, _ = preprocess_case(image, g, view_plan((3.0, 0.5, 0.5)), label)
    assert plain[0].mean() == pytest.approx(0, abs=1e-3) and plain[0][image != 0].mean() > 0.05
