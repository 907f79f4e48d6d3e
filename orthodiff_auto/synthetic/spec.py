"""What every synthetic joint shares: the scanner sites (field strength, noise, bias, contrast, protocol per size
preset) and the size presets."""

from __future__ import annotations

from dataclasses import dataclass, field


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
