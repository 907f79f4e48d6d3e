"""What every synthetic joint shares: the scanner sites (field strength, noise, bias, contrast, protocol per size
preset) and the size presets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Thermal noise: at equal acquisition time, SNR is proportional to the voxel volume (a coarser matrix takes
# fewer phase encodings, whose time goes into averages: SNR ~ volume * sqrt(phase encodings * averages), the
# second factor constant). Each site's ``snr`` is stated for this voxel: a routine knee PD-FS protocol,
# 320 x 320 over a 160 mm field of view with 3 mm slices.
REFERENCE_VOXEL_MM: tuple[float, float, float] = (3.0, 0.5, 0.5)  # (slice, row, column)
# Large voxels do not become noise-free: physiological noise (pulsation, motion) and the system's own
# instability grow with the signal and cap the SNR of an image (Triantafyllou et al. 2005). Combined with
# the thermal SNR as 1/SNR^2 = 1/thermal^2 + 1/ceiling^2.
SNR_CEILING = 100.0


@dataclass(frozen=True)
class SiteProfile:
    """A scanner site: field strength, noise, bias, contrast and resolution protocol per size preset."""

    name: str
    field_strength: float
    snr: float  # fluid signal / Rician noise sigma at the reference voxel (REFERENCE_VOXEL_MM)
    bias_strength: float  # standard deviation scale of the log bias-field polynomial
    contrast: dict[str, float] = field(default_factory=dict)  # tissue name -> intensity multiplier
    # size preset -> (in-plane matrix, slice thickness mm)
    protocol: dict[str, tuple[int, float]] = field(default_factory=dict)


SITES: dict[str, SiteProfile] = {
    "siteA": SiteProfile(
        "siteA", 3.0, snr=30.0, bias_strength=0.12, contrast={},
        protocol={"tiny": (40, 9.0), "demo": (80, 6.0), "standard": (160, 4.0), "clinical": (320, 3.0)},
    ),
    "siteB": SiteProfile(
        "siteB", 1.5, snr=16.0, bias_strength=0.18,
        contrast={"cartilage": 0.9, "fluid": 0.94, "fat": 1.4, "marrow": 1.15, "muscle": 1.05},
        protocol={"tiny": (38, 10.0), "demo": (72, 6.0), "standard": (144, 4.5), "clinical": (288, 4.0)},
    ),
    "siteC": SiteProfile(
        "siteC", 3.0, snr=24.0, bias_strength=0.3,
        contrast={"fat": 2.8, "marrow": 2.0, "muscle": 1.2, "cartilage": 1.05, "skin": 1.2},
        protocol={"tiny": (40, 8.0), "demo": (76, 5.5), "standard": (152, 3.5), "clinical": (320, 3.5)},
    ),
}

def noise_snr(site: SiteProfile, spacing) -> float:
    """The site's fluid SNR at a voxel of ``spacing`` (mm): thermal SNR scaled by the voxel volume from the
    reference voxel, under the ceiling."""
    thermal = site.snr * float(np.prod(spacing)) / float(np.prod(REFERENCE_VOXEL_MM))
    return thermal / float(np.sqrt(1.0 + (thermal / SNR_CEILING) ** 2))


SIZES: tuple[str, ...] = ("tiny", "demo", "standard", "clinical")
