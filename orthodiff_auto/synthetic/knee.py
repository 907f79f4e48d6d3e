"""The knee: what its synthetic dataset declares (labels, findings, default prevalences, the view that shows each
thin finding best) and the latent knee drawn per case (placement, pose and every shape parameter).

Knee coordinates (the joint frame of ``latent``): u points lateral, v posterior, w superior; the origin lies
at the joint line (the lowest point of the medial femoral condyle) in the middle of the intercondylar notch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orthodiff_auto.synthetic.clinical import ClinicalEffects
from orthodiff_auto.synthetic.joint import label_values
from orthodiff_auto.synthetic.latent import Anatomy, sample_placement, sample_side

DATASET_NAME = "SyntheticKnee"

# dataset.json "labels": background 0, then these in this order.
LABEL_NAMES: tuple[str, ...] = (
    "femur",
    "tibia",
    "fibula",
    "patella",
    "femoral_cartilage",
    "tibial_cartilage",
    "patellar_cartilage",
    "medial_meniscus",
    "lateral_meniscus",
    "acl",
    "pcl",
)
LABELS: dict[str, int] = label_values(LABEL_NAMES)

# dataset.json "findings", in this order.
FINDINGS: tuple[str, ...] = (
    "acl_tear",
    "pcl_tear",
    "medial_meniscus_tear",
    "lateral_meniscus_tear",
    "mcl_tear",
    "lcl_tear",
    "patellar_dislocation",
    "effusion",
)

DEFAULT_PREVALENCE: dict[str, float] = {
    "acl_tear": 0.3,
    "pcl_tear": 0.2,
    "medial_meniscus_tear": 0.35,
    "lateral_meniscus_tear": 0.25,
    "mcl_tear": 0.25,
    "lcl_tear": 0.2,
    "patellar_dislocation": 0.2,
    "effusion": 0.35,
}

# --clinical-signal: meniscal tears are degenerative (much likelier with age; the medial one also with BMI);
# ACL tears a little likelier in women; an ACL tear usually comes with an effusion and often with a lateral
# meniscus tear (the pivot-shift injury). Log-odds shifts (synthetic.clinical).
CLINICAL_EFFECTS = ClinicalEffects(
    age_log_odds={"medial_meniscus_tear": 1.5, "lateral_meniscus_tear": 1.2, "effusion": 0.3},
    bmi_log_odds={"medial_meniscus_tear": 0.4},
    female_log_odds={"acl_tear": 0.5},
    co_occurrence={"acl_tear": {"lateral_meniscus_tear": 1.8, "effusion": 2.0}},
)

DESCRIPTION = (
    "Synthetic knee MRI (orthodiff_auto.synthetic): proton-density fat-suppressed sagittal, coronal and axial "
    "scans. Each finding is present (1) or absent (0). Ligament tears (acl_tear, pcl_tear, mcl_tear, lcl_tear) "
    "have a grade, partial (a fluid cleft through part of the ligament, the other fibres intact) or complete "
    "(the whole ligament discontinuous, its gap filled with fluid); both count as present. Collateral tears "
    "of either grade have fluid over the ligament. Meniscal tears are horizontal, vertical-longitudinal or "
    "radial, each reaching an articular surface. Each case's grades and kinds are listed in "
    ".orthodiff_synthetic.json (cases -> finding_details)."
)

# The view whose in-plane resolution shows each thin finding best (documentation and tests).
BEST_VIEW: dict[str, str] = {
    "acl_tear": "sag",
    "pcl_tear": "sag",
    "mcl_tear": "cor",
    "lcl_tear": "cor",
    "patellar_dislocation": "ax",
}


def sample_knee(rng: np.random.Generator) -> Anatomy:
    """Draw a latent knee: side, size, shape details, flexion and placement in the scanner."""
    s = float(rng.uniform(0.9, 1.1))
    side = sample_side(rng)
    rot, center = sample_placement(rng, side, (12.0, 6.0, 5.0), (12.0, 12.0, 18.0))
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
    flexion = float(rng.uniform(0.0, 12.0))
    return Anatomy(side, s, center, rot, p, pose={"flexion": flexion, "tibial_rotation": float(rng.uniform(-4.0, 4.0))})
