"""In-memory case sources and tiny preprocessed folders for the diffusion tests (tiny plans: tests.plans.tiny_plans)."""

from __future__ import annotations

import numpy as np
import pytest

from orthodiff_auto.training.batches import CaseSource
from tests.plans.tiny_plans import tiny_plans


def blob_volume(rng: np.random.Generator, shape=(10, 24, 24)) -> np.ndarray:
    """A z-scored-looking volume: a bright ellipsoid on a dark, slightly noisy background."""
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    c = rng.uniform(-0.3, 0.3, 3)
    r = rng.uniform(0.4, 0.7, 3)
    inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 < 1
    vol = np.where(inside, 1.5, -0.8) + 0.1 * rng.standard_normal(shape)
    return vol[None].astype(np.float32)


class MemorySource(CaseSource):
    """In-memory cases: id -> (1, z, y, x) float32 volume, no segmentation."""

    def __init__(self, n=4, seed=0, shape=(10, 24, 24)):
        rng = np.random.default_rng(seed)
        self.volumes = {f"case{i:02d}": blob_volume(rng, shape) for i in range(n)}

    def load(self, case_id):
        return self.volumes[case_id], None, {}

    def case_ids(self):
        return sorted(self.volumes)


@pytest.fixture
def make_preprocessed(tmp_path):
    """Factory: a tiny PREPROCESSED_DIR (plans.json + <view>/ cases through the real preprocessing API)."""

    def make(views=("sag",), train=("c001", "c002"), unlabeled=("u001",), test=(), plans: Plans | None = None):
        from orthodiff_auto.preprocessing.case import preprocess_case
        from orthodiff_auto.preprocessing.storage import write_case
        from tests.conftest import sphere_scan, view_geometry

        root = tmp_path / "preprocessed"
        root.mkdir()
        plans = plans or tiny_plans(views)
        plans.save(root / "plans.json")
        rng = np.random.default_rng(0)
        for view in views:
            vp = plans.view(view)
            for subset, ids in (("train", train), ("unlabeled", unlabeled), ("test", test)):
                for cid in ids:
                    g = view_geometry(view, shape=(10, 24, 24))
                    image, label = sphere_scan(g.shape, rng)
                    data, seg, props = preprocess_case(image, g, vp, label if subset == "train" else None,
                                                       case_id=cid)
                    props = props.with_source(cid, subset, {}, "")
                    write_case(root / view, cid, data, seg, props, vp.segmentation.patch_size)
        return root

    return make


@pytest.fixture(autouse=True)
def _one_thread():
    """These networks are tiny: one intra-op thread is as fast and does not collapse when other processes
    occupy the cores (OpenMP threads spin-waiting on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
