"""``generate_synthetic --clinical-signal``: clinical variables that carry signal, and findings that co-occur.

Each case gets an age (years, uniform 18-80), a sex (F or M) and a body-mass index (normal, mean 27, sd 4,
kept within 17-45); each value is missing (an empty cell) with probability ``MISSING_FRACTION``. The
findings are then drawn with the same uniform numbers as without the option, against prevalences shifted on
the logit scale by the joint's ``ClinicalEffects``:

- ``age``: degenerative findings (the knee's meniscal tears) grow likelier with age, ``age_log_odds`` per
  ``AGE_SCALE`` years away from ``AGE_CENTRE``;
- ``bmi`` and ``sex``: smaller shifts of the findings the joint names;
- co-occurrence: a finding that comes with a trigger (the knee's ACL tear with a lateral meniscus tear and an
  effusion) gets ``co_log_odds`` more when its trigger is present; triggers are drawn first.

The shifts use the true values, also where the table then leaves a value out. A joint without effects
(``Joint.clinical_effects`` None) still gets the columns, which then carry no signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

CLINICAL_DECLARATION = [{"name": "age", "type": "numeric"},
                        {"name": "sex", "type": "categorical", "categories": ["F", "M"]},
                        {"name": "bmi", "type": "numeric"}]
MISSING_FRACTION = 0.08
AGE_CENTRE, AGE_SCALE = 49.0, 18.0
BMI_CENTRE, BMI_SCALE = 27.0, 4.0


@dataclass(frozen=True)
class ClinicalEffects:
    """How a joint's findings depend on the clinical variables and on each other (log-odds shifts)."""

    age_log_odds: Mapping[str, float] = field(default_factory=dict)  # per AGE_SCALE years over AGE_CENTRE
    bmi_log_odds: Mapping[str, float] = field(default_factory=dict)  # per BMI_SCALE over BMI_CENTRE
    female_log_odds: Mapping[str, float] = field(default_factory=dict)  # F against M
    co_occurrence: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # trigger -> finding -> shift


def sample_clinical(rng: np.random.Generator) -> dict[str, Any]:
    """True age, sex, bmi and which of them the table leaves out (a fixed number of draws)."""
    age = float(np.round(rng.uniform(18.0, 80.0)))
    sex = "F" if rng.random() < 0.5 else "M"
    bmi = float(np.round(np.clip(rng.normal(BMI_CENTRE, BMI_SCALE), 17.0, 45.0), 1))
    missing = rng.random(3) < MISSING_FRACTION
    return {"age": age, "sex": sex, "bmi": bmi,
            "missing": [name for name, gone in zip(("age", "sex", "bmi"), missing) if gone]}


def clinical_cells(clinical: Mapping[str, Any]) -> dict[str, str]:
    """The findings.csv cells of a case ("" where the value is left out)."""
    out = {"age": f"{clinical['age']:.0f}", "sex": clinical["sex"], "bmi": f"{clinical['bmi']:.1f}"}
    return {k: ("" if k in clinical["missing"] else v) for k, v in out.items()}


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def sample_presence_with_clinical(rng: np.random.Generator, findings: tuple[str, ...],
                                  prevalence: Mapping[str, float], clinical: Mapping[str, Any],
                                  effects: ClinicalEffects | None) -> dict[str, bool]:
    """Like ``joint.sample_presence`` (the same uniform draw per finding, in order) with prevalences shifted by
    the case's clinical values and by the triggers present (triggers decided first)."""
    draws = rng.random(len(findings))
    effects = effects or ClinicalEffects()
    base = {}
    for name in findings:
        z = _logit(prevalence[name])
        z += effects.age_log_odds.get(name, 0.0) * (clinical["age"] - AGE_CENTRE) / AGE_SCALE
        z += effects.bmi_log_odds.get(name, 0.0) * (clinical["bmi"] - BMI_CENTRE) / BMI_SCALE
        z += effects.female_log_odds.get(name, 0.0) * (clinical["sex"] == "F")
        base[name] = z
    index = {name: i for i, name in enumerate(findings)}
    present: dict[str, bool] = {}
    dependents = {f for shifts in effects.co_occurrence.values() for f in shifts}
    for name in [f for f in findings if f not in dependents] + [f for f in findings if f in dependents]:
        z = base[name] + sum(shifts.get(name, 0.0) for trigger, shifts in effects.co_occurrence.items()
                             if present.get(trigger, False))
        present[name] = bool(draws[index[name]] < 1.0 / (1.0 + math.exp(-z)))
    return {name: present[name] for name in findings}


__all__ = ["CLINICAL_DECLARATION", "ClinicalEffects", "clinical_cells", "sample_clinical",
           "sample_presence_with_clinical"]
