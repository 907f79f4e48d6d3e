"""What the generator needs to know about a joint: a small description (``Joint``). The shared machinery does
the rest: placing scan grids, painting the scene's layers on them, partial volume, contrast, noise, the
dataset folder.

A joint brings its labels and findings (what its ``dataset.json`` declares), a sampler of the latent anatomy,
a sampler of the findings' parameters, a scene builder (``Scene``: implicit fields and painting layers, with
the present findings realised as anatomy changes the labels follow) and how a technologist plans its views:
where each view is centred and which joint-frame direction the planes are aligned with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from orthodiff_auto.synthetic.clinical import ClinicalEffects
from orthodiff_auto.synthetic.latent import Anatomy
from orthodiff_auto.synthetic.scene import Scene

BACKGROUND = "background"
POSTERIOR = (0.0, 1.0, 0.0)


def label_values(names: tuple[str, ...]) -> dict[str, int]:
    """dataset.json "labels": background 0, then ``names`` numbered in order."""
    return {BACKGROUND: 0, **{name: i + 1 for i, name in enumerate(names)}}


def posterior_for_every_view(anatomy: Anatomy) -> dict[str, tuple[float, float, float]]:
    """Plan every view on the joint's posterior axis (its rotation about the scanner's S-I axis)."""
    return {"sag": POSTERIOR, "cor": POSTERIOR, "ax": POSTERIOR}


@dataclass(frozen=True)
class Joint:
    """One joint of the synthetic generator (``--joint NAME``)."""

    name: str  # --joint value and dataset.json "anatomy"
    dataset_name: str  # dataset.json "name"
    case_prefix: str  # training case ids: <prefix>0001, ...
    label_names: tuple[str, ...]  # dataset.json "labels": background 0, then these in order
    findings: tuple[str, ...]  # dataset.json "findings", in order
    default_prevalence: Mapping[str, float]
    sample_anatomy: Callable[[np.random.Generator], Anatomy]
    sample_finding_params: Callable[[np.random.Generator], dict[str, dict[str, Any]]]
    build_scene: Callable[[Anatomy, dict[str, dict]], Scene]
    # Joint-frame point (mm, times the anatomy's scale) each view is centred on, before a few mm of jitter.
    view_centres: Mapping[str, tuple[float, float, float]]
    # Per view, the joint-frame direction that its planning turns (about the scanner's S-I axis) to face the
    # scanner's posterior: the knee's posterior axis for every view (coronal slices on the condylar line); the
    # shoulder's oblique coronal and sagittal planes follow its scapular plane (which varies per case).
    plan_axes: Callable[[Anatomy], Mapping[str, tuple[float, float, float]]]
    # The view whose in-plane grid shows each thin finding best (documentation and tests).
    best_view: Mapping[str, str] = field(default_factory=dict)
    # How far from a finding's recorded centre its changes reach (mm; tests and visibility analysis).
    region_radius_mm: Mapping[str, float] = field(default_factory=dict)
    # Crop half-size for measuring a finding's visibility (mm; default 20).
    crop_mm: Mapping[str, float] = field(default_factory=dict)
    # Finding -> label whose largest cross-section a montage shows when no location is recorded.
    hint_labels: Mapping[str, str] = field(default_factory=dict)
    # Mixed into every random stream of a case (0: none, the knee's historical streams), so that datasets of
    # different joints made with the same seed do not share sites, noise or missing views.
    stream: int = 0
    # How the findings depend on age, sex, BMI and each other with --clinical-signal (None: not at all).
    clinical_effects: ClinicalEffects | None = None
    # dataset.json "description": what the findings are (grades, kinds) for a reader of the dataset
    description: str = ""

    @property
    def labels(self) -> dict[str, int]:
        return label_values(self.label_names)


def sample_presence(rng: np.random.Generator, findings: tuple[str, ...], prevalence: Mapping[str, float]) -> dict[str, bool]:
    """Each finding drawn independently with its prevalence (one uniform draw per finding, in order)."""
    draws = rng.random(len(findings))
    return {name: bool(draws[i] < prevalence[name]) for i, name in enumerate(findings)}


def validate_prevalence(joint: Joint, prevalence: Mapping[str, float] | None) -> dict[str, float]:
    """The joint's defaults overridden by ``prevalence``; raises ValueError naming an unknown finding or bad
    value."""
    out = dict(joint.default_prevalence)
    for name, value in (prevalence or {}).items():
        if name not in joint.findings:
            raise ValueError(f"unknown finding {name!r} in prevalence; the {joint.name}'s findings are "
                             f"{', '.join(joint.findings)}")
        value = float(value)
        if not (0.0 <= value <= 1.0) or not np.isfinite(value):
            raise ValueError(f"prevalence of {name} must lie in [0, 1], got {value}")
        out[name] = value
    return out
