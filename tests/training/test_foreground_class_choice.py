"""The class a forced-foreground patch is centred on: uniform among the classes present (nnU-Net v2, the
default) or in proportion to their voxel counts (``foreground_class_choice=voxels``)."""

from types import SimpleNamespace

import numpy as np
import pytest

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.preprocessing.case import sample_class_locations
from orthodiff_auto.training.batches import PatchBatches
from orthodiff_auto.training.config import make_config
from orthodiff_auto.training.patch_sampling import patch_bbox

PATCH = (5, 9, 9)  # odd: the patch's centre voxel is the location it was centred on


def _case():
    """A large block (class 1, 24000 voxels), a medium one (class 2, 1000) and a 50-voxel one (class 3)."""
    seg = np.zeros((40, 60, 60), np.uint8)
    seg[5:35, 5:45, 5:25] = 1
    seg[10:20, 10:20, 40:50] = 2
    seg[30:32, 50:55, 50:55] = 3
    counts = {c: int((seg == c).sum()) for c in (1, 2, 3)}
    return seg, sample_class_locations(seg, [1, 2, 3]), counts


def _centre_class_frequencies(draw, seg, n=3000):
    found = np.zeros(4)
    for _ in range(n):
        (z0, _), (y0, _), (x0, _) = draw()
        found[seg[z0 + PATCH[0] // 2, y0 + PATCH[1] // 2, x0 + PATCH[2] // 2]] += 1
    return found[1:] / n


def test_uniform_choice_centres_every_present_class_equally_often():
    seg, locations, counts = _case()
    assert len(locations[1]) < counts[1]  # the stored locations are capped: counts must come from elsewhere
    rng = np.random.default_rng(0)
    freq = _centre_class_frequencies(lambda: patch_bbox(seg.shape, PATCH, rng, locations, True, "uniform", counts), seg)
    np.testing.assert_allclose(freq, [1 / 3] * 3, atol=0.04)


def test_voxel_choice_centres_classes_in_proportion_to_their_volume():
    seg, locations, counts = _case()
    rng = np.random.default_rng(0)
    freq = _centre_class_frequencies(lambda: patch_bbox(seg.shape, PATCH, rng, locations, True, "voxels", counts), seg)
    expected = np.array([counts[c] for c in (1, 2, 3)]) / sum(counts.values())
    np.testing.assert_allclose(freq, expected, atol=0.02)
    assert freq[2] < 0.01  # the 50-voxel structure is almost never the centre


def test_unknown_choice_is_refused():
    seg, locations, counts = _case()
    with pytest.raises(ValueError, match="class_choice"):
        patch_bbox(seg.shape, PATCH, np.random.default_rng(0), locations, True, "rare-first", counts)
    with pytest.raises(UserInputError, match="foreground_class_choice"):
        make_config("smoke", ["foreground_class_choice=rare-first"])


@pytest.mark.parametrize("choice", ["uniform", "voxels"])
def test_batches_pass_the_configured_choice_and_are_reproducible(choice):
    """Through PatchBatches (every sample forced) the choice reaches the sampler, and batch k is the same
    whenever it is drawn (the class and the voxel come from the batch's own seeded generator)."""
    seg, locations, counts = _case()
    props = SimpleNamespace(class_locations=locations, class_voxel_counts=counts)

    class Source:
        def load(self, case_id):
            return seg[None].astype(np.float32), seg[None], props

    config = make_config("smoke", [f"foreground_class_choice={choice}"])
    make = lambda: PatchBatches(Source(), ["a"], PATCH, 4, None, 0, 400, seed=5,  # noqa: E731
                                oversample_foreground=1.0, foreground_locations=lambda p: p.class_locations,
                                foreground_class_choice=config.foreground_class_choice,
                                foreground_counts=lambda p: p.class_voxel_counts)
    batches = make()
    centres = np.concatenate([batches[k]["seg"].numpy()[:, 0, 2, 4, 4] for k in range(300)])
    smallest = np.mean(centres == 3)
    assert (smallest > 0.28) if choice == "uniform" else (smallest < 0.01)
    assert np.array_equal(make()[7]["seg"].numpy(), batches[7]["seg"].numpy())
