"""generate_synthetic --clinical-signal: age, sex and BMI columns that carry signal; co-occurring findings."""

import json

import numpy as np

from orthodiff_auto.data.dataset import load_raw_dataset
from orthodiff_auto.synthetic.clinical import sample_clinical, sample_presence_with_clinical
from orthodiff_auto.synthetic.generator import generate_dataset, sample_case
from orthodiff_auto.synthetic.joints import get_joint


def _draw(n: int, seed: int = 0):
    knee = get_joint("knee")
    rng = np.random.default_rng(seed)
    clinical = [sample_clinical(rng) for _ in range(n)]
    present = [sample_presence_with_clinical(rng, knee.findings, knee.default_prevalence, c, knee.clinical_effects)
               for c in clinical]
    return clinical, present


def test_age_raises_meniscal_tears_and_an_acl_tear_brings_effusion_and_lateral_meniscus_tears():
    clinical, present = _draw(3000)
    age = np.array([c["age"] for c in clinical])
    has = {f: np.array([p[f] for p in present]) for f in present[0]}
    old, young = age >= 65, age <= 32
    assert has["medial_meniscus_tear"][old].mean() > has["medial_meniscus_tear"][young].mean() + 0.3
    assert has["lateral_meniscus_tear"][old].mean() > has["lateral_meniscus_tear"][young].mean() + 0.2
    acl = has["acl_tear"]
    assert has["effusion"][acl].mean() > has["effusion"][~acl].mean() + 0.3
    assert has["lateral_meniscus_tear"][acl].mean() > has["lateral_meniscus_tear"][~acl].mean() + 0.2
    # findings the joint does not tie to age stay independent of it
    assert abs(has["pcl_tear"][old].mean() - has["pcl_tear"][young].mean()) < 0.08
    missing = np.mean([len(c["missing"]) for c in clinical]) / 3
    assert 0.05 < missing < 0.11


def test_the_option_changes_the_findings_and_nothing_else_of_a_case():
    plain, signal = sample_case(3, 7, size="tiny"), sample_case(3, 7, size="tiny", clinical_signal=True)
    assert plain.clinical is None and signal.clinical is not None
    assert plain.site == signal.site and plain.geometries == signal.geometries
    assert np.array_equal(plain.anatomy.rotation, signal.anatomy.rotation)
    assert plain.finding_params == signal.finding_params
    differs = [sample_case(3, i, size="tiny").findings != sample_case(3, i, size="tiny", clinical_signal=True).findings
               for i in range(40)]
    assert any(differs) and not all(differs)


def test_a_clinical_dataset_declares_and_writes_the_columns(tmp_path):
    out = tmp_path / "raw"
    generate_dataset(out, n_cases=2, n_test=1, size="tiny", seed=4, clinical_signal=True)
    declared = json.loads((out / "dataset.json").read_text())["clinical"]
    assert [d["name"] for d in declared] == ["age", "sex", "bmi"]
    ds = load_raw_dataset(out)  # the generated columns pass validation
    assert list(ds.findings.columns[-3:]) == ["age", "sex", "bmi"]
    assert list(ds.test_findings.columns[-3:]) == ["age", "sex", "bmi"]
    case = sample_case(4, 0, size="tiny", clinical_signal=True)
    row = ds.findings.loc[case.case_id]
    assert row["sex"] in ("", case.clinical["sex"]) and row["age"] in ("", f"{case.clinical['age']:.0f}")
