"""Fine-tuning from an encoder pretrained under another plan warns (the weights fit; the inputs differ), as
documentation/pretraining.md says: each difference once, naming the encoder file."""

from __future__ import annotations

import warnings

import pytest

from orthodiff_auto.networks import build_encoder
from orthodiff_auto.training.pretrained import load_pretrained_encoder
from tests.diffusion.test_export import exported  # noqa: F401  (the fixture: an exported tiny encoder)
from tests.plans.tiny_plans import tiny_view_plan


def test_other_plan_warns_about_each_difference_and_the_same_plan_is_silent(exported):  # noqa: F811
    _, path, spec = exported
    info = load_pretrained_encoder(build_encoder(spec, 1), path, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the plan it was pretrained under: no warning at all
        assert info.warn_about_differences(tiny_view_plan("sag", spec)) == []
    with pytest.warns(UserWarning) as caught:
        found = info.warn_about_differences(tiny_view_plan("cor", spec, spacing=(4.0, 0.5, 0.5)))
    assert found and [str(w.message) for w in caught] == [
        f"{info.path}: {d}; the weights fit, but fine-tuning starts from features of other inputs" for d in found]
    assert any("view" in d for d in found) and any("target_spacing" in d for d in found)
