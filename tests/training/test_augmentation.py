import numpy as np
import pytest

from orthodiff_auto.training.augmentation import (
    AugmentationParams,
    build_training_transforms,
    rotated_patch_size,
    through_plane_axis_for_dummy_2d,
)
from orthodiff_auto.training.patch_sampling import crop_patch, patch_bbox


def _blobs(shape, rng):
    """Labels 0..3 as random boxes; the image encodes the label, so alignment can be checked voxel-wise."""
    seg = np.zeros(shape, np.float32)
    for lab in (1, 2, 3):
        lo = [rng.integers(0, s // 2) for s in shape]
        hi = [lo_ + rng.integers(s // 4, s // 2) for lo_, s in zip(lo, shape)]
        seg[tuple(slice(a, b) for a, b in zip(lo, hi))] = lab
    return seg


@pytest.mark.parametrize("dummy_axis, patch", [(0, (8, 32, 32)), (None, (24, 24, 24)), (2, (32, 32, 8))])
def test_spatial_augmentation_keeps_image_and_label_aligned(dummy_axis, patch):
    rng = np.random.default_rng(0)
    np.random.seed(0)
    params = AugmentationParams(p_rotation=1.0, p_scale=1.0, mirror=True)
    big = rotated_patch_size(patch, dummy_axis, params)
    seg = np.stack([_blobs(big, rng)[None] for _ in range(4)])
    data = seg * 100.0
    # spatial transforms only: intensity augmentations would change the image on purpose
    t = build_training_transforms(patch, dummy_axis, params, probability_scale=1.0)
    t.transforms = [x for x in t.transforms if type(x).__name__ in
                    ("SpatialTransform", "_FoldAxisIntoChannels", "_UnfoldAxisFromChannels", "MirrorTransform", "RemoveLabelTransform")]
    out = t(data=data.copy(), seg=seg.copy())
    assert out["data"].shape == (4, 1, *patch) and out["seg"].shape == (4, 1, *patch)
    recovered = np.clip(np.round(out["data"] / 100.0), 0, 3)
    agreement = (recovered == out["seg"]).mean()
    assert agreement > 0.95, agreement
    # the transform did something: the output is not a plain centre crop
    centre = tuple(slice((b - p) // 2, (b - p) // 2 + p) for b, p in zip(big, patch))
    assert any(not np.array_equal(out["seg"][i, 0], seg[i, 0][centre]) for i in range(4))


def test_dummy_2d_never_mixes_slices():
    # each slice has its own constant value: in-plane transforms must keep slice identity
    patch, params = (6, 24, 24), AugmentationParams(p_rotation=1.0, p_scale=1.0, mirror=False)
    big = rotated_patch_size(patch, 0, params)
    assert big[0] == patch[0] and big[1] > patch[1]
    data = np.broadcast_to(np.arange(1, big[0] + 1, dtype=np.float32)[:, None, None], big)[None, None].copy()
    t = build_training_transforms(patch, 0, params, with_seg=False)
    t.transforms = [x for x in t.transforms if type(x).__name__ in ("SpatialTransform", "_FoldAxisIntoChannels", "_UnfoldAxisFromChannels")]
    np.random.seed(1)
    out = t(data=data, seg=None)["data"][0, 0]
    for z in range(patch[0]):
        values = np.unique(np.round(out[z], 4))
        assert set(values) <= {0.0, float(z + 1 + (big[0] - patch[0]) // 2)}, (z, values[:5])


def test_dummy_2d_decision():
    assert through_plane_axis_for_dummy_2d((3.0, 0.5, 0.5), (16, 128, 128)) == 0
    assert through_plane_axis_for_dummy_2d((1.0, 1.0, 1.0), (64, 64, 64)) is None
    assert through_plane_axis_for_dummy_2d((0.5, 0.5, 4.0), (128, 128, 12)) == 2


def test_intensity_augmentation_changes_only_data():
    np.random.seed(3)
    seg = np.stack([_blobs((8, 32, 32), np.random.default_rng(i))[None] for i in range(8)])
    data = np.random.default_rng(0).normal(size=seg.shape).astype(np.float32)
    t = build_training_transforms((8, 32, 32), 0, AugmentationParams(p_rotation=0, p_scale=0, mirror=False), 4.0)
    t.transforms = [x for x in t.transforms if type(x).__name__ not in ("SpatialTransform",)]
    out = t(data=data.copy(), seg=seg.copy())
    assert not np.allclose(out["data"], data)
    np.testing.assert_array_equal(out["seg"], seg)


def test_patch_inside_image_or_centred():
    rng = np.random.default_rng(0)
    for _ in range(200):
        bb = patch_bbox((20, 100, 90), (16, 64, 64), rng)
        assert all(0 <= lo and hi <= s for (lo, hi), s in zip(bb, (20, 100, 90)))
    assert patch_bbox((10, 50, 50), (16, 64, 64), rng) == [[-3, 13], [-7, 57], [-7, 57]]


def test_forced_foreground_contains_requested_class():
    rng = np.random.default_rng(0)
    seg = np.zeros((1, 30, 60, 60), np.uint8)
    seg[0, 25:27, 50:52, 3:5] = 4  # tiny structure in a corner
    locs = {4: np.argwhere(seg[0] == 4)}
    for _ in range(20):
        bb = patch_bbox(seg.shape[1:], (8, 16, 16), rng, locs, force_foreground=True)
        assert (crop_patch(seg, bb) == 4).any()
    hits = sum((crop_patch(seg, patch_bbox(seg.shape[1:], (8, 16, 16), rng)) == 4).any() for _ in range(50))
    assert hits < 20  # uniform sampling rarely finds it: oversampling is what makes it seen


def test_crop_pads_outside():
    a = np.ones((1, 4, 4, 4), np.float32)
    out = crop_patch(a, [[-2, 2], [0, 4], [2, 6]])
    assert out.shape == (1, 4, 4, 4) and out[0, :2].sum() == 0 and out[0, 2:, :, :2].sum() == 16
    assert out[0, :, :, 2:].sum() == 0


def test_batches_reproducible_from_iteration_index():
    """Batch k is a pure function of (seed, rank, k): the basis of exact resume (noise variance comes from
    Python's `random`, the rest from numpy's global generator)."""
    from orthodiff_auto.training.batches import PatchBatches

    class Source:
        def load(self, case_id):
            rng = np.random.default_rng(int(case_id))
            seg = _blobs((10, 40, 40), rng)[None]
            return (seg * 50 + rng.normal(size=seg.shape)).astype(np.float32), seg, {}

    params = AugmentationParams(p_noise=1.0, p_blur=1.0, p_gamma=1.0)
    make = lambda: PatchBatches(Source(), ["1", "2", "3"], rotated_patch_size((8, 24, 24), 0, params), 2,  # noqa: E731
                                build_training_transforms((8, 24, 24), 0, params), 0, 20, seed=3)
    import random

    a, b = make(), make()
    for k in (0, 5, 3, 5):
        # whatever state the global generators are in (another process, another worker), batch k is the same
        random.seed(k)
        np.random.seed(k)
        first = a[k]
        random.seed(100 + k)
        np.random.seed(100 + k)
        assert np.array_equal(first["data"].numpy(), b[k]["data"].numpy())
        assert np.array_equal(first["seg"].numpy(), b[k]["seg"].numpy())
    assert not np.array_equal(a[0]["data"].numpy(), a[1]["data"].numpy())
