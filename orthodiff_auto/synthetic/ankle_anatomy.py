"""The ankle's anatomy as a scene, and its four findings.

``build_scene`` turns a latent ankle (``ankle``) and its present findings into a
:class:`~orthodiff_auto.synthetic.scene.Scene`: the leg's bones (tibia with the medial malleolus, fibula with
the lateral one) in the joint frame; the foot's (talus, calcaneus, navicular, cuboid) in a frame turned by the
plantarflexion about the talar dome's axis, which the plafond's concavity follows; the lateral ligaments
(ATFL, CFL, PTFL), the deltoid, the Achilles and the tendons that pass behind and in front of the malleoli;
cartilage, a film of joint fluid and slit-like recesses; skin, fat and muscle.

The findings change the anatomy where a radiologist would look, and the labels follow:

- ``atfl_tear``: a fluid-filled gap across the anterior talofibular ligament, a thin band running
  antero-medially from the lateral malleolus to the talar neck, nearly horizontal: in the axial plane.
- ``cfl_tear``: the same across the calcaneofibular ligament, a cord running down and back from the
  malleolar tip to the calcaneus, deep to the peroneal tendons.
- ``achilles_tendon_rupture``: a 6-12 mm fluid-filled gap across the whole tendon 25-55 mm above its
  insertion, haematoma around it, the stumps thickened and of intermediate signal (tendinosis); the label is
  background in the gap and follows the thickened stumps.
- ``talar_osteochondral_lesion``: on the medial (posterior) or lateral (anterior) shoulder of the dome, a
  subchondral fragment outlined by a fluid rim, a small cyst beneath it, bone-marrow oedema around it and a
  cartilage defect with fluid over it (label: talus where the bone is).

Parameters of every finding are drawn for every case whether present or not (a fixed number of draws, in a
fixed order), so switching a finding on or off changes nothing else about the case.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orthodiff_auto.synthetic import sdf
from orthodiff_auto.synthetic.ankle import LABELS as L
from orthodiff_auto.synthetic.geometry import rotation
from orthodiff_auto.synthetic.latent import Anatomy
from orthodiff_auto.synthetic.scene import Scene, all_of, any_of, lt, shell
from orthodiff_auto.synthetic.scene_parts import (
    add_band_cleft, add_capsule_field, add_envelope_layers, add_vessel_layers, paint_bones, register_band_fields,
)

INF = 1e4  # "unbounded" extent of a field's box (mm)
FACET = 1.0  # cartilage thickness of the small facets (fibula, subtalar, talonavicular), mm


def sample_finding_params(rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """Random parameters for every finding (a fixed number of draws each, in a fixed order)."""
    u = rng.uniform
    out: dict[str, dict[str, Any]] = {}
    out["atfl_tear"] = dict(band="atfl", t0=u(0.35, 0.7), gap=u(2.2, 3.0), inflate=0.5)
    out["cfl_tear"] = dict(band="cfl", t0=u(0.3, 0.7), gap=u(2.2, 3.0), inflate=0.5)
    out["achilles_tendon_rupture"] = dict(height=u(25.0, 55.0), gap=u(6.0, 12.0), inflate=1.0, stump=u(8.0, 14.0),
                                          swelling=u(1.2, 2.0))
    medial = bool(rng.random() < 0.6)
    u_frac, angle_medial, angle_lateral = u(0.4, 0.7), u(-5.0, 25.0), u(-30.0, 0.0)
    out["talar_osteochondral_lesion"] = dict(
        side=-1.0 if medial else 1.0, u_frac=u_frac, angle=angle_medial if medial else angle_lateral,
        radius=u(3.5, 5.5), edema=u(2.5, 5.0))
    return out


def build_scene(ankle: Anatomy, findings: dict[str, dict] | None = None) -> Scene:
    """The scene for ``ankle`` with the findings present in ``findings`` (name -> parameters)."""
    findings = dict(findings or {})
    sc = Scene(ankle)
    p = ankle.p
    add_foot_frame(sc)
    add_envelope_fields(sc)
    add_bone_fields(sc)
    bands = add_band_fields(sc)
    add_envelope_layers(sc, ["leg", "foot"], ["muscle_leg", "muscle_sole"], p["skin"], p["fat"])
    add_vessel_layers(sc)
    add_joint_fluid_layer(sc)
    sc.add_layer("tendons", "tendon", 0, lambda ctx: any_of(*(lt(ctx.f(name), 0.0) for name in TENDONS)))
    sc.add_layer("achilles", "tendon", L["achilles_tendon"],
                 lambda ctx: any_of(lt(ctx.f("achilles1"), 0.0), lt(ctx.f("achilles2"), 0.0)))
    add_cartilage_layer(sc)
    sc.add_layer("ligaments", "ligament", 0, lambda ctx: any_of(*(lt(ctx.f(name), 0.0) for name in LIGAMENTS)))
    for name in ("atfl_tear", "cfl_tear"):
        if name in findings:
            f = findings[name]
            sc.regions[name] = add_band_cleft(sc, name, bands[f["band"]], f["t0"], f["gap"], f["inflate"])
    if "achilles_tendon_rupture" in findings:
        add_achilles_rupture(sc, bands["achilles1"], findings["achilles_tendon_rupture"])
    paint_bones(sc, [("fibula", L["fibula"]), ("tibia", L["tibia"]), ("talus", L["talus"]),
                     ("calcaneus", L["calcaneus"]), ("navicular", 0), ("cuboid", 0)], p["cortex"])
    if "talar_osteochondral_lesion" in findings:
        add_osteochondral_lesion(sc, findings["talar_osteochondral_lesion"])
    return sc


TENDONS = ("tib_post", "tib_post2", "fhl", "fhl2", "peroneals", "peroneals2", "tib_ant", "tib_ant2", "extensors",
           "extensors2")
LIGAMENTS = ("atfl", "cfl", "ptfl", "deltoid_deep", "deltoid_superficial")


def add_foot_frame(sc: Scene) -> None:
    """The foot's frame: plantarflexion turns it about the talar dome's axis (a u-parallel line)."""
    p = sc.anatomy.p
    pivot = np.array([0.0, p["dome_v"], -p["dome_r"]])
    r_foot = rotation(0, sc.anatomy.pose["plantarflexion"])  # foot -> joint (about the pivot)
    sc.add_frame("foot", r_foot.T, pivot - r_foot.T @ pivot)


def dome_distance(p: dict, u, v, w, grow_r: float = 0.0, grow_side: float = 0.0):
    """The talar dome: a cylinder about the u axis cut to the talus' width (grown by the given margins)."""
    dv, dw = v - float(p["dome_v"]), w + float(p["dome_r"])
    cyl = np.sqrt(dv * dv + dw * dw) - float(p["dome_r"] + grow_r)
    return sdf.smax(cyl, np.abs(u) - float(p["dome_hw"] + grow_side), 5.0)


def add_envelope_fields(sc: Scene) -> None:
    """The leg (an elliptic cylinder that ends in the heel), the foot and heel, the muscles, the vessels."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    lc, lr = p["leg_c"], p["leg_r"]

    def leg(u, v, w):
        return sdf.smax(sdf.elliptic_cylinder_w(u, v, lc, lr), -(w + 45.0 * s), 20.0)

    sc.add_field("leg", "joint", leg, (-lr[0], lc[1] - lr[1], -45.0 * s), (lr[0], lc[1] + lr[1], INF), 1.0)
    foot = sdf.Compound(skip=20.0).ellipsoid(p["foot_c"], p["foot_r"]).ellipsoid(p["heel_c"], p["heel_r"], k=15.0)
    sc.add_field("foot", "foot", foot, *foot.bbox(), 1.0)
    for name, frame, key in (("muscle_leg", "joint", "leg_muscles"), ("muscle_sole", "foot", "sole_muscles")):
        muscles = sdf.Compound(skip=4.0)
        for a, b, r in p[key]:
            muscles.capsule(a, b, r)
        sc.add_field(name, frame, muscles, *muscles.bbox(), 2.0)
    for name in ("artery", "vein"):
        add_capsule_field(sc, name, "joint", *p[name])
    for name in ("recess_ant", "recess_post"):
        c, r = p[name + "_c"], p[name + "_r"]
        sc.add_field(name, "joint", lambda u, v, w, c=c, r=r: sdf.ellipsoid(u, v, w, c, r),
                     np.subtract(c, r), np.add(c, r), 1.0)


def add_bone_fields(sc: Scene) -> None:
    """Talus, calcaneus, navicular, cuboid (foot frame); tibia and fibula (joint frame), whose articular
    surfaces keep clear of the dome by the joint space (the dome is unchanged by plantarflexion)."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    r, hw, dv = p["dome_r"], p["dome_hw"], p["dome_v"]

    def dome(u, v, w):
        return sdf.smax(dome_distance(p, u, v, w), p["talus_floor"] - w, 5.0)

    talus = (sdf.Compound().add("union", dome, (-hw, dv - r, p["talus_floor"]), (hw, dv + r, 0.0))
             .capsule(*p["neck"], k=4.0)
             .ellipsoid(p["head_c"], p["head_r"], k=4.0)
             .ellipsoid(p["post_process_c"], p["post_process_r"], k=3.0))
    sc.add_field("talus", "foot", talus, *talus.bbox(), 6.0)

    gap_r = p["t_talus"] + p["t_tibia"] + 0.3  # joint space of the plafond
    gap_side = p["t_talus"] + FACET + 0.3  # and of the malleolar facets

    def clearance(u, v, w):
        return dome_distance(p, u, v, w, gap_r, gap_side)

    clear_lo = (-hw - gap_side, dv - r - gap_r, -2.0 * r - gap_r)
    clear_hi = (hw + gap_side, dv + r + gap_r, gap_r)
    tibia = (sdf.Compound().ellipsoid(p["tib_meta_c"], p["tib_meta_r"])
             .capsule(*p["tib_shaft"], k=20.0 * s)
             .ellipsoid(p["med_mall_c"], p["med_mall_r"], k=5.0)
             .add("subtract", clearance, clear_lo, clear_hi, k=1.5))
    sc.add_field("tibia", "joint", tibia, *tibia.bbox(), 6.0)
    fibula = (sdf.Compound().capsule(*p["fib_shaft"])
              .ellipsoid(p["lat_mall_c"], p["lat_mall_r"], k=6.0)
              .add("subtract", clearance, clear_lo, clear_hi, k=1.0))
    sc.add_field("fibula", "joint", fibula, *fibula.bbox(), 4.0)
    calcaneus = (sdf.Compound().ellipsoid(p["calc_c"], p["calc_r"])
                 .ellipsoid(p["tuber_c"], p["tuber_r"], k=6.0)
                 .capsule(*p["calc_ant"], k=5.0)
                 .ellipsoid(p["sustentaculum_c"], p["sustentaculum_r"], k=3.0))
    sc.add_field("calcaneus", "foot", calcaneus, *calcaneus.bbox(), 6.0)
    for name in ("navicular", "cuboid"):
        c, rr = p[name + "_c"], p[name + "_r"]
        sc.add_field(name, "foot", lambda u, v, w, c=c, rr=rr: sdf.ellipsoid(u, v, w, c, rr),
                     np.subtract(c, rr), np.add(c, rr), 4.0)


def add_band_fields(sc: Scene) -> dict[str, sdf.Band]:
    """Ligaments and tendons as bands in the joint frame (foot-frame ends turned with the foot); returns them
    by name (findings cut them)."""
    p = sc.anatomy.p
    foot = lambda q: sc.joint_point("foot", q)  # noqa: E731 foot-frame point -> joint frame
    bands: dict[str, sdf.Band] = {}
    (a0, a1), (aw, at) = p["atfl"], p["atfl_wt"]
    bands["atfl"] = sdf.Band(a0, foot(a1), aw, at, (0, 0, 1))
    (c0, c1), (cw, ct) = p["cfl"], p["cfl_wt"]
    bands["cfl"] = sdf.Band(c0, foot(c1), cw, ct, (0, 1, 0), flat=False)
    (t0, t1), (tw, tt) = p["ptfl"], p["ptfl_wt"]
    bands["ptfl"] = sdf.Band(t0, foot(t1), tw, tt, (0, 0, 1))
    s = sc.anatomy.scale
    bands["deltoid_deep"] = sdf.Band(p["deltoid_deep"][0], foot(p["deltoid_deep"][1]), 10.0 * s, 4.0 * s, (0, 1, 0))
    bands["deltoid_superficial"] = sdf.Band(p["deltoid_superficial"][0], foot(p["deltoid_superficial"][1]),
                                            8.0 * s, 2.5 * s, (0, 1, 0))
    ins, mid, top = p["achilles"]
    w_a, t_a = p["achilles_wt"]
    bands["achilles1"] = sdf.Band(foot(ins), mid, w_a, t_a, (1, 0, 0))
    bands["achilles2"] = sdf.Band(mid, top, w_a, t_a, (1, 0, 0), width1=w_a * 0.8, thickness1=t_a * 0.9)
    tendon_sizes = {"tib_post": (6.0, 4.5), "fhl": (5.0, 4.0), "peroneals": (7.5, 4.5), "tib_ant": (6.5, 4.0),
                    "extensors": (10.0, 3.0)}
    for name, (width, thick) in tendon_sizes.items():
        upper, turn, lower = p[name]
        bands[name] = sdf.Band(upper, turn, width * s, thick * s, (1, 0, 0), flat=False)
        bands[name + "2"] = sdf.Band(turn, foot(lower), width * s, thick * s, (1, 0, 0), flat=False)
    register_band_fields(sc, bands)
    return bands


def add_joint_fluid_layer(sc: Scene) -> None:
    """A film of fluid in the tibiotalar, talofibular, subtalar and talonavicular joints and the slit-like
    anterior and posterior recesses."""
    p = sc.anatomy.p
    film = p["film"]

    def fluid(ctx):
        talus = ctx.f("talus")
        return any_of(
            lt(ctx.f("recess_ant"), 0.0), lt(ctx.f("recess_post"), 0.0),
            all_of(lt(talus, p["t_talus"] + film), lt(ctx.f("tibia"), p["t_tibia"] + film)),
            all_of(lt(talus, p["t_talus"] + film), lt(ctx.f("fibula"), FACET + film)),
            all_of(lt(talus, FACET + film), lt(ctx.f("calcaneus"), FACET + film)),
            all_of(lt(talus, FACET + film), lt(ctx.f("navicular"), FACET + film)))

    sc.add_layer("joint_fluid", "fluid", 0, fluid)


def add_cartilage_layer(sc: Scene) -> None:
    """Hyaline cartilage where two bones articulate (a bone's outer shell within a few mm of its partner): the
    talar dome and its malleolar facets, the plafond, the fibular facet, the subtalar and talonavicular
    facets (unlabelled)."""
    p = sc.anatomy.p
    contact = 2.0 * max(p["t_talus"], p["t_tibia"]) + 1.5  # how close the partner bone comes, mm
    pairs = (("talus", p["t_talus"], ("tibia", "fibula")), ("talus", FACET, ("calcaneus", "navicular")),
             ("tibia", p["t_tibia"], ("talus",)), ("fibula", FACET, ("talus",)),
             ("calcaneus", FACET, ("talus",)), ("navicular", FACET, ("talus",)))

    def cartilage(ctx):
        masks = []
        for bone, thickness, partners in pairs:
            near = any_of(*(lt(ctx.f(other), contact) for other in partners))
            masks.append(all_of(shell(ctx.f(bone), 0.0, thickness), near))
        return any_of(*masks)

    sc.add_layer("cartilage", "cartilage", 0, cartilage)


def add_achilles_rupture(sc: Scene, band: sdf.Band, f: dict) -> None:
    """Thickened stumps of intermediate signal on both sides of a fluid-filled gap (haematoma) across the
    whole tendon."""
    s = sc.anatomy.scale
    t0 = min(f["height"] * s / band.length, 0.9)
    lo, hi = band.bbox(margin=f["swelling"] + 2.0)
    reach = 0.5 * f["gap"] + f["stump"]
    t0_mm = t0 * band.length

    def stumps(ctx):
        if not ctx.near(lo, hi):
            return None
        u, v, w = ctx.coords("joint")
        t, _, _ = band.local(u, v, w)
        return (np.abs(t - t0_mm) < reach) & (band.distance(u, v, w, inflate=f["swelling"]) < 0)

    sc.add_layer("achilles_stumps", "tendinosis", L["achilles_tendon"], stumps)
    sc.regions["achilles_tendon_rupture"] = add_band_cleft(sc, "achilles_tendon_rupture", band, t0, f["gap"],
                                                           f["inflate"])


def add_osteochondral_lesion(sc: Scene, f: dict) -> None:
    """A subchondral fragment on the dome's shoulder outlined by a fluid rim, a cyst beneath it, marrow oedema
    around it (all within the talus, label talus) and a fluid-filled cartilage defect over it."""
    p = sc.anatomy.p
    a = float(np.deg2rad(f["angle"]))
    r_dome = p["dome_r"]
    surface = np.array([f["side"] * f["u_frac"] * p["dome_hw"], p["dome_v"] + r_dome * np.sin(a),
                        -r_dome + r_dome * np.cos(a)])  # foot frame, on the dome
    inward = -np.array([0.0, np.sin(a), np.cos(a)])
    radius = f["radius"]
    centre = surface + inward * (0.35 * radius)
    reach = radius + f["edema"]
    lo, hi = sc.joint_box("foot", centre - reach - 2.0, centre + reach + 2.0)

    cyst_centre = centre + inward * radius

    def distance_to(ctx, point):
        u, v, w = ctx.coords("foot")
        return np.sqrt((u - point[0]) ** 2 + (v - point[1]) ** 2 + (w - point[2]) ** 2)

    def in_talus(ctx, depth):
        if not ctx.near(lo, hi):
            return None
        talus = ctx.f("talus")
        return None if talus is None else talus < depth

    def edema(ctx):
        inside = in_talus(ctx, -p["cortex"])
        return None if inside is None else inside & (distance_to(ctx, centre) < reach)

    def rim_and_cyst(ctx):
        inside = in_talus(ctx, 0.0)
        if inside is None:
            return None
        rim = np.abs(distance_to(ctx, centre) - radius) < 0.6
        return inside & (rim | (distance_to(ctx, cyst_centre) < 0.45 * radius))

    def cartilage_defect(ctx):
        if not ctx.near(lo, hi):
            return None
        talus = ctx.f("talus")
        if talus is None:
            return None
        return shell(talus, 0.0, p["t_talus"]) & (distance_to(ctx, surface) < 0.8 * radius)

    sc.add_layer("olt_edema", "edema", L["talus"], edema)
    sc.add_layer("olt_rim", "tear_fluid", L["talus"], rim_and_cyst)
    sc.add_layer("olt_cartilage_defect", "tear_fluid", 0, cartilage_defect)
    sc.regions["talar_osteochondral_lesion"] = sc.joint_point("foot", surface)
