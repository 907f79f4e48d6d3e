"""What the synthetic knee dataset declares: labels, findings, default prevalences, site profiles."""

from __future__ import annotations

from dataclasses import dataclass, field

DATASET_NAME = "SyntheticKnee"

# dataset.json "labels": background 0, then these in this order.
LABEL_NAMES: tuple[str, ...] = (
    "femur",
    "tibia",
    "fibula",
    "patella",
    "femoral_cartilage",
    "tibial_cartilage",
    "patellar_cartilage",
    "medial_meniscus",
    "lateral_meniscus",
    "acl",
    "pcl",
)
LABELS: dict[str, int] = {"background": 0, **{name: i + 1 for i, name in enumerate(LABEL_NAMES)}}
L = LABELS  # short alias used by the anatomy module

# dataset.json "findings", in this order.
FINDINGS: tuple[str, ...] = (
    "acl_tear",
    "pcl_tear",
    "medial_meniscus_tear",
    "lateral_meniscus_tear",
    "mcl_tear",
    "lcl_tear",
    "patellar_dislocation",
    "effusion",
)

DEFAULT_PREVALENCE: dict[str, float] = {
    "acl_tear": 0.3,
    "pcl_tear": 0.2,
    "medial_meniscus_tear": 0.35,
    "lateral_meniscus_tear": 0.25,
    "mcl_tear": 0.25,
    "lcl_tear": 0.2,
    "patellar_dislocation": 0.2,
    "effusion": 0.35,
}

# The view whose in-plane resolution shows each thin finding best (documentation and tests).
BEST_VIEW: dict[str, str] = {
    "acl_tear": "sag",
    "pcl_tear": "sag",
    "mcl_tear": "cor",
    "lcl_tear": "cor",
    "patellar_dislocation": "ax",
}


@dataclass(frozen=True)
class SiteProfile:
    """A scanner site: field strength, noise, bias, contrast and resolution protocol per size preset."""

    name: str
    field_strength: float
    snr: float  # fluid signal / Rician noise sigma
    bias_strength: float  # standard deviation scale of the log bias-field polynomial
    contrast: dict[str, float] = field(default_factory=dict)  # tissue name -> intensity multiplier
    # size preset -> (in-plane matrix, slice thickness mm)
    protocol: dict[str, tuple[int, float]] = field(default_factory=dict)


SITES: dict[str, SiteProfile] = {
    "siteA": SiteProfile(
        "siteA", 3.0, snr=30.0, bias_strength=0.12, contrast={},
        protocol={"tiny": (40, 9.0), "demo": (80, 6.0), "clinical": (320, 3.0)},
    ),
    "siteB": SiteProfile(
        "siteB", 1.5, snr=16.0, bias_strength=0.18,
        contrast={"cartilage": 0.9, "fluid": 0.94, "fat": 1.4, "marrow": 1.15, "muscle": 1.05},
        protocol={"tiny": (38, 10.0), "demo": (72, 6.0), "clinical": (288, 4.0)},
    ),
    "siteC": SiteProfile(
        "siteC", 3.0, snr=24.0, bias_strength=0.3,
        contrast={"fat": 2.8, "marrow": 2.0, "muscle": 1.2, "cartilage": 1.05, "skin": 1.2},
        protocol={"tiny": (40, 8.0), "demo": (76, 5.5), "clinical": (320, 3.5)},
    ),
}

SIZES: tuple[str, ...] = ("tiny", "demo", "clinical")
