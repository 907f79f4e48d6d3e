"""The "range" normalisation (the OrthoDiffusion authors' input): each image's [min, max] mapped onto [-1, 1]."""

from __future__ import annotations

import numpy as np

from orthodiff_auto.plans.subplans import NormalizationPlan
from orthodiff_auto.preprocessing.normalization import normalize_image


def test_each_image_is_mapped_from_its_own_min_and_max_to_minus_one_one():
    plan = NormalizationPlan("range", False, 0.0, 1.0, 0.0, 0.0)
    image = np.array([[[20.0, 70.0], [120.0, 45.0]]])
    out, stats = normalize_image(image, plan)
    np.testing.assert_allclose(out, [[[-1.0, 0.0, ], [1.0, -0.5]]], atol=1e-6)
    assert stats == {"mean": 70.0, "std": 50.0}  # the same affine map as (x - mean) / std
    flat, _ = normalize_image(np.full((2, 2, 2), 5.0), plan)
    assert np.isfinite(flat).all()
