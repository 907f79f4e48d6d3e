"""The knee's anatomy as a scene: ``build_scene`` turns a latent knee (``knee``) and its present findings into
a :class:`~orthodiff_auto.synthetic.scene.Scene`, step by step: the rigid frames, the implicit fields
(soft-tissue envelope, muscles and vessels; bones; ligaments and tendons; the suprapatellar recess), then the
painting layers in painting order (soft tissue, joint fluid and tendons, cartilage and menisci, ligaments,
the findings' clefts, bones last).

Three rigid frames carry the structures: the femur's (the joint frame itself), the tibia's (flexion and tibial
rotation about the condyles' centre) and the patella's (which a dislocation shifts and tilts). Rendering
paints the layers in order at every sample point (later layers win), so tissue boundaries, partial volume
and the label maps all follow the same (possibly torn) anatomy.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from orthodiff_auto.synthetic import sdf
from orthodiff_auto.synthetic.geometry import rotation
from orthodiff_auto.synthetic.knee import LABELS as L
from orthodiff_auto.synthetic.knee_findings import add_finding_layers
from orthodiff_auto.synthetic.latent import Anatomy
from orthodiff_auto.synthetic.scene import Scene, all_of, any_of, lt, ray_ellipse
from orthodiff_auto.synthetic.scene_parts import (
    add_capsule_field, add_envelope_layers, add_vessel_layers, paint_bones, register_band_fields,
)

INF = 1e4  # "unbounded" extent of a field's box (mm)


def build_scene(knee: Anatomy, findings: dict[str, dict] | None = None) -> Scene:
    """The scene for ``knee`` with the findings present in ``findings`` (name -> parameters)."""
    findings = dict(findings or {})
    sc = Scene(knee)
    add_frames(sc, findings)
    add_envelope_fields(sc)
    add_bone_fields(sc)
    bands = add_band_fields(sc)
    add_recess_field(sc)
    add_soft_tissue_layers(sc)
    add_joint_fluid_layers(sc, findings)
    meniscus_local = add_tibial_cartilage_and_meniscus_layers(sc)
    add_femoral_and_patellar_cartilage_layers(sc)
    add_ligament_layers(sc)
    for name, params in findings.items():  # findings that cut structures: fluid-filled clefts
        add_finding_layers(sc, name, params, bands, meniscus_local)
    add_bone_layers(sc)
    return sc


def add_frames(sc: Scene, findings: dict[str, dict]) -> None:
    """The tibia's frame (flexion, tibial rotation) and the patella's (shifted and tilted by a dislocation)."""
    knee = sc.anatomy
    p = knee.p
    pivot = np.array([0.0, p["cond_med_c"][1], p["cond_med_c"][2]])
    r_tib = rotation(0, knee.pose["flexion"]) @ rotation(2, knee.pose["tibial_rotation"])  # tibia -> femur (about pivot)
    sc.add_frame("tibia", r_tib.T, pivot - r_tib.T @ pivot)
    pat_c = np.asarray(p["pat_c"], dtype=float)
    r_pat = np.eye(3)
    if "patellar_dislocation" in findings:
        fp = findings["patellar_dislocation"]
        pat_c = pat_c + np.array([fp["shift"], 0.0, 0.0])
        r_pat = rotation(2, fp["tilt"])
    sc.add_frame("patella", r_pat.T, -r_pat.T @ pat_c)


def add_envelope_fields(sc: Scene) -> None:
    """Soft-tissue envelope (limb), thigh and calf muscles, artery and vein."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    inf = INF
    lr = p["limb_r"]

    def limb(u, v, w):
        grow = 1.0 + 0.07 * np.tanh(w / 60.0)
        du = u / (lr[0] * grow)
        dv = (v - 4.0 * s) / (lr[1] * grow)
        return (np.sqrt(du * du + dv * dv) - 1.0) * (min(lr) * grow)

    sc.add_field("limb", "joint", limb, (-lr[0] * 1.1, 4 * s - lr[1] * 1.1, -inf), (lr[0] * 1.1, 4 * s + lr[1] * 1.1, inf), 1.0)

    thigh_muscles = [
        ("e", (0.0, -8.0 * s, 150.0 * s), (50.0 * s, 40.0 * s, 105.0 * s)),  # quadriceps
        ("e", (-30.0 * s, -10.0 * s, 75.0 * s), (20.0 * s, 22.0 * s, 40.0 * s)),  # vastus medialis
        ("e", (35.0 * s, 30.0 * s, 110.0 * s), (18.0 * s, 20.0 * s, 90.0 * s)),  # biceps femoris
        ("e", (-32.0 * s, 32.0 * s, 100.0 * s), (18.0 * s, 20.0 * s, 90.0 * s)),  # semimembranosus
        ("c", (-22.0 * s, 40.0 * s, 28.0 * s), (-14.0 * s, 44.0 * s, -150.0 * s), 17.0 * s),  # gastrocnemius med.
        ("c", (22.0 * s, 40.0 * s, 26.0 * s), (14.0 * s, 44.0 * s, -150.0 * s), 14.0 * s),  # gastrocnemius lat.
    ]
    calf_muscles = [
        ("c", (28.0 * s, 24.0 * s, -2.0 * s), (-18.0 * s, 26.0 * s, -38.0 * s), 6.0 * s),  # popliteus
        ("c", (0.0, 32.0 * s, -60.0 * s), (0.0, 34.0 * s, -250.0), 22.0 * s),  # soleus
        ("c", (20.0 * s, -8.0 * s, -40.0 * s), (16.0 * s, -6.0 * s, -250.0), 12.0 * s),  # tibialis anterior
    ]

    thigh = sdf.Compound(skip=4.0)
    calf = sdf.Compound(skip=4.0)
    for comp, prims in ((thigh, thigh_muscles), (calf, calf_muscles)):
        for pr in prims:
            if pr[0] == "e":
                comp.ellipsoid(pr[1], pr[2])
            else:
                comp.capsule(pr[1], pr[2], pr[3])
    sc.add_field("muscle_thigh", "joint", thigh, *thigh.bbox(), 2.0)
    sc.add_field("muscle_calf", "tibia", calf, *calf.bbox(), 2.0)
    for name in ("artery", "vein"):
        add_capsule_field(sc, name, "joint", *p[name])


def add_bone_fields(sc: Scene) -> None:
    """Femur (condyles, trochlea with its groove, shaft), tibia (plateau, spines, tubercle), fibula, patella."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    inf = INF
    gr, gdepth = p["groove"]
    troch_front = p["troch_c"][1] - p["troch_r"][1]
    groove_a = (0.0, troch_front - gr + gdepth, 8.0 * s)
    groove_b = (0.0, troch_front - gr + gdepth + 2.0 * s, 64.0 * s)
    shaft_a, shaft_b, shaft_r = p["shaft_f"]

    femur = (sdf.Compound()
             .ellipsoid(p["cond_med_c"], p["cond_med_r"])
             .ellipsoid(p["cond_lat_c"], p["cond_lat_r"], k=3.0)
             .ellipsoid(p["troch_c"], p["troch_r"], k=8.0)
             .ellipsoid(p["epi_med_c"], p["epi_med_r"], k=6.0)
             .ellipsoid(p["epi_lat_c"], p["epi_lat_r"], k=6.0)
             .ellipsoid(p["meta_f_c"], p["meta_f_r"], k=10.0)
             .capsule(shaft_a, shaft_b, shaft_r, k=18.0 * s)
             .capsule(groove_a, groove_b, gr, k=2.0, op="subtract"))
    sc.add_field("femur", "joint", femur, (-42 * s, -30 * s, -2.0), (42 * s, 36 * s, inf), 9.0)

    w_t = p["w_t"]
    pc, pr = p["plat_c"], p["plat_r"]
    ta, tb, tr = p["shaft_t"]

    plat_depth = p["plat_depth"]

    def plateau(u, v, w):
        slab = np.maximum(w - w_t, (w_t - plat_depth) - w)
        return sdf.smax(sdf.elliptic_cylinder_w(u, v, pc, pr), slab, 4.0)

    tibia = sdf.Compound().add("union", plateau, (-pr[0], pc[1] - pr[1], w_t - plat_depth),
                               (pr[0], pc[1] + pr[1], w_t))
    tibia.capsule(ta, tb, tr, k=p["flare_k"])
    for c, r in p["spines"]:
        tibia.ellipsoid(c, r, k=2.0)
    tibia.ellipsoid(p["tubercle_c"], p["tubercle_r"], k=8.0)
    tibia.ellipsoid(p["pcl_fossa_c"], p["pcl_fossa_r"], k=2.0, op="subtract")

    sc.add_field("tibia", "tibia", tibia, (-40 * s, -28 * s, -inf), (40 * s, 30 * s, w_t + 7 * s), 9.0)

    fa, fb, fr = p["fib_shaft"]

    fibula = sdf.Compound().ellipsoid(p["fib_head_c"], p["fib_head_r"]).capsule(fa, fb, fr, k=6.0)

    hc = p["fib_head_c"]
    sc.add_field("fibula", "tibia", fibula, (hc[0] - 10 * s, hc[1] - 10 * s, -inf), (hc[0] + 10 * s, hc[1] + 10 * s, hc[2] + 11 * s), 3.0)

    prad = p["pat_r"]
    sc.add_field("patella", "patella", lambda u, v, w: sdf.ellipsoid(u, v, w, (0.0, 0.0, 0.0), prad),
                 (-prad[0], -prad[1], -prad[2]), prad, 8.0)


def add_band_fields(sc: Scene) -> dict[str, sdf.Band]:
    """Ligaments and tendons as bands in the joint frame; returns them by name (findings cut them)."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    tib = lambda q: sc.joint_point("tibia", q)  # noqa: E731 tibia-frame point -> joint frame
    pat = lambda q: sc.joint_point("patella", q)  # noqa: E731
    prad = p["pat_r"]
    bands: dict[str, sdf.Band] = {}
    acl_w, acl_t = p["acl_wt"]
    bands["acl"] = sdf.Band(p["acl_f"], tib(p["acl_t"]), acl_w, acl_t, (1, 0, 0))
    pcl_w, pcl_t = p["pcl_wt"]
    bend = np.asarray(p["pcl_bend"], dtype=float)  # above the plateau's back edge, in the notch
    bands["pcl1"] = sdf.Band(p["pcl_f"], bend, pcl_w, pcl_t, (1, 0, 0))
    bands["pcl2"] = sdf.Band(bend, tib(p["pcl_t"]), pcl_w, pcl_t, (1, 0, 0))
    mw, mt = p["mcl_wt"]
    bands["mcl1"] = sdf.Band(p["mcl_f"], p["mcl_j"], mw, mt, (0, 1, 0))
    mcl_m = tib(p["mcl_m"])
    bands["mcl2"] = sdf.Band(p["mcl_j"], mcl_m, mw, mt, (0, 1, 0))
    bands["mcl3"] = sdf.Band(mcl_m, tib(p["mcl_t"]), mw, mt, (0, 1, 0))
    lw, lt_ = p["lcl_wt"]
    bands["lcl"] = sdf.Band(p["lcl_f"], tib(p["lcl_t"]), lw, lt_, (0, 1, 0))
    mpw, mpt = p["mpfl_wt"]
    mpfl_pat = pat((-prad[0] + 1.5 * s, 0.0, 3.0 * s))
    bands["mpfl1"] = sdf.Band(p["mpfl_f"], p["mpfl_bend"], mpw, mpt, (0, 0, 1))
    bands["mpfl2"] = sdf.Band(p["mpfl_bend"], mpfl_pat, mpw, mpt, (0, 0, 1))
    qw, qt = p["qt_wt"]
    bands["qtendon"] = sdf.Band(pat((0.0, -2.0 * s, prad[2] - 5.0 * s)), p["qt_top"], qw, qt, (1, 0, 0), flat=False)
    pw, pt = p["pt_wt"]
    bands["ptendon"] = sdf.Band(pat((0.0, 1.0 * s, -prad[2] + 5.0 * s)), tib(p["pt_t"]), pw, pt, (1, 0, 0),
                                width1=pw * 0.85, thickness1=pt * 1.2, flat=False)
    register_band_fields(sc, bands)
    return bands


def add_recess_field(sc: Scene) -> None:
    """The suprapatellar recess, normally a thin slit (an effusion replaces it by a distended one)."""
    p = sc.anatomy.p
    sc.add_field("recess", "joint", lambda u, v, w: sdf.ellipsoid(u, v, w, p["recess_c"], p["recess_r"]),
                 np.subtract(p["recess_c"], p["recess_r"]), np.add(p["recess_c"], p["recess_r"]), 1.0)


def add_soft_tissue_layers(sc: Scene) -> None:
    p = sc.anatomy.p
    add_envelope_layers(sc, ["limb"], ["muscle_thigh", "muscle_calf"], p["skin"], p["fat"])
    add_vessel_layers(sc)


def add_joint_fluid_layers(sc: Scene, findings: dict[str, dict]) -> None:
    """Joint fluid (physiological; an effusion distends it, with the recess and the gutters), then tendons."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    film = p["film"]
    post = film
    gutter = None
    if "effusion" in findings:
        e = findings["effusion"]["severity"]
        film = film + 1.5 + 2.0 * e
        post = film + 1.0 + 3.0 * e
        gutter = 2.5 + 3.5 * e
        rc = np.asarray(p["recess_c"], dtype=float) + np.array([0.0, -1.0 * s, 3.0 * e * s])
        rr = np.array([p["recess_r"][0] + 6.0 * e * s, 3.0 + 7.0 * e, p["recess_r"][2] + 12.0 * e * s])
        sc.add_field("recess", "joint", lambda u, v, w: sdf.ellipsoid(u, v, w, rc, rr), rc - rr, rc + rr, 1.0)
        sc.regions["effusion"] = rc
    t_fc, t_tc, t_pc = p["t_fc"], p["t_tc"], p["t_pc"]

    def fluid(ctx):
        uu, vv, ww = ctx.coords("joint")
        df, dt, dp = ctx.f("femur"), ctx.f("tibia"), ctx.f("patella")
        masks = [lt(ctx.f("recess"), 0.0),
                 all_of(lt(df, t_fc + film), lt(dt, t_tc + film)),
                 all_of(lt(df, t_fc + film), lt(dp, t_pc + film))]
        if df is not None:
            au = np.abs(uu)
            # posterior recesses: a cap behind the upper posterior condyles (not around their sides)
            zone = None
            for key in ("cond_med_c", "cond_lat_c"):
                c = p[key]
                z = sdf.ellipsoid(uu, vv, ww, (c[0], c[1] + 24.0 * s, c[2] + 10.0 * s), (9.0 * s, 14.0 * s, 16.0 * s)) < 0
                zone = z if zone is None else (zone | z)
            masks.append((df < t_fc + post) & zone)
            if gutter is not None:
                # parapatellar recesses and gutters beside the trochlea (smooth ellipsoidal zones)
                zone = None
                for side in (-1.0, 1.0):
                    z = sdf.ellipsoid(uu, vv, ww, (side * 30.0 * s, -12.0 * s, 34.0 * s), (12.0 * s, 16.0 * s, 26.0 * s)) < 0
                    zone = z if zone is None else (zone | z)
                masks.append((df < gutter) & zone)
        return any_of(*masks)

    sc.add_layer("joint_fluid", "fluid", 0, fluid)
    sc.add_layer("tendons", "tendon", 0, lambda ctx: any_of(lt(ctx.f("qtendon"), 0.0), lt(ctx.f("ptendon"), 0.0)))


def add_tibial_cartilage_and_meniscus_layers(sc: Scene) -> Callable:
    """Tibial cartilage and the menisci; returns ``meniscus_local(ctx, key)`` (the meniscus coordinates that
    meniscal tears cut)."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    w_t = p["w_t"]
    pc, pr = p["plat_c"], p["plat_r"]
    t_tc = p["t_tc"]
    pshrink = (pr[0] - 2.5 * s, pr[1] - 2.0 * s)

    def tib_cart(ctx):
        d = ctx.f("tibia")
        if d is None:
            return None
        u, v, w = ctx.coords("tibia")
        return ((d > 0) & (d < t_tc) & (w > w_t - 1.0) & (np.abs(u) > 8.0 * s) & (v < 20.0 * s)
                & (sdf.elliptic_cylinder_w(u, v, pc, pshrink) < 0))

    sc.add_layer("tibial_cartilage", "tibial_cartilage", L["tibial_cartilage"], tib_cart)

    rim_r = (pr[0] - 1.0, pr[1] - 1.0)

    def meniscus_local(ctx, key):
        ck = "men_" + key
        if ck in ctx.cache:
            return ctx.cache[ck]
        m = p[key]
        c = m["c"]
        lo = np.array([c[0] - 22 * s, c[1] - 26 * s, w_t - 1.0])
        hi = np.array([c[0] + 22 * s, c[1] + 26 * s, w_t + m["height"] + 2.0])
        if not ctx.near(*sc.joint_box("tibia", lo, hi)):
            ctx.cache[ck] = None
            return None
        u, v, w = ctx.coords("tibia")
        du, dv = (u - c[0]), (v - c[1])
        r = np.sqrt(du * du + dv * dv) + 1e-6
        eu, ev = du / r, dv / r
        r_out = ray_ellipse(c[0], c[1], eu, ev, pc, rim_r)
        r_in = ray_ellipse(c[0], c[1], eu, ev, m["inner_c"], m["inner_r"])
        srel = (r_out - r) / np.maximum(r_out - r_in, 1.0)
        phi = np.arctan2(dv, du * m["toward_notch"])
        h = w - (w_t + 0.3)
        hloc = m["height"] * (0.82 + 0.18 * np.sin(phi)) * np.clip(1.0 - srel, 0.0, 1.0) + 0.5
        inside = (srel >= 0) & (srel <= 1) & (h >= 0) & (h <= hloc) & (np.abs(phi) >= float(np.deg2rad(m["gap"])))
        out = dict(inside=inside, r=r, r_out=r_out, srel=srel, phi=phi, h=h, hloc=hloc)
        ctx.cache[ck] = out
        return out

    for key, label in (("mm", L["medial_meniscus"]), ("lm", L["lateral_meniscus"])):
        sc.add_layer(key, "meniscus", label, lambda ctx, key=key: (lambda m: None if m is None else m["inside"])(meniscus_local(ctx, key)))
    return meniscus_local


def add_femoral_and_patellar_cartilage_layers(sc: Scene) -> None:
    p, s = sc.anatomy.p, sc.anatomy.scale
    prad = p["pat_r"]
    t_fc, t_pc = p["t_fc"], p["t_pc"]
    notch_half = 9.5 * s

    def ell_normal(u, v, w, c, r):
        """Normalised position relative to an ellipsoid: (rho, n_u, n_v, n_w), n a unit outward direction."""
        x, y, z = (u - c[0]) / r[0], (v - c[1]) / r[1], (w - c[2]) / r[2]
        rho = np.sqrt(x * x + y * y + z * z) + 1e-6
        return rho, x / rho, y / rho, z / rho

    def fem_cart(ctx):
        d = ctx.f("femur")
        if d is None:
            return None
        sh = (d > 0) & (d < t_fc)
        if not sh.any():
            return sh
        u, v, w = ctx.coords("joint")
        region = np.zeros_like(sh)
        # condyles: distal and posterior surfaces, not their medial/lateral sides nor the notch walls
        for key in ("cond_med", "cond_lat"):
            rho, nu, nv, nw = ell_normal(u, v, w, p[key + "_c"], p[key + "_r"])
            region |= (rho < 1.35) & (np.abs(nu) < 0.62) & ((nw < 0.35) | (nv > 0.45))
        # trochlea: the anterior face
        rho, nu, nv, nw = ell_normal(u, v, w, p["troch_c"], p["troch_r"])
        region |= (rho < 1.3) & (nv < -0.3) & (np.abs(u) < 27.0 * s) & (w < 58.0 * s)
        notch = (np.abs(u) < notch_half) & (v > 2.0 * s) & (w > 2.0)
        return sh & region & ~notch

    sc.add_layer("femoral_cartilage", "femoral_cartilage", L["femoral_cartilage"], fem_cart)

    def pat_cart(ctx):
        d = ctx.f("patella")
        if d is None:
            return None
        u, v, w = ctx.coords("patella")
        return (d > 0) & (d < t_pc) & (v > 0.25 * prad[1]) & (np.abs(w) < 0.8 * prad[2]) & (np.abs(u) < 0.92 * prad[0])

    sc.add_layer("patellar_cartilage", "patellar_cartilage", L["patellar_cartilage"], pat_cart)


def add_ligament_layers(sc: Scene) -> None:
    sc.add_layer("collaterals", "ligament", 0, lambda ctx: any_of(
        lt(ctx.f("mcl1"), 0.0), lt(ctx.f("mcl2"), 0.0), lt(ctx.f("mcl3"), 0.0), lt(ctx.f("lcl"), 0.0), lt(ctx.f("mpfl1"), 0.0), lt(ctx.f("mpfl2"), 0.0)))
    sc.add_layer("acl", "acl", L["acl"], lambda ctx: lt(ctx.f("acl"), 0.0))
    sc.add_layer("pcl", "ligament", L["pcl"], lambda ctx: any_of(lt(ctx.f("pcl1"), 0.0), lt(ctx.f("pcl2"), 0.0)))


def add_bone_layers(sc: Scene) -> None:
    """Bones last: they win wherever a soft structure reaches into them (attachments); then the physeal scars."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    paint_bones(sc, [("fibula", L["fibula"]), ("tibia", L["tibia"]), ("femur", L["femur"]), ("patella", L["patella"])],
                p["cortex"])

    def physis_femur(ctx):
        d = ctx.f("femur")
        if d is None:
            return None
        u, v, w = ctx.coords("joint")
        line = p["physis_f"] + 2.5 * np.sin(u / (9.0 * s)) + 0.06 * v
        return (d < -2.0) & (np.abs(w - line) < 0.6) & (w < 50.0 * s)

    def physis_tibia(ctx):
        d = ctx.f("tibia")
        if d is None:
            return None
        u, v, w = ctx.coords("tibia")
        line = p["physis_t"] + 1.5 * np.sin(u / (11.0 * s))
        return (d < -2.0) & (np.abs(w - line) < 0.6)

    sc.add_layer("physis_femur", "physeal_scar", L["femur"], physis_femur)
    sc.add_layer("physis_tibia", "physeal_scar", L["tibia"], physis_tibia)


__all__ = [
    "add_band_fields", "add_bone_fields", "add_bone_layers", "add_envelope_fields",
    "add_femoral_and_patellar_cartilage_layers", "add_tibial_cartilage_and_meniscus_layers", "add_frames", "add_joint_fluid_layers", "add_ligament_layers", "add_recess_field",
    "add_soft_tissue_layers", "build_scene",
]
