"""The knee's eight abnormalities: their random parameters and how each changes the anatomy.

Every finding alters the anatomy where a radiologist would look:

- ``acl_tear`` / ``pcl_tear`` (mid-substance): complete, the whole ligament discontinuous over 4-7 mm with
  fluid in the gap and around the stumps (visible on every plane); partial, a 2 mm fluid cleft through part
  of the ligament, sharp on sagittal images (the cruciates run obliquely in the sagittal plane) and smeared
  by the thick slices of coronal and axial ones.
- ``mcl_tear`` / ``lcl_tear``: fluid over the ligament's superficial face and, complete, a fluid-filled gap
  across the thin, nearly vertical collateral band (partial: a cleft through part of its width); the band is
  thin left-right (blurred by sagittal slices) and the gap short superior-inferior: coronal shows the gap.
- ``medial_meniscus_tear`` / ``lateral_meniscus_tear``: a bright fluid line through the dark meniscus that
  reaches an articular surface over several slices (horizontal cleavage, vertical-longitudinal, or radial
  opening towards the free edge), mostly in the posterior horn.
- ``patellar_dislocation`` (transient lateral dislocation, as imaged afterwards): the patella sits a few
  mm laterally and tilted, and the medial patellofemoral ligament (a thin vertical sheet running
  anteroposteriorly) is torn with fluid in the gap: the axial plane shows both in-plane.
- ``effusion``: fluid distends the suprapatellar recess, the posterior recesses, the gutters and the
  joint space (large: visible on every plane).

Parameters of all findings are drawn for every case whether present or not, so switching a finding on
or off changes nothing else about the case.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from orthodiff_auto.synthetic.scene import Scene, ray_ellipse
from orthodiff_auto.synthetic.scene_parts import add_band_cleft, add_band_sheath


COMPLETE_TEAR_SPREAD_MM = 1.0  # a complete tear's fluid reaches this far beyond the ligament's stumps


def sample_finding_params(rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """Random parameters for every finding (a fixed number of draws each, in a fixed order)."""
    u = rng.uniform
    out: dict[str, dict[str, Any]] = {}
    out["acl_tear"] = dict(band="acl", t0=u(0.38, 0.62), gap=u(2.0, 2.4), inflate=0.4)
    out["pcl_tear"] = dict(band="pcl1", t0=u(0.5, 0.8), gap=u(2.0, 2.4), inflate=0.4)
    seg_choice, t_a, t_b = rng.random(), u(0.3, 0.8), u(0.25, 0.75)
    out["mcl_tear"] = dict(band="mcl1" if seg_choice < 0.7 else "mcl2", t0=t_a if seg_choice < 0.7 else t_b,
                           gap=u(1.8, 2.2), inflate=0.35)
    out["lcl_tear"] = dict(band="lcl", t0=u(0.3, 0.7), gap=u(1.8, 2.2), inflate=0.35)
    for name in ("medial_meniscus_tear", "lateral_meniscus_tear"):
        kind = ("horizontal", "vertical", "radial")[int(rng.choice(3, p=[0.45, 0.3, 0.25]))]
        out[name] = dict(
            meniscus="mm" if name.startswith("medial") else "lm",
            kind=kind,
            phi=u(60.0, 125.0),  # degrees from the notch direction, posterior side (posterior horn/body)
            half_arc=u(22.0, 38.0),
            width=u(1.2, 1.6),
            frac=u(0.35, 0.6),  # horizontal: height of the cleft as a fraction of the local thickness
            depth=u(2.5, 4.0),  # vertical: mm in from the periphery
            s0=u(0.25, 0.5),  # radial: how far from the free edge towards the rim it reaches (1 - s0)
        )
    out["patellar_dislocation"] = dict(shift=u(2.0, 3.5), tilt=u(0.0, 1.5), band="mpfl1", t0=u(0.3, 0.75),
                                       gap=u(2.0, 2.4), inflate=0.35)
    out["effusion"] = dict(severity=u(0.5, 1.0))
    _draw_grades(rng, out)
    return out


def _draw_grades(rng: np.random.Generator, out: dict[str, dict[str, Any]]) -> None:
    """Ligament tear grades and their radiological signs, drawn after every earlier parameter (so those stay).

    Complete: the whole ligament discontinuous, its gap (4-7 mm cruciates, 3-5 mm collaterals) filled with
    fluid that spreads 1 mm beyond the stumps. Partial: a 2 mm cleft through 50-75% of the width, the other
    fibres intact. Collateral tears of either grade have fluid over the ligament's superficial face. Radial
    meniscal tears open towards the free edge (the truncated triangle)."""
    u = rng.uniform
    draws = rng.random(4)
    for i, (name, p_complete, gap) in enumerate((("acl_tear", 0.7, (4.0, 7.0)), ("pcl_tear", 0.5, (4.0, 7.0)),
                                                 ("mcl_tear", 0.4, (3.0, 5.0)), ("lcl_tear", 0.5, (3.0, 5.0)))):
        complete = bool(draws[i] < p_complete)
        full_gap, depth, sheath = u(*gap), u(0.5, 0.75), (u(8.0, 14.0), u(1.0, 2.0))
        f = out[name]
        f.update(grade="complete" if complete else "partial", complete_gap=full_gap, depth=depth)
        if name in ("mcl_tear", "lcl_tear"):
            f["sheath_length"], f["sheath"] = sheath
    for name in ("medial_meniscus_tear", "lateral_meniscus_tear"):
        out[name]["open"] = u(1.0, 1.6)  # radial: extra half-width (mm) at the free edge


def _wrap(a):
    return (a + float(np.pi)) % float(2 * np.pi) - float(np.pi)


def add_finding_layers(sc: Scene, name: str, params: dict, bands: dict, meniscus_local: Callable) -> None:
    """Add the painting layers that realise one present finding (clefts of fluid, label background)."""
    if "band" in params:
        band = bands[params["band"]]
        gap, inflate, depth = params["gap"], params["inflate"], 1.0
        if params.get("grade") == "complete":
            gap, inflate = params["complete_gap"], COMPLETE_TEAR_SPREAD_MM
        elif params.get("grade") == "partial":
            depth = params["depth"]
        sc.regions[name] = add_band_cleft(sc, name, band, params["t0"], gap, inflate, depth=depth)
        if "sheath" in params:  # superficial: away from the joint's centre line (u = 0)
            add_band_sheath(sc, name, band, params["t0"], params["sheath_length"], params["sheath"],
                            (float(np.sign(band.p0[0] + band.p1[0])), 0.0, 0.0))
        if name == "patellar_dislocation":  # between the displaced patella and the torn MPFL
            sc.regions[name] = 0.5 * (sc.regions[name] + sc.joint_point("patella", (0.0, 0.0, 0.0)))
    if name in ("medial_meniscus_tear", "lateral_meniscus_tear"):
        key = params["meniscus"]
        phi_c = float(np.deg2rad(params["phi"]))
        half_arc = float(np.deg2rad(params["half_arc"]))
        hw = 0.5 * params["width"]

        def men_cleft(ctx, key=key, kind=params["kind"], p=params):
            m = meniscus_local(ctx, key)
            if m is None:
                return None
            arc = np.abs(_wrap(m["phi"] - phi_c)) < half_arc
            if kind == "horizontal":
                cut = (np.abs(m["h"] - p["frac"] * m["hloc"]) < hw) & (m["srel"] > 0.12)
            elif kind == "vertical":
                cut = np.abs((m["r_out"] - m["r"]) - p["depth"]) < hw
            else:  # radial: a cut across the meniscus from its free edge, widest there (truncated triangle)
                opening = p["open"] * np.clip((m["srel"] - p["s0"]) / (1.0 - p["s0"]), 0.0, 1.0)
                cut = (np.abs(_wrap(m["phi"] - phi_c)) * m["r"] < hw + opening) & (m["srel"] > p["s0"])
            return m["inside"] & arc & cut

        sc.add_layer(name + "_cleft", "tear_fluid", 0, men_cleft)
        sc.regions[name] = meniscus_point(sc, key, phi_c)


def meniscus_point(sc: Scene, key: str, phi: float) -> np.ndarray:
    """Knee-frame point in the middle of a meniscus at angle ``phi`` (radians from the notch direction)."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    m = p[key]
    c = m["c"]
    du, dv = np.cos(phi) * m["toward_notch"], np.sin(phi)
    rim = (p["plat_r"][0] - 1.0, p["plat_r"][1] - 1.0)
    r_out = ray_ellipse(c[0], c[1], du, dv, p["plat_c"], rim)
    r_in = ray_ellipse(c[0], c[1], du, dv, m["inner_c"], m["inner_r"])
    r = 0.6 * r_out + 0.4 * r_in
    q_tib = np.array([c[0] + r * du, c[1] + r * dv, p["w_t"] + 0.3 + 0.35 * m["height"]])
    return sc.joint_point("tibia", q_tib)
