"""Scenes: named implicit fields (approximate signed distances) in rigid frames and an ordered list of painting
layers (tissue, label, mask), evaluated lazily per chunk of sample points (``Ctx``); the mask helpers the
layers are written with; the tissue classes rendering turns into intensities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from orthodiff_auto.synthetic.latent import Anatomy

# Tissue classes that rendering turns into MR intensities (index = tissue code). New ones go at the end: a
# tissue's code and the per-case jitter drawn for it stay the same.
TISSUES: tuple[str, ...] = (
    "air", "skin", "fat", "muscle", "fluid", "tear_fluid", "marrow", "cortex", "physeal_scar",
    "femoral_cartilage", "tibial_cartilage", "patellar_cartilage", "meniscus", "ligament", "acl",
    "tendon", "artery", "vein", "cartilage", "labrum", "edema", "tendinosis", "synovitis",
)
T = {name: i for i, name in enumerate(TISSUES)}


@dataclass
class FieldDef:
    frame: str
    fn: Callable  # (u, v, w) -> distance array
    lo: np.ndarray  # joint-frame bounding box (already inflated by the margin)
    hi: np.ndarray


@dataclass
class Layer:
    name: str
    tissue: int
    label: int
    mask: Callable  # (ctx) -> bool array or None (nothing here)


class Scene:
    """Implicit fields + painting layers for one joint with its findings. Every field lives in a rigid frame;
    the root frame, ``"joint"``, is the anatomy's own (u lateral, v posterior, w superior)."""

    def __init__(self, anatomy: Anatomy):
        self.anatomy = anatomy
        self.frames: dict[str, tuple[np.ndarray, np.ndarray]] = {"joint": (np.eye(3), np.zeros(3))}
        self.inverse: dict[str, tuple[np.ndarray, np.ndarray]] = {"joint": (np.eye(3), np.zeros(3))}
        self.fields: dict[str, FieldDef] = {}
        self.layers: list[Layer] = []
        self.regions: dict[str, np.ndarray] = {}  # finding -> joint-frame centre (for montages/tests)

    def add_frame(self, name: str, to_frame: np.ndarray, offset: np.ndarray) -> None:
        """q_frame = to_frame @ q_joint + offset."""
        m = np.asarray(to_frame, dtype=float)
        b = np.asarray(offset, dtype=float)
        self.frames[name] = (m, b)
        inv = np.linalg.inv(m)
        self.inverse[name] = (inv, -inv @ b)

    def joint_point(self, frame: str, q_frame) -> np.ndarray:
        m, b = self.inverse[frame]
        return m @ np.asarray(q_frame, dtype=float) + b

    def joint_box(self, frame: str, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        """Joint-frame bounding box of the box [lo, hi] given in ``frame``."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        m, b = self.inverse[frame]
        kc = corners @ m.T + b
        return kc.min(axis=0), kc.max(axis=0)

    def add_field(self, name: str, frame: str, fn: Callable, lo, hi, margin: float) -> None:
        lo, hi = self.joint_box(frame, np.asarray(lo, dtype=float) - margin, np.asarray(hi, dtype=float) + margin)
        self.fields[name] = FieldDef(frame, fn, [float(x) for x in lo], [float(x) for x in hi])

    def add_layer(self, name: str, tissue: str, label: int, mask: Callable) -> None:
        self.layers.append(Layer(name, T[tissue], label, mask))


class Ctx:
    """Per-chunk evaluation context: frame coordinates and fields computed lazily, far fields culled."""

    def __init__(self, scene: Scene, q: np.ndarray):
        self.scene = scene
        self.q = q  # (3, n) float32, joint frame
        self.lo = [float(x) for x in q.min(axis=1)]
        self.hi = [float(x) for x in q.max(axis=1)]
        self._coords: dict[str, tuple] = {"joint": (q[0], q[1], q[2])}
        self._fields: dict[str, np.ndarray | None] = {}
        self.cache: dict[str, Any] = {}

    def coords(self, frame: str):
        if frame not in self._coords:
            m, b = self.scene.frames[frame]
            x, y, z = self.q[0], self.q[1], self.q[2]
            self._coords[frame] = tuple(
                (x * np.float32(m[r, 0]) + y * np.float32(m[r, 1]) + z * np.float32(m[r, 2]) + np.float32(b[r]))
                for r in range(3)
            )
        return self._coords[frame]

    def near(self, lo, hi) -> bool:
        a, b = self.lo, self.hi
        return (b[0] >= lo[0] and b[1] >= lo[1] and b[2] >= lo[2]
                and a[0] <= hi[0] and a[1] <= hi[1] and a[2] <= hi[2])

    def f(self, name: str) -> np.ndarray | None:
        """The field's values, or None when the whole chunk lies beyond its margin."""
        if name not in self._fields:
            fd = self.scene.fields[name]
            if not self.near(fd.lo, fd.hi):
                self._fields[name] = None
            else:
                self._fields[name] = fd.fn(*self.coords(fd.frame)).astype(np.float32, copy=False)
        return self._fields[name]


def lt(x, t):
    return None if x is None else x < t


def shell(x, t0, t1):
    return None if x is None else (x > t0) & (x < t1)


def any_of(*masks):
    out = None
    for m in masks:
        if m is None:
            continue
        out = m if out is None else (out | m)
    return out


def all_of(*masks):
    out = None
    for m in masks:
        if m is None:
            return None
        out = m if out is None else (out & m)
    return out


def ray_ellipse(cu, cv, du, dv, ec, er):
    """Distance from (cu, cv) along unit (du, dv) to the ellipse (centre ec, radii er); the start is inside."""
    ou, ov = (cu - ec[0]) / er[0], (cv - ec[1]) / er[1]
    au, av = du / er[0], dv / er[1]
    a = au * au + av * av
    b = 2.0 * (au * ou + av * ov)
    c = ou * ou + ov * ov - 1.0
    return (-b + np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0))) / (2.0 * a)
