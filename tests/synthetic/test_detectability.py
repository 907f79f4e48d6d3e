"""The visibility rule at diagnostic resolution: every knee finding changes at least 10 voxels by more than
2 noise sigmas on the view that shows it (its best view; every view when it has none) in >= 90% of cases,
with the noise scaled by voxel volume; and the rule's checker reports a lesion too small to see."""

from __future__ import annotations

import pytest

from orthodiff_auto.synthetic import FINDINGS, sample_case
from orthodiff_auto.synthetic.detectability import ViewDetectability, measure_case, rule_failures, rule_views

CASES = range(3)  # seed 7, training cases (every view present)


def measure(finding: str, size: str = "standard", params: dict | None = None) -> list[dict]:
    return [measure_case(sample_case(7, i, size=size), finding, views=rule_views("knee", finding), params=params)
            for i in CASES]


@pytest.fixture(scope="module")
def standard_measurements():
    return {finding: measure(finding) for finding in FINDINGS}


def test_every_finding_is_visible_on_its_view_at_the_standard_preset(standard_measurements):
    assert rule_failures("knee", standard_measurements) == {}


def test_the_rule_fails_for_a_lesion_shrunk_below_it(standard_measurements):
    """A partial ACL tear whose cleft is 0.3 mm wide and through a fifth of the ligament: a handful of
    voxels at most. The checker names it and leaves the other findings alone."""
    shrunk = measure("acl_tear", params={"grade": "partial", "gap": 0.3, "depth": 0.2, "inflate": 0.0})
    failures = rule_failures("knee", {**standard_measurements, "acl_tear": shrunk})
    assert set(failures) == {"acl_tear"} and failures["acl_tear"].startswith("sag: 0/3 cases")


def test_the_rule_fails_at_the_tiny_preset_for_a_thin_tear():
    """Tiny's 4 x 4 x 9 mm voxels hide a collateral tear: the rule does not hold there."""
    assert "lcl_tear" in rule_failures("knee", {"lcl_tear": measure("lcl_tear", size="tiny")})


def case(voxels: int) -> dict[str, ViewDetectability]:
    return {"sag": ViewDetectability(voxels, voxels, 3.0, None)}


@pytest.mark.parametrize("visible, total, fails", [(9, 10, False), (8, 10, True), (10, 10, False), (0, 3, True)])
def test_rule_needs_ninety_percent_of_cases(visible, total, fails):
    cases = [case(10)] * visible + [case(9)] * (total - visible)
    assert ("acl_tear" in rule_failures("knee", {"acl_tear": cases})) == fails


def test_rule_views_are_the_best_view_else_every_view():
    assert rule_views("knee", "mcl_tear") == ("cor",)
    assert rule_views("knee", "effusion") == ("sag", "cor", "ax")
    assert rule_views("knee", "medial_meniscus_tear") == ("sag", "cor", "ax")
