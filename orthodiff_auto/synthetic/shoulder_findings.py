"""The shoulder's findings: their random parameters, and the layers that realise the rotator cuff and labral
tears and the acromioclavicular arthropathy (``shoulder_anatomy`` builds the rest of the scene and calls these).

- ``supraspinatus_tear`` / ``infraspinatus_tear`` / ``subscapularis_tear``: a full-thickness defect at the
  tendon's footprint, 8-18 mm long and 8-16 mm wide, filled with fluid that reaches the bursa; the label is
  background there.
- ``acromioclavicular_arthropathy``: bony spurs under both sides of the AC joint (labelled as their bones),
  a hypertrophied capsule, fluid in the joint and subchondral oedema.
- ``labral_tear``: a fluid-filled cleft between the labrum and the glenoid rim over 35-60 degrees of arc,
  superior (SLAP), antero-inferior (Bankart) or posterior.

(The biceps pathology and the effusion change the biceps and fluid layers of ``shoulder_anatomy``.)
Parameters of every finding are drawn for every case whether present or not (a fixed number of draws, in a
fixed order), so switching a finding on or off changes nothing else about the case.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orthodiff_auto.synthetic import sdf
from orthodiff_auto.synthetic.scene import Scene, lt
from orthodiff_auto.synthetic.shoulder import CUFF, LABELS as L
from orthodiff_auto.synthetic.shoulder_frame import LABRUM_HEIGHT, head_coords


def sample_finding_params(rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """Random parameters for every finding (a fixed number of draws each, in a fixed order)."""
    u = rng.uniform
    out: dict[str, dict[str, Any]] = {}
    out["supraspinatus_tear"] = dict(tendon="supraspinatus", phi=u(-12.0, 15.0), width=u(8.0, 16.0), length=u(8.0, 18.0))
    out["infraspinatus_tear"] = dict(tendon="infraspinatus", phi=u(40.0, 70.0), width=u(8.0, 14.0), length=u(8.0, 16.0))
    out["subscapularis_tear"] = dict(tendon="subscapularis", phi=u(-72.0, -55.0), width=u(8.0, 14.0), length=u(6.0, 14.0))
    out["biceps_tendon_pathology"] = dict(kind="tendinosis" if rng.random() < 0.6 else "tear", swelling=u(1.0, 1.8),
                                          sheath=u(1.0, 2.0), t0=u(0.2, 0.6), gap=u(4.0, 8.0))
    out["acromioclavicular_arthropathy"] = dict(spur=u(2.5, 4.0), capsule=u(1.0, 1.5), edema=u(4.0, 7.0))
    out["glenohumeral_effusion"] = dict(severity=u(0.5, 1.0))
    where = int(rng.choice(3, p=[0.4, 0.35, 0.25]))
    centres = (u(70.0, 110.0), u(-160.0, -110.0), u(-45.0, 20.0))  # superior, antero-inferior, posterior
    out["labral_tear"] = dict(kind=("slap", "bankart", "posterior")[where], phi=centres[where], half_arc=u(18.0, 30.0),
                              width=u(1.2, 1.8))
    return out


def cuff_point(sc: Scene, tendon: str, a: float, phi_degrees: float) -> np.ndarray:
    """Joint-frame point in the middle of the tendon's thickness at axial cosine ``a`` and angle ``phi``."""
    p = sc.anatomy.p
    r = p["head_r"] + p["t_head"] + p["film"] + 0.5 * p["cuff_thickness"][tendon]
    phi = np.deg2rad(phi_degrees)
    side = np.sqrt(max(0.0, 1.0 - a * a))
    return sc.joint_point("scapula", r * np.array([a, side * np.sin(phi), side * np.cos(phi)]))


def add_cuff_tear(sc: Scene, name: str, f: dict) -> None:
    """A full-thickness defect at the footprint: fluid across the tendon's thickness (and just beyond, in the
    bursa) over ``length`` mm medial of its lateral end and ``width`` mm across."""
    p = sc.anatomy.p
    tendon = f["tendon"]
    spec = CUFF[tendon]
    r0 = p["head_r"] + p["t_head"] + p["film"]
    thick = p["cuff_thickness"][tendon]
    r_mid = r0 + 0.5 * thick
    alpha_lateral = float(np.arccos(spec["a"][1]))
    alpha_medial = alpha_lateral + f["length"] / r_mid
    half_width = np.degrees(0.5 * f["width"] / (r_mid * np.sin(0.5 * (alpha_lateral + alpha_medial))))

    def cleft(ctx):
        h = head_coords(sc, ctx)
        if h is None:
            return None
        alpha = np.arccos(np.clip(h["nx"], -1.0, 1.0))
        return ((alpha > alpha_lateral - 0.08) & (alpha < alpha_medial) & (np.abs(h["phi"] - f["phi"]) < half_width)
                & (h["r"] > r0 - 0.3) & (h["r"] < r0 + thick + 1.0))

    sc.add_layer(name + "_cleft", "tear_fluid", 0, cleft)
    sc.regions[name] = cuff_point(sc, tendon, float(np.cos(0.5 * (alpha_lateral + alpha_medial))), f["phi"])


def add_labral_tear(sc: Scene, f: dict) -> None:
    """A fluid-filled cleft between the labrum and the glenoid's rim over an arc about the glenoid's centre."""
    p = sc.anatomy.p
    r_g = p["glenoid_r"]
    width_e = f["width"] / (r_g * min(p["glenoid_half"]) / r_g)  # mm -> elliptic angle near the rim

    def cleft(ctx):
        h = head_coords(sc, ctx)
        if h is None:
            return None
        clock = np.degrees(np.arctan2(h["nz"], h["ny"]))  # about the glenoid's centre: 90 superior, 0 posterior
        off = (clock - f["phi"] + 180.0) % 360.0 - 180.0
        return ((np.abs(h["e"] - 1.02) < 0.5 * width_e) & (np.abs(off) < f["half_arc"]) & (h["nx"] < 0)
                & (h["r"] > p["head_r"] + p["t_head"] + 0.4) & (h["r"] < r_g + LABRUM_HEIGHT))

    sc.add_layer("labral_tear_cleft", "tear_fluid", 0, cleft)
    sy, sz = (hh / r_g for hh in p["glenoid_half"])
    phi = np.deg2rad(f["phi"])
    ny, nz = np.cos(phi) * sy * 1.02, np.sin(phi) * sz * 1.02
    direction = np.array([-np.sqrt(max(0.0, 1.0 - ny * ny - nz * nz)), ny, nz])
    sc.regions["labral_tear"] = sc.joint_point("scapula", (r_g + 1.0) * direction)


def add_ac_joint_layers(sc: Scene, arthropathy: dict | None) -> None:
    """The acromioclavicular joint: a fibrocartilage disc in the gap; arthropathy replaces it by fluid in a
    hypertrophied capsule of intermediate signal (bones, painted later, keep their shape)."""
    s = sc.anatomy.scale
    ac = np.asarray(sc.anatomy.p["ac_joint"], dtype=float)
    if arthropathy is None:
        r = np.array([2.0, 8.0, 4.5]) * s
        sc.add_field("ac_disc", "joint", lambda u, v, w: sdf.ellipsoid(u, v, w, ac, r), ac - r, ac + r, 1.0)
        sc.add_layer("ac_disc", "labrum", 0, lambda ctx: lt(ctx.f("ac_disc"), 0.0))
        return
    grow = arthropathy["capsule"]
    capsule_r = np.array([6.0, 12.0, 9.0]) * s * grow
    fluid_r = np.array([3.0, 9.0, 5.5]) * s
    sc.add_field("ac_capsule", "joint", lambda u, v, w: sdf.ellipsoid(u, v, w, ac, capsule_r), ac - capsule_r,
                 ac + capsule_r, 1.0)
    sc.add_field("ac_fluid", "joint", lambda u, v, w: sdf.ellipsoid(u, v, w, ac, fluid_r), ac - fluid_r, ac + fluid_r, 1.0)
    sc.add_layer("ac_capsule", "synovitis", 0, lambda ctx: lt(ctx.f("ac_capsule"), 0.0))
    sc.add_layer("ac_fluid", "fluid", 0, lambda ctx: lt(ctx.f("ac_fluid"), 0.0))
    sc.regions["acromioclavicular_arthropathy"] = ac


def add_ac_edema(sc: Scene, arthropathy: dict) -> None:
    """Subchondral oedema in the acromion and the clavicle near the joint (labels stay the bones')."""
    p = sc.anatomy.p
    ac = np.asarray(p["ac_joint"], dtype=float)
    reach = arthropathy["edema"]
    lo, hi = ac - reach - 1.0, ac + reach + 1.0
    for bone in ("acromion", "clavicle"):
        def edema(ctx, bone=bone):
            if not ctx.near(lo, hi):
                return None
            d = ctx.f(bone)
            if d is None:
                return None
            u, v, w = ctx.coords("joint")
            near = (u - ac[0]) ** 2 + (v - ac[1]) ** 2 + (w - ac[2]) ** 2 < reach * reach
            return (d < -p["cortex"]) & near

        sc.add_layer(bone + "_edema", "edema", L[bone], edema)
