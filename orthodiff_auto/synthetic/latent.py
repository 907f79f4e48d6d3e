"""A latent joint: its placement in the scanner and every shape parameter, drawn per case.

Joint coordinates (u, v, w), in mm: u points lateral, v posterior, w superior; each joint puts its origin
where its description says (the knee: the joint line in the intercondylar notch). A joint is placed in the
scanner's LPS world by a rotation (with a mirror for the right side: lateral is then the patient's right, -x)
and a translation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orthodiff_auto.synthetic.geometry import rotation


@dataclass
class Anatomy:
    """One latent joint: placement in the world, its pose (e.g. the knee's flexion, degrees) and every shape
    parameter (joint frame, mm)."""

    side: str  # "left" | "right"
    scale: float
    center: np.ndarray  # world LPS position of the joint origin
    rotation: np.ndarray  # 3x3, columns = world directions of the joint's u, v, w axes
    p: dict[str, Any] = field(default_factory=dict)
    pose: dict[str, float] = field(default_factory=dict)

    def to_local(self, world_points: np.ndarray) -> np.ndarray:
        """(..., 3) world -> joint coordinates."""
        return (np.asarray(world_points, dtype=float) - self.center) @ self.rotation

    def to_world(self, local_points: np.ndarray) -> np.ndarray:
        return np.asarray(local_points, dtype=float) @ self.rotation.T + self.center


def sample_placement(rng: np.random.Generator, side: str, degrees: tuple[float, float, float],
                     offset_sd: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(rotation, centre): a random pose in the scanner, uniform within +-``degrees`` about the scanner's
    S-I, L-R and A-P axes (in that order of draws), mirrored for the right side, and a Gaussian offset of the
    joint origin from the isocentre."""
    mirror = np.diag([-1.0, 1.0, 1.0]) if side == "right" else np.eye(3)
    about_z, about_x, about_y = degrees
    rot = (rotation(2, rng.uniform(-about_z, about_z)) @ rotation(0, rng.uniform(-about_x, about_x))
           @ rotation(1, rng.uniform(-about_y, about_y)) @ mirror)
    center = rng.normal(0.0, list(offset_sd))
    return rot, center


def sample_side(rng: np.random.Generator) -> str:
    return "right" if rng.random() < 0.5 else "left"
