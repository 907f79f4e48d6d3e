"""The shoulder's anatomy as a scene (its findings' parameters and lesion layers: ``shoulder_findings``).

``build_scene`` turns a latent shoulder (``shoulder``) and its present findings into a
:class:`~orthodiff_auto.synthetic.scene.Scene` in three rigid frames: the joint's (the humeral head's centre;
acromion, clavicle, muscles, skin), the scapula's (the glenoid, neck, blade, spine and coracoid, the rotator
cuff, the labrum, the recesses) and the humerus' (tuberosities, bicipital groove, shaft; turned by the
humeral rotation about the head's centre). The glenoid's face, the cartilage, the cuff and the labrum are
shells and caps of spheres about the head's centre, described in the scapula frame by the distance from the
centre, the angle from the scapular axis (``a`` = its cosine) and the angle about it (``phi``: 0 superior,
+90 posterior).

The findings change the anatomy where a radiologist would look, and the labels follow:

- ``supraspinatus_tear`` / ``infraspinatus_tear`` / ``subscapularis_tear``: a full-thickness defect at the
  tendon's footprint, 8-18 mm long and 8-16 mm wide, filled with fluid that reaches the bursa; the label is
  background there.
- ``biceps_tendon_pathology``: tendinosis (the long head thickened, of intermediate signal, in a sheath of
  fluid) or a tear (a fluid-filled gap across it at the groove's entrance).
- ``acromioclavicular_arthropathy``: bony spurs under both sides of the AC joint (labelled as their bones),
  a hypertrophied capsule, fluid in the joint and subchondral oedema.
- ``glenohumeral_effusion``: fluid distends the axillary, subscapular and posterior recesses, the inferior
  joint and the biceps sheath.
- ``labral_tear``: a fluid-filled cleft between the labrum and the glenoid rim over 35-60 degrees of arc,
  superior (SLAP), antero-inferior (Bankart) or posterior.

Parameters of every finding are drawn for every case whether present or not (a fixed number of draws, in a
fixed order), so switching a finding on or off changes nothing else about the case.
"""

from __future__ import annotations

import numpy as np

from orthodiff_auto.synthetic import sdf
from orthodiff_auto.synthetic.latent import Anatomy
from orthodiff_auto.synthetic.scene import Scene, all_of, any_of, lt
from orthodiff_auto.synthetic.scene_parts import (
    add_band_cleft, add_capsule_field, add_envelope_layers, add_vessel_layers, paint_bones, register_band_fields,
)
from orthodiff_auto.synthetic.shoulder import CUFF, LABELS as L
from orthodiff_auto.synthetic.shoulder_findings import (
    add_ac_edema, add_ac_joint_layers, add_cuff_tear, add_labral_tear,
)
from orthodiff_auto.synthetic.shoulder_frame import LABRUM_HEIGHT, add_frames, head_coords

INF = 1e4  # "unbounded" extent of a field's box (mm)
LABELLED_TENDONS = ("supraspinatus", "infraspinatus", "subscapularis")
LABRUM_SPAN = (0.93, 1.3)  # the labrum's extent in the glenoid's elliptic angle (1: the bony rim)
BICEPS_TENDINOSIS_MM = 22.0  # how far from the groove's entrance tendinosis thickens the long head
BICEPS_SHEATH_MM = 35.0  # and how far its sheath fills with fluid


def build_scene(shoulder: Anatomy, findings: dict[str, dict] | None = None) -> Scene:
    """The scene for ``shoulder`` with the findings present in ``findings`` (name -> parameters)."""
    findings = dict(findings or {})
    sc = Scene(shoulder)
    p = shoulder.p
    add_frames(sc)
    add_envelope_fields(sc)
    add_bone_fields(sc, findings)
    bands = add_biceps_fields(sc)
    add_recess_fields(sc, findings)
    add_envelope_layers(sc, ["envelope"], ["muscles", "cuff_muscles", "deltoid"], p["skin"], p["fat"])
    add_vessel_layers(sc)
    add_joint_fluid_layer(sc, findings)
    add_cuff_layers(sc)
    add_biceps_layers(sc, bands, findings.get("biceps_tendon_pathology"), "glenohumeral_effusion" in findings)
    add_labrum_and_cartilage_layers(sc)
    for name in ("supraspinatus_tear", "infraspinatus_tear", "subscapularis_tear"):
        if name in findings:
            add_cuff_tear(sc, name, findings[name])
    if "labral_tear" in findings:
        add_labral_tear(sc, findings["labral_tear"])
    add_ac_joint_layers(sc, findings.get("acromioclavicular_arthropathy"))
    paint_bones(sc, [("scapula", L["scapula"]), ("clavicle", L["clavicle"]), ("acromion", L["acromion"]),
                     ("humerus", L["humerus"])], p["cortex"])
    if "acromioclavicular_arthropathy" in findings:
        add_ac_edema(sc, findings["acromioclavicular_arthropathy"])
    return sc


def add_envelope_fields(sc: Scene) -> None:
    """The skin's envelope (shoulder cap, arm, torso, neck), the muscles (trapezius, pectoralis; the cuff's
    bellies; the deltoid over the humerus), the axillary vessels."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    for name, prims, frame, skip in (("envelope", p["envelope"], "joint", 30.0), ("muscles", p["muscles"], "joint", 4.0)):
        comp = sdf.Compound(skip=skip)
        for prim in prims:
            if prim[0] == "e":
                comp.ellipsoid(prim[1], prim[2], k=20.0 if name == "envelope" else 0.0)
            else:
                comp.capsule(prim[1], prim[2], prim[3], k=20.0 if name == "envelope" else 0.0)
        sc.add_field(name, frame, comp, *comp.bbox(), 1.0)
    cuff = sdf.Compound(skip=4.0)
    for a, b, r in p["cuff_muscles"]:
        cuff.capsule(a, b, r)
    sc.add_field("cuff_muscles", "scapula", cuff, *cuff.bbox(), 2.0)
    d0, d1 = p["deltoid"]
    shaft_a, shaft_b, _ = p["shaft"]
    head_r = p["head_r"]

    def deltoid(u, v, w):
        humerus = sdf.smin(np.sqrt(u * u + v * v + w * w) - head_r, sdf.capsule(u, v, w, shaft_a, shaft_b, 12.0 * s), 10.0)
        layer = np.abs(humerus - 0.5 * (d0 + d1)) - 0.5 * (d1 - d0)
        return sdf.smax(sdf.smax(layer, -(u + 8.0 * s), 8.0), w - (head_r + 18.0 * s), 8.0)

    reach = head_r + d1
    sc.add_field("deltoid", "joint", deltoid, (-8.0 * s, -reach, -INF), (reach + 15.0 * s, reach, head_r + 18.0 * s), 1.0)
    for name in ("artery", "vein"):
        add_capsule_field(sc, name, "joint", *p[name])


def glenoid_distance(p: dict, x, y, z):
    """The glenoid vault (scapula frame): bone between the face (a cap of the sphere of radius ``glenoid_r``
    about the head's centre, within the glenoid's ellipse) and ``glenoid_depth`` behind it."""
    r_g = float(p["glenoid_r"])
    r = np.sqrt(x * x + y * y + z * z) + 1e-6
    sy, sz = (float(h) / r_g for h in p["glenoid_half"])
    e = np.sqrt((y / r / sy) ** 2 + (z / r / sz) ** 2)
    rim = (e - 1.0) * r * min(sy, sz)
    return np.maximum(np.maximum(r_g - r, r - (r_g + float(p["glenoid_depth"]))), np.maximum(rim, x))


def add_bone_fields(sc: Scene, findings: dict[str, dict]) -> None:
    """Humerus (humerus frame), scapula (scapula frame), acromion and clavicle (joint frame); the
    acromioclavicular arthropathy's spurs grow from the acromion and the clavicle."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    head_r = p["head_r"]
    humerus = (sdf.Compound()
               .add("union", lambda u, v, w: np.sqrt(u * u + v * v + w * w) - head_r, -np.full(3, head_r), np.full(3, head_r))
               .ellipsoid(p["gt_c"], p["gt_r"], k=4.0)
               .ellipsoid(p["lt_c"], p["lt_r"], k=4.0)
               .ellipsoid(p["meta_c"], p["meta_r"], k=8.0)
               .capsule(*p["shaft"], k=15.0 * s)
               .capsule(*p["groove"], k=2.0, op="subtract"))
    sc.add_field("humerus", "humerus", humerus, *humerus.bbox(), 8.0)

    to_scapula = lambda q: sc.frames["scapula"][0] @ np.asarray(q, dtype=float)  # noqa: E731 joint -> scapula
    reach = p["glenoid_r"] + p["glenoid_depth"]
    bc, br, bt = p["blade_c"], p["blade_r"], p["blade_t"]

    def blade(x, y, z):
        dx, dz = (x - bc[0]) / br[0], (z - bc[1]) / br[1]
        return sdf.smax((np.sqrt(dx * dx + dz * dz) - 1.0) * min(br), np.abs(y) - bt, 2.0)

    *coracoid_points, coracoid_r = p["coracoid"]
    c0, c1, c2 = (to_scapula(q) if i else np.asarray(q) for i, q in enumerate(coracoid_points))
    scapula = (sdf.Compound()
               .add("union", lambda x, y, z: glenoid_distance(p, x, y, z), (-reach, -reach, -reach), (0.0, reach, reach))
               .capsule(*p["neck"], k=6.0)
               .add("union", blade, (bc[0] - br[0], -bt, bc[1] - br[1]), (bc[0] + br[0], bt, bc[1] + br[1]), k=6.0)
               .capsule(*p["spine"], k=4.0)
               .capsule(c0, c1, coracoid_r, k=4.0)
               .capsule(c1, c2, coracoid_r, k=3.0))
    sc.add_field("scapula", "scapula", scapula, *scapula.bbox(), 6.0)

    spine_end = sc.joint_point("scapula", p["spine"][0])
    link_start, link_r = p["acromion_link"]
    acromion = (sdf.Compound().ellipsoid(p["acromion_c"], p["acromion_r"])
                .capsule(link_start, spine_end, link_r, k=4.0))
    clavicle = sdf.Compound().ellipsoid(p["clavicle_c"], p["clavicle_r"]).capsule(*p["clavicle_shaft"], k=8.0 * s)
    if "acromioclavicular_arthropathy" in findings:
        spur = findings["acromioclavicular_arthropathy"]["spur"]
        ac = np.asarray(p["ac_joint"], dtype=float)
        acromion.ellipsoid(ac + (3.5 * s, 1.0 * s, -4.0 * s - 0.5 * spur), (spur, 2.0 * spur, spur), k=1.5)
        clavicle.ellipsoid(ac + (-3.5 * s, -1.0 * s, -4.5 * s - 0.5 * spur), (spur, 2.0 * spur, spur), k=1.5)
    sc.add_field("acromion", "joint", acromion, *acromion.bbox(), 4.0)
    sc.add_field("clavicle", "joint", clavicle, *clavicle.bbox(), 4.0)


def biceps_path(sc: Scene) -> list[np.ndarray]:
    """Joint-frame points of the long head of biceps: from the supraglenoid tubercle over the head (an arc on
    its surface) to the groove's entrance, then down the groove."""
    p = sc.anatomy.p
    sz = p["glenoid_half"][1] / p["glenoid_r"]
    tubercle = sc.joint_point("scapula", (p["glenoid_r"] + 1.5) * np.array([-np.sqrt(1.0 - (0.98 * sz) ** 2), 0.0,
                                                                            0.98 * sz]))
    entrance, groove, distal = (sc.joint_point("humerus", q) for q in p["biceps_groove"])
    radius = p["head_r"] + p["t_head"] + p["film"] + 0.5 * p["biceps_wt"][1] + 0.3
    a, b = tubercle / np.linalg.norm(tubercle), entrance / np.linalg.norm(entrance)
    angle = float(np.arccos(np.clip(a @ b, -1.0, 1.0)))
    arc = []
    for t in np.linspace(0.0, 1.0, 5)[1:-1]:  # slerp: points on the sphere between the two ends
        direction = (np.sin((1 - t) * angle) * a + np.sin(t * angle) * b) / np.sin(angle)
        arc.append(radius * direction)
    return [tubercle, *arc, entrance, groove, distal]


def add_biceps_fields(sc: Scene) -> dict[str, sdf.Band]:
    """The long head of biceps as round bands along its path; returns them by name (``biceps0`` ...)."""
    width, thick = sc.anatomy.p["biceps_wt"]
    points = biceps_path(sc)
    bands = {f"biceps{i}": sdf.Band(a, b, width, thick, (1, 0, 0), flat=False)
             for i, (a, b) in enumerate(zip(points[:-1], points[1:]))}
    register_band_fields(sc, bands, margin=4.0)
    return bands


def add_recess_fields(sc: Scene, findings: dict[str, dict]) -> None:
    """The axillary, subscapular and posterior recesses (scapula frame): slits, distended by an effusion."""
    p, s = sc.anatomy.p, sc.anatomy.scale
    severity = findings["glenohumeral_effusion"]["severity"] if "glenohumeral_effusion" in findings else 0.0
    grow = {"axillary": (4.0, 4.0, 4.0 + 4.0 * severity), "subscapular": (3.0, 3.0 + 3.0 * severity, 3.0),
            "posterior": (2.0, 2.5 + 3.0 * severity, 3.0)}
    for name, g in grow.items():
        c = np.asarray(p[f"recess_{name}_c"], dtype=float)
        r = np.asarray(p[f"recess_{name}_r"], dtype=float) + (np.asarray(g) * s if severity else 0.0)
        sc.add_field(f"recess_{name}", "scapula", lambda x, y, z, c=c, r=r: sdf.ellipsoid(x, y, z, c, r), c - r, c + r, 1.0)
    if severity:
        sc.regions["glenohumeral_effusion"] = sc.joint_point("scapula", p["recess_axillary_c"])


def add_joint_fluid_layer(sc: Scene, findings: dict[str, dict]) -> None:
    """Fluid between the cartilages and under the capsule, and in the recesses; an effusion thickens the
    inferior joint's fluid and fills the biceps sheath (added with the biceps)."""
    p = sc.anatomy.p
    inner = p["head_r"] + p["t_head"]
    extra = 0.0
    if "glenohumeral_effusion" in findings:
        extra = 2.0 + 3.0 * findings["glenohumeral_effusion"]["severity"]

    def fluid(ctx):
        masks = [lt(ctx.f(f"recess_{name}"), 0.0) for name in ("axillary", "subscapular", "posterior")]
        h = head_coords(sc, ctx)
        if h is not None:
            masks.append((h["r"] > inner) & (h["r"] < inner + p["film"]) & (h["nx"] < -0.4))
            masks.append((h["r"] > inner) & (h["r"] < p["glenoid_r"]) & (h["e"] < 1.05) & (h["nx"] < 0))
            if extra:
                masks.append((h["r"] > inner) & (h["r"] < inner + p["film"] + extra) & (h["nz"] < -0.3) & (h["nx"] < 0.5))
        return any_of(*masks)

    sc.add_layer("joint_fluid", "fluid", 0, fluid)


def cuff_mask(sc: Scene, h: dict, tendon: str) -> np.ndarray:
    """The tendon's part of the cuff: its sector about the scapular axis, between its medial and lateral
    ends, in a shell on the head (above the joint's fluid film)."""
    p = sc.anatomy.p
    spec = CUFF[tendon]
    r0 = p["head_r"] + p["t_head"] + p["film"]
    return ((h["phi"] >= spec["phi"][0]) & (h["phi"] < spec["phi"][1]) & (h["nx"] >= spec["a"][0])
            & (h["nx"] <= spec["a"][1]) & (h["r"] > r0) & (h["r"] < r0 + p["cuff_thickness"][tendon]))


def add_cuff_layers(sc: Scene) -> None:
    """The rotator cuff's tendons: teres minor (unlabelled), supraspinatus, infraspinatus, subscapularis."""

    def tendon_layer(tendon):
        def mask(ctx):
            h = head_coords(sc, ctx)
            return None if h is None else cuff_mask(sc, h, tendon)
        return mask

    sc.add_layer("teres_minor", "tendon", 0, tendon_layer("teres_minor"))
    for tendon in LABELLED_TENDONS:
        sc.add_layer(tendon, "tendon", L[tendon + "_tendon"], tendon_layer(tendon))


def add_biceps_layers(sc: Scene, bands: dict[str, sdf.Band], pathology: dict | None, effusion: bool) -> None:
    """The long head of biceps. Tendinosis thickens it near and in the groove (intermediate signal) within a
    sheath of fluid (an effusion fills the sheath too); a tear cuts it at the groove's entrance."""
    names = list(bands)
    near_groove = names[-3:]  # the last arc segment, the groove's entrance, the groove
    tendinosis = pathology is not None and pathology["kind"] == "tendinosis"

    entrance = bands[near_groove[1]]
    centre = entrance.p0

    def grown(ctx, by, reach):
        """The tendon grown by ``by`` mm within ``reach`` mm of the groove's entrance."""
        if not ctx.near(centre - reach, centre + reach):
            return None
        u, v, w = ctx.coords("joint")
        masks = []
        for n in near_groove:
            lo, hi = bands[n].bbox(margin=by + 1.0)
            if ctx.near(lo, hi):
                masks.append(bands[n].distance(u, v, w, inflate=by) < 0)
        near = (u - centre[0]) ** 2 + (v - centre[1]) ** 2 + (w - centre[2]) ** 2 < reach * reach
        return all_of(any_of(*masks), near)

    if tendinosis or effusion:
        sheath = (pathology["swelling"] + pathology["sheath"]) if tendinosis else 1.5
        sc.add_layer("biceps_sheath", "fluid", 0, lambda ctx: grown(ctx, sheath, BICEPS_SHEATH_MM))
    sc.add_layer("biceps", "tendon", L["biceps_long_head"], lambda ctx: any_of(*(lt(ctx.f(n), 0.0) for n in names)))
    if pathology is None:
        return
    if tendinosis:
        sc.add_layer("biceps_tendinosis", "tendinosis", L["biceps_long_head"],
                     lambda ctx: grown(ctx, pathology["swelling"], BICEPS_TENDINOSIS_MM))
        sc.regions["biceps_tendon_pathology"] = centre
    else:
        sc.regions["biceps_tendon_pathology"] = add_band_cleft(sc, "biceps_tendon_pathology", entrance,
                                                               pathology["t0"], pathology["gap"], 0.8)


def add_labrum_and_cartilage_layers(sc: Scene) -> None:
    """Cartilage of the head (its articular, medial side) and of the glenoid; the labrum, a wedge on the
    glenoid's rim, thick at the bone and thin at its free edge (unlabelled)."""
    p = sc.anatomy.p
    head_r, t_head, r_g = p["head_r"], p["t_head"], p["glenoid_r"]
    lo, hi = LABRUM_SPAN

    def cartilage(ctx):
        h = head_coords(sc, ctx)
        if h is None:
            return None
        head = (h["r"] > head_r) & (h["r"] < head_r + t_head) & (h["nx"] < 0.1)
        glenoid = (h["r"] > r_g - p["t_glenoid"]) & (h["r"] < r_g) & (h["e"] < 1.0) & (h["nx"] < 0)
        return head | glenoid

    def labrum(ctx):
        h = head_coords(sc, ctx)
        if h is None:
            return None
        e = h["e"]
        outer = r_g + LABRUM_HEIGHT * np.clip(np.minimum((e - lo) / (1.0 - lo), (hi - e) / (hi - 1.0)), 0.0, 1.0)
        return (e > lo) & (e < hi) & (h["nx"] < 0) & (h["r"] > head_r + t_head + 0.4) & (h["r"] < outer)

    sc.add_layer("cartilage", "cartilage", 0, cartilage)
    sc.add_layer("labrum", "labrum", 0, labrum)


