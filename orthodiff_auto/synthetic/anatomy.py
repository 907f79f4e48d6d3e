"""The latent knee: a parametric, analytically described knee in physical millimetres.

Knee coordinates (u, v, w): u points lateral, v posterior, w superior; the origin lies at the joint line
(the lowest point of the medial femoral condyle) in the middle of the intercondylar notch. A knee is placed
in the scanner's LPS world by a rotation (with a mirror for right knees: lateral is the patient's right,
-x) and a translation. Three rigid frames carry the structures: the femur's (the knee frame itself), the
tibia's (flexion and tibial rotation about the condyles' centre) and the patella's (which a dislocation
shifts and tilts).

``build_scene`` turns a knee and its present findings into a :class:`Scene`: named implicit fields
(approximate signed distances) and an ordered list of painting layers (tissue, label, mask). Rendering
paints the layers in order at every sample point (later layers win), so tissue boundaries, partial volume
and the label maps all follow the same (possibly torn) anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from orthodiff_auto.synthetic import sdf
from orthodiff_auto.synthetic.geometry import rotation
from orthodiff_auto.synthetic.spec import L

# Tissue classes that rendering turns into MR intensities (index = tissue code).
TISSUES: tuple[str, ...] = (
    "air", "skin", "fat", "muscle", "fluid", "tear_fluid", "marrow", "cortex", "physeal_scar",
    "femoral_cartilage", "tibial_cartilage", "patellar_cartilage", "meniscus", "ligament", "acl",
    "tendon", "artery", "vein",
)
T = {name: i for i, name in enumerate(TISSUES)}

BIG = np.float32(1e4)


@dataclass
class Knee:
    """One latent knee: placement in the world plus every shape parameter (knee frame, mm)."""

    side: str  # "left" | "right"
    scale: float
    center: np.ndarray  # world LPS position of the knee origin
    rotation: np.ndarray  # 3x3, columns = world directions of the knee's u, v, w axes
    flexion: float  # degrees
    tibial_rotation: float  # degrees
    p: dict[str, Any] = field(default_factory=dict)

    def to_knee(self, world_points: np.ndarray) -> np.ndarray:
        """(..., 3) world -> knee coordinates."""
        return (np.asarray(world_points, dtype=float) - self.center) @ self.rotation

    def to_world(self, knee_points: np.ndarray) -> np.ndarray:
        return np.asarray(knee_points, dtype=float) @ self.rotation.T + self.center


def sample_knee(rng: np.random.Generator) -> Knee:
    """Draw a latent knee: side, size, shape details, flexion and placement in the scanner."""
    s = float(rng.uniform(0.9, 1.1))
    side = "right" if rng.random() < 0.5 else "left"
    mirror = np.diag([-1.0, 1.0, 1.0]) if side == "right" else np.eye(3)
    rot = rotation(2, rng.uniform(-12, 12)) @ rotation(0, rng.uniform(-6, 6)) @ rotation(1, rng.uniform(-5, 5)) @ mirror
    center = rng.normal(0.0, [12.0, 12.0, 18.0])
    j = lambda sd: float(rng.normal(0.0, sd))  # noqa: E731  jitter in mm
    t_fc = float(rng.uniform(2.1, 2.7))
    t_tc = float(rng.uniform(1.9, 2.4))
    t_pc = float(rng.uniform(2.8, 3.4))
    w_t = -(t_fc + t_tc + 0.5)  # tibial plateau top (tibia frame)
    p: dict[str, Any] = dict(
        t_fc=t_fc, t_tc=t_tc, t_pc=t_pc, w_t=w_t,
        cortex=float(rng.uniform(1.1, 1.6)),
        skin=float(rng.uniform(1.4, 2.0)),
        fat=float(rng.uniform(4.0, 13.0)),
        limb_r=(57.0 * s + j(2.0), 58.0 * s + j(2.0)),
        # femur
        cond_med_c=(-22.5 * s, 6.0 * s, 24.0 * s), cond_med_r=(13.5 * s + j(0.5), 27.0 * s + j(1.0), 24.0 * s),
        cond_lat_c=(22.0 * s, 5.0 * s, 24.5 * s), cond_lat_r=(13.0 * s + j(0.5), 26.0 * s + j(1.0), 23.5 * s),
        troch_c=(0.0, -6.0 * s, 34.0 * s), troch_r=(36.0 * s, 19.0 * s, 27.0 * s),
        groove=(9.0 * s, float(rng.uniform(3.0, 5.0))),  # radius, depth
        epi_med_c=(-33.0 * s, 2.0 * s, 30.0 * s), epi_med_r=(6.0 * s, 10.0 * s, 10.0 * s),
        epi_lat_c=(32.0 * s, 4.0 * s, 28.0 * s), epi_lat_r=(5.0 * s, 9.0 * s, 9.0 * s),
        shaft_f=((0.0, 1.0 * s, 45.0 * s), (0.0, 0.0, 300.0), 13.5 * s + j(0.5)),
        meta_f_c=(0.0, 4.0 * s, 50.0 * s), meta_f_r=(27.0 * s, 20.0 * s, 30.0 * s),
        physis_f=30.0 * s + j(1.5),
        # tibia (tibia frame)
        plat_c=(0.0, 3.0 * s), plat_r=(37.0 * s + j(1.0), 24.0 * s + j(0.8)),
        plat_depth=18.0 * s, flare_k=float(rng.uniform(28.0, 36.0)) * s,
        shaft_t=((0.0, 4.0 * s, w_t - 25.0 * s), (0.0, 7.0 * s, -300.0), 14.5 * s + j(0.5)),
        spines=[((-5.0 * s, 2.0 * s, w_t + 0.5), (3.5 * s, 8.0 * s, 5.0 * s)),
                ((5.0 * s, 3.0 * s, w_t + 0.5), (3.5 * s, 8.0 * s, 4.5 * s))],
        pcl_fossa_c=(0.0, 30.0 * s, w_t - 3.0 * s), pcl_fossa_r=(9.0 * s, 10.0 * s, 9.0 * s),
        tubercle_c=(2.0 * s, -20.0 * s, w_t - 28.0 * s), tubercle_r=(9.0 * s, 6.5 * s, 12.0 * s),
        physis_t=w_t - 17.0 * s + j(1.5),
        fib_head_c=(33.0 * s, 20.0 * s, w_t - 18.0 * s), fib_head_r=(8.5 * s, 8.5 * s, 10.0 * s),
        fib_shaft=((33.0 * s, 21.0 * s, w_t - 24.0 * s), (29.0 * s, 25.0 * s, -300.0), 6.5 * s),
        # patella (rest position, knee frame) and its shape (patella frame)
        pat_r=(21.0 * s + j(0.8), 10.5 * s + j(0.4), 19.0 * s + j(0.8)),
        pat_height=33.0 * s + j(2.5),
        # menisci (tibia frame): centre, inner ellipse centre/radii, height, horn gap (deg)
        mm=dict(c=(-20.0 * s, 3.0 * s), inner_c=(-19.0 * s, 1.0 * s), inner_r=(7.0 * s, 9.0 * s),
                height=float(rng.uniform(5.2, 6.4)) * s, gap=38.0, toward_notch=1.0),
        lm=dict(c=(19.0 * s, 3.0 * s), inner_c=(18.0 * s, 3.0 * s), inner_r=(7.0 * s, 8.0 * s),
                height=float(rng.uniform(4.8, 5.8)) * s, gap=24.0, toward_notch=-1.0),
        # ligaments and tendons: femoral ends in the knee frame, tibial ends in the tibia frame
        acl_f=(10.5 * s, 17.0 * s + j(1.0), 19.0 * s + j(1.0)), acl_t=(2.0 * s, -7.0 * s + j(1.0), w_t - 1.0),
        acl_wt=(float(rng.uniform(9.0, 11.0)) * s, float(rng.uniform(4.2, 5.0)) * s),
        pcl_f=(-10.0 * s, 0.0 * s + j(1.0), 16.0 * s + j(1.0)), pcl_bend=(-3.0 * s, 20.0 * s, -3.0 * s),
        pcl_t=(-1.0 * s, 28.0 * s, w_t - 10.0 * s),
        pcl_wt=(float(rng.uniform(11.0, 13.0)) * s, float(rng.uniform(5.5, 6.5)) * s),
        mcl_f=(-40.0 * s, 2.0 * s, 32.0 * s), mcl_j=(-40.3 * s, 2.0 * s, -2.0 * s),
        mcl_m=(-40.3 * s, 1.5 * s, w_t - 22.0 * s), mcl_t=(-22.0 * s, 0.0, w_t - 60.0 * s),
        mcl_wt=(float(rng.uniform(10.0, 12.0)) * s, float(rng.uniform(1.5, 1.8))),
        lcl_f=(39.5 * s, 4.0 * s, 28.0 * s), lcl_t=(40.5 * s, 19.0 * s, w_t - 18.0 * s),
        lcl_wt=(float(rng.uniform(7.5, 9.0)) * s, float(rng.uniform(1.6, 2.0))),
        mpfl_f=(-37.0 * s, 10.0 * s, 36.0 * s), mpfl_bend=(-39.0 * s, -12.0 * s, 36.0 * s),
        mpfl_wt=(float(rng.uniform(11.0, 14.0)) * s, float(rng.uniform(1.5, 1.8))),
        qt_top=(0.0, -30.0 * s, 115.0 * s), qt_wt=(28.0 * s, 6.5 * s),
        pt_wt=(24.0 * s, 5.0 * s), pt_t=(2.0 * s, -24.0 * s, w_t - 26.0 * s),
        # suprapatellar recess (knee frame), normally a thin slit
        recess_c=(0.0, -21.0 * s, 62.0 * s), recess_r=(22.0 * s, 1.2, 20.0 * s),
        film=float(rng.uniform(0.6, 1.0)),
        # vessels
        artery=((-2.0 * s, 40.0 * s, 200.0), (0.0, 38.0 * s, -200.0), 3.2 * s),
        vein=((4.5 * s, 45.0 * s, 200.0), (4.0 * s, 43.0 * s, -200.0), 4.2 * s),
    )
    # The patella sits in front of the trochlear groove: place it so its cartilage clears the femoral one.
    troch_c, troch_r = p["troch_c"], p["troch_r"]
    h = p["pat_height"]
    dz = (h - troch_c[2]) / troch_r[2]
    facet_u = 0.45 * p["pat_r"][0]
    front = troch_c[1] - troch_r[1] * np.sqrt(max(1e-3, 1 - (facet_u / troch_r[0]) ** 2 - dz**2))
    pat_back = p["pat_r"][1] * np.sqrt(1 - (facet_u / p["pat_r"][0]) ** 2)
    p["pat_c"] = (1.5 * s, float(front - t_fc - t_pc - 0.6 - pat_back), float(h))
    return Knee(side, s, center, rot, float(rng.uniform(0.0, 12.0)), float(rng.uniform(-4.0, 4.0)), p)


# --------------------------------------------------------------------------------------------- scene


@dataclass
class FieldDef:
    frame: str
    fn: Callable  # (u, v, w) -> distance array
    lo: np.ndarray  # knee-frame bounding box (already inflated by the margin)
    hi: np.ndarray


@dataclass
class Layer:
    name: str
    tissue: int
    label: int
    mask: Callable  # (ctx) -> bool array or None (nothing here)


class Scene:
    """Implicit fields + painting layers for one knee with its findings."""

    def __init__(self, knee: Knee):
        self.knee = knee
        self.frames: dict[str, tuple[np.ndarray, np.ndarray]] = {"knee": (np.eye(3), np.zeros(3))}
        self.inverse: dict[str, tuple[np.ndarray, np.ndarray]] = {"knee": (np.eye(3), np.zeros(3))}
        self.fields: dict[str, FieldDef] = {}
        self.layers: list[Layer] = []
        self.regions: dict[str, np.ndarray] = {}  # finding -> knee-frame centre (for montages/tests)

    def add_frame(self, name: str, to_frame: np.ndarray, offset: np.ndarray) -> None:
        """q_frame = to_frame @ q_knee + offset."""
        m = np.asarray(to_frame, dtype=float)
        b = np.asarray(offset, dtype=float)
        self.frames[name] = (m, b)
        inv = np.linalg.inv(m)
        self.inverse[name] = (inv, -inv @ b)

    def frame_point(self, frame: str, q_knee) -> np.ndarray:
        m, b = self.frames[frame]
        return m @ np.asarray(q_knee, dtype=float) + b

    def knee_point(self, frame: str, q_frame) -> np.ndarray:
        m, b = self.inverse[frame]
        return m @ np.asarray(q_frame, dtype=float) + b

    def add_field(self, name: str, frame: str, fn: Callable, lo, hi, margin: float) -> None:
        lo = np.asarray(lo, dtype=float) - margin
        hi = np.asarray(hi, dtype=float) + margin
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        m, b = self.inverse[frame]
        kc = corners @ m.T + b
        self.fields[name] = FieldDef(frame, fn, [float(x) for x in kc.min(axis=0)], [float(x) for x in kc.max(axis=0)])

    def add_layer(self, name: str, tissue: str, label: int, mask: Callable) -> None:
        self.layers.append(Layer(name, T[tissue], label, mask))


class Ctx:
    """Per-chunk evaluation context: frame coordinates and fields computed lazily, far fields culled."""

    def __init__(self, scene: Scene, q: np.ndarray):
        self.scene = scene
        self.q = q  # (3, n) float32, knee frame
        self.lo = [float(x) for x in q.min(axis=1)]
        self.hi = [float(x) for x in q.max(axis=1)]
        self._coords: dict[str, tuple] = {"knee": (q[0], q[1], q[2])}
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


def _ray_ellipse(cu, cv, du, dv, ec, er):
    """Distance from (cu, cv) along unit (du, dv) to the ellipse (centre ec, radii er); the start is inside."""
    ou, ov = (cu - ec[0]) / er[0], (cv - ec[1]) / er[1]
    au, av = du / er[0], dv / er[1]
    a = au * au + av * av
    b = 2.0 * (au * ou + av * ov)
    c = ou * ou + ov * ov - 1.0
    return (-b + np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0))) / (2.0 * a)


def build_scene(knee: Knee, findings: dict[str, dict] | None = None) -> Scene:
    """The scene for ``knee`` with the findings present in ``findings`` (name -> parameters)."""
    from orthodiff_auto.synthetic import findings as fmod

    findings = dict(findings or {})
    p, s = knee.p, knee.scale
    sc = Scene(knee)

    # ---- frames
    pivot = np.array([0.0, p["cond_med_c"][1], p["cond_med_c"][2]])
    r_tib = rotation(0, knee.flexion) @ rotation(2, knee.tibial_rotation)  # tibia -> knee (about pivot)
    sc.add_frame("tibia", r_tib.T, pivot - r_tib.T @ pivot)
    pat_c = np.asarray(p["pat_c"], dtype=float)
    r_pat = np.eye(3)
    if "patellar_dislocation" in findings:
        fp = findings["patellar_dislocation"]
        pat_c = pat_c + np.array([fp["shift"], 0.0, 0.0])
        r_pat = rotation(2, fp["tilt"])
    sc.add_frame("patella", r_pat.T, -r_pat.T @ pat_c)
    tib = lambda q: sc.knee_point("tibia", q)  # noqa: E731 tibia-frame point -> knee frame
    pat = lambda q: sc.knee_point("patella", q)  # noqa: E731

    inf = 1e4

    # ---- soft tissue envelope
    lr = p["limb_r"]

    def limb(u, v, w):
        grow = 1.0 + 0.07 * np.tanh(w / 60.0)
        du = u / (lr[0] * grow)
        dv = (v - 4.0 * s) / (lr[1] * grow)
        return (np.sqrt(du * du + dv * dv) - 1.0) * (min(lr) * grow)

    sc.add_field("limb", "knee", limb, (-lr[0] * 1.1, 4 * s - lr[1] * 1.1, -inf), (lr[0] * 1.1, 4 * s + lr[1] * 1.1, inf), 1.0)

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
    sc.add_field("muscle_thigh", "knee", thigh, *thigh.bbox(), 2.0)
    sc.add_field("muscle_calf", "tibia", calf, *calf.bbox(), 2.0)
    for name in ("artery", "vein"):
        a, b, r = p[name]
        sc.add_field(name, "knee", lambda u, v, w, a=a, b=b, r=r: sdf.capsule(u, v, w, a, b, r),
                     np.minimum(a, b) - r, np.maximum(a, b) + r, 1.0)

    # ---- bones
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
    sc.add_field("femur", "knee", femur, (-42 * s, -30 * s, -2.0), (42 * s, 36 * s, inf), 9.0)

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

    # ---- ligaments and tendons (bands in the knee frame)
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
    for name, band in bands.items():
        lo, hi = band.bbox()
        sc.add_field(name, "knee", lambda u, v, w, b=band: b.distance(u, v, w), lo, hi, 3.0)
    sc.add_field("recess", "knee", lambda u, v, w: sdf.ellipsoid(u, v, w, p["recess_c"], p["recess_r"]),
                 np.subtract(p["recess_c"], p["recess_r"]), np.add(p["recess_c"], p["recess_r"]), 1.0)

    # ---- layers: soft tissue
    sc.add_layer("skin", "skin", 0, lambda ctx: lt(ctx.f("limb"), 0.0))
    sc.add_layer("fat", "fat", 0, lambda ctx: lt(ctx.f("limb"), -p["skin"]))
    sc.add_layer("muscle", "muscle", 0, lambda ctx: all_of(
        any_of(lt(ctx.f("muscle_thigh"), 0.0), lt(ctx.f("muscle_calf"), 0.0)), lt(ctx.f("limb"), -p["fat"])))
    sc.add_layer("artery", "artery", 0, lambda ctx: lt(ctx.f("artery"), 0.0))
    sc.add_layer("vein", "vein", 0, lambda ctx: lt(ctx.f("vein"), 0.0))

    # ---- joint fluid (physiological; an effusion distends it)
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
        sc.add_field("recess", "knee", lambda u, v, w: sdf.ellipsoid(u, v, w, rc, rr), rc - rr, rc + rr, 1.0)
        sc.regions["effusion"] = rc
    t_fc, t_tc, t_pc = p["t_fc"], p["t_tc"], p["t_pc"]

    def fluid(ctx):
        uu, vv, ww = ctx.coords("knee")
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

    # ---- cartilage and menisci
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
        if not ctx.near(*_tibia_box(sc, lo, hi)):
            ctx.cache[ck] = None
            return None
        u, v, w = ctx.coords("tibia")
        du, dv = (u - c[0]), (v - c[1])
        r = np.sqrt(du * du + dv * dv) + 1e-6
        eu, ev = du / r, dv / r
        r_out = _ray_ellipse(c[0], c[1], eu, ev, pc, rim_r)
        r_in = _ray_ellipse(c[0], c[1], eu, ev, m["inner_c"], m["inner_r"])
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
        u, v, w = ctx.coords("knee")
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

    # ---- ligaments
    sc.add_layer("collaterals", "ligament", 0, lambda ctx: any_of(
        lt(ctx.f("mcl1"), 0.0), lt(ctx.f("mcl2"), 0.0), lt(ctx.f("mcl3"), 0.0), lt(ctx.f("lcl"), 0.0), lt(ctx.f("mpfl1"), 0.0), lt(ctx.f("mpfl2"), 0.0)))
    sc.add_layer("acl", "acl", L["acl"], lambda ctx: lt(ctx.f("acl"), 0.0))
    sc.add_layer("pcl", "ligament", L["pcl"], lambda ctx: any_of(lt(ctx.f("pcl1"), 0.0), lt(ctx.f("pcl2"), 0.0)))

    # ---- findings that cut structures: fluid-filled clefts
    for name, params in findings.items():
        fmod.add_finding_layers(sc, name, params, bands, meniscus_local)

    # ---- bones last: they win wherever a soft structure reaches into them (attachments)
    cort = p["cortex"]
    for bone, label in (("fibula", L["fibula"]), ("tibia", L["tibia"]), ("femur", L["femur"]), ("patella", L["patella"])):
        sc.add_layer(bone + "_cortex", "cortex", label, lambda ctx, b=bone: lt(ctx.f(b), 0.0))
        sc.add_layer(bone + "_marrow", "marrow", label, lambda ctx, b=bone: lt(ctx.f(b), -cort))

    def physis_femur(ctx):
        d = ctx.f("femur")
        if d is None:
            return None
        u, v, w = ctx.coords("knee")
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
    return sc


def _tibia_box(sc: Scene, lo, hi):
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    m, b = sc.inverse["tibia"]
    kc = corners @ m.T + b
    return kc.min(axis=0), kc.max(axis=0)
