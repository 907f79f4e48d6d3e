"""Building blocks every joint's scene is made of: the soft-tissue envelope's layers (skin, fat, muscle),
ligament and tendon bands as fields, a fluid-filled tear across a band, and bones (cortex, marrow) painted
last so that they win wherever a soft structure reaches into them (attachments).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from orthodiff_auto.synthetic import sdf
from orthodiff_auto.synthetic.scene import Scene, all_of, any_of, lt


def register_band_fields(sc: Scene, bands: dict[str, sdf.Band], margin: float = 3.0) -> None:
    """One joint-frame field per band (named as the band)."""
    for name, band in bands.items():
        lo, hi = band.bbox()
        sc.add_field(name, "joint", lambda u, v, w, b=band: b.distance(u, v, w), lo, hi, margin)


def add_capsule_field(sc: Scene, name: str, frame: str, a, b, radius: float, margin: float = 1.0) -> None:
    """A straight tube (vessel, muscle belly) from ``a`` to ``b`` in ``frame``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sc.add_field(name, frame, lambda u, v, w: sdf.capsule(u, v, w, a, b, radius), np.minimum(a, b) - radius,
                 np.maximum(a, b) + radius, margin)


def add_envelope_layers(sc: Scene, envelopes: Sequence[str], muscles: Sequence[str], skin: float,
                        fat: float) -> None:
    """Skin (the outer ``skin`` mm of the union of the ``envelopes`` fields), subcutaneous fat beneath it, and
    muscle (inside any of the ``muscles`` fields) deeper than ``fat`` mm."""
    sc.add_layer("skin", "skin", 0, lambda ctx: any_of(*(lt(ctx.f(e), 0.0) for e in envelopes)))
    sc.add_layer("fat", "fat", 0, lambda ctx: any_of(*(lt(ctx.f(e), -skin) for e in envelopes)))
    sc.add_layer("muscle", "muscle", 0, lambda ctx: all_of(
        any_of(*(lt(ctx.f(m), 0.0) for m in muscles)), any_of(*(lt(ctx.f(e), -fat) for e in envelopes))))


def add_vessel_layers(sc: Scene, vessels: Sequence[str] = ("artery", "vein")) -> None:
    """Each vessel's field painted as its own tissue (dark artery, bright slow-flowing vein)."""
    for name in vessels:
        sc.add_layer(name, name, 0, lambda ctx, f=name: lt(ctx.f(f), 0.0))


def add_band_cleft(sc: Scene, name: str, band: sdf.Band, t0_fraction: float, gap: float, inflate: float,
                   tissue: str = "tear_fluid", depth: float = 1.0) -> np.ndarray:
    """A tear: fluid fills a ``gap`` mm slab across ``band`` at ``t0_fraction`` of its length (the band's
    contour inflated by ``inflate`` mm, so the fluid shows beside the torn fibres too); the label there is
    background. ``depth`` < 1: a partial tear, through that fraction of the band's width only (the other
    fibres intact). Returns the gap's centre (joint frame)."""
    t0 = t0_fraction * band.length
    half = 0.5 * gap
    lo, hi = band.bbox(margin=2.0)
    reach = (2.0 * depth - 1.0) * 0.5 * band.width0  # across the width: fibres torn where s < reach

    def cleft(ctx):
        if not ctx.near(lo, hi):
            return None
        u, v, w = ctx.coords("joint")
        t, s, _ = band.local(u, v, w)
        sel = np.abs(t - t0) < half
        if depth < 1.0:
            sel &= s < reach
        return all_of(sel, band.distance(u, v, w, inflate=inflate) < 0)

    sc.add_layer(name + "_cleft", tissue, 0, cleft)
    return band.p0 + band.a * t0


def add_band_sheath(sc: Scene, name: str, band: sdf.Band, t0_fraction: float, length: float, thickness: float,
                    outward, tissue: str = "tear_fluid") -> None:
    """Fluid around a sprained or torn ligament: a ``thickness`` mm layer on the band's ``outward`` face
    (a joint-frame direction: away from the joint, where it borders fat), ``length`` mm long about
    ``t0_fraction`` of its length. Painted outside the band, so its fibres and label stay."""
    t0 = t0_fraction * band.length
    side = 1.0 if float(np.dot(band.c, outward)) >= 0 else -1.0
    lo, hi = band.bbox(margin=thickness + 2.0)

    def sheath(ctx):
        if not ctx.near(lo, hi):
            return None
        u, v, w = ctx.coords("joint")
        t, _, r = band.local(u, v, w)
        sel = (np.abs(t - t0) < 0.5 * length) & (r * side > 0)
        return sel & (band.distance(u, v, w, inflate=thickness) < 0) & (band.distance(u, v, w) >= 0)

    sc.add_layer(name + "_sheath", tissue, 0, sheath)


def paint_bones(sc: Scene, bones: Sequence[tuple[str, int]], cortex: float) -> None:
    """Each bone's field (name, label) painted as cortex, then marrow deeper than ``cortex`` mm, in order."""
    for bone, label in bones:
        sc.add_layer(bone + "_cortex", "cortex", label, lambda ctx, b=bone: lt(ctx.f(b), 0.0))
        sc.add_layer(bone + "_marrow", "marrow", label, lambda ctx, b=bone: lt(ctx.f(b), -cortex))
