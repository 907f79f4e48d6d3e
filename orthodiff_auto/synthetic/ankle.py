"""The ankle: what its synthetic dataset declares (labels, findings, default prevalences) and the latent ankle
drawn per case (placement, plantarflexion and every shape parameter).

Ankle coordinates (the joint frame of ``latent``): u points lateral, v posterior, w superior; the origin lies
on the top of the talar dome, in the middle of the ankle mortise. The leg (tibia, fibula) stays in this
frame; the foot (talus, calcaneus, navicular, cuboid) turns about the dome's axis by the plantarflexion.

Labels: the four bones and the Achilles tendon (6 mm thick, 12-16 mm wide, long: a structure a segmentation
model can learn at the resolutions rendered). The ATFL and CFL are rendered but unlabelled, like the knee's
collateral ligaments: bands 2-3 mm thick, which the majority label of a 2 x 2 x 6 mm voxel rarely keeps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orthodiff_auto.synthetic.joint import label_values
from orthodiff_auto.synthetic.latent import Anatomy, sample_placement, sample_side

DATASET_NAME = "SyntheticAnkle"

LABEL_NAMES: tuple[str, ...] = ("tibia", "fibula", "talus", "calcaneus", "achilles_tendon")
LABELS: dict[str, int] = label_values(LABEL_NAMES)

FINDINGS: tuple[str, ...] = (
    "atfl_tear",
    "cfl_tear",
    "achilles_tendon_rupture",
    "talar_osteochondral_lesion",
)

DEFAULT_PREVALENCE: dict[str, float] = {
    "atfl_tear": 0.35,
    "cfl_tear": 0.2,
    "achilles_tendon_rupture": 0.2,
    "talar_osteochondral_lesion": 0.25,
}


def sample_ankle(rng: np.random.Generator) -> Anatomy:
    """Draw a latent ankle: side, size, shape details, plantarflexion and placement in the scanner (supine,
    the foot pointing up: the foot rotates in the coil about the leg's axis)."""
    s = float(rng.uniform(0.9, 1.1))
    side = sample_side(rng)
    rot, center = sample_placement(rng, side, (10.0, 4.0, 4.0), (10.0, 10.0, 12.0))
    j = lambda sd: float(rng.normal(0.0, sd))  # noqa: E731  jitter in mm
    dome_r = 20.0 * s + j(0.8)
    p: dict[str, Any] = dict(
        cortex=float(rng.uniform(1.0, 1.4)),
        skin=float(rng.uniform(1.3, 1.8)),
        fat=float(rng.uniform(2.5, 5.0)),
        t_talus=float(rng.uniform(1.2, 1.6)),  # cartilage thickness of the dome
        t_tibia=float(rng.uniform(1.0, 1.4)),  # of the plafond
        film=float(rng.uniform(0.4, 0.8)),
        # talus (foot frame): the dome, a cylinder about the u axis, then neck, head and posterior process
        dome_r=dome_r, dome_v=2.0 * s, dome_hw=14.0 * s + j(0.4), talus_floor=-30.0 * s,
        neck=((-2.0 * s, -10.0 * s, -18.0 * s), (-5.0 * s, -31.0 * s, -24.0 * s), 9.0 * s),
        head_c=(-6.0 * s, -37.0 * s, -25.0 * s), head_r=(12.0 * s, 8.5 * s, 10.0 * s),
        post_process_c=(3.0 * s, 21.0 * s, -25.0 * s), post_process_r=(6.0 * s, 5.0 * s, 5.0 * s),
        # tibia (joint frame): metaphysis, shaft, medial malleolus; the plafond follows the dome
        tib_meta_c=(-4.0 * s, 1.0 * s, 24.0 * s), tib_meta_r=(19.0 * s + j(0.5), 17.0 * s + j(0.5), 26.0 * s),
        tib_shaft=((-2.0 * s, 3.0 * s, 45.0 * s), (-2.0 * s, 5.0 * s, 300.0), 12.5 * s + j(0.4)),
        med_mall_c=(-20.5 * s, 3.0 * s, -5.0 * s), med_mall_r=(5.5 * s, 11.0 * s, 13.0 * s + j(0.8)),
        # fibula: shaft and lateral malleolus (reaching lower than the medial one)
        fib_shaft=((23.0 * s, 11.0 * s, 25.0 * s), (19.0 * s, 15.0 * s, 300.0), 6.5 * s),
        lat_mall_c=(22.5 * s, 9.0 * s, -8.0 * s), lat_mall_r=(6.5 * s, 11.0 * s, 17.0 * s + j(0.8)),
        # calcaneus (foot frame): body, tuberosity, anterior process, sustentaculum tali
        calc_c=(3.0 * s, 14.0 * s, -46.5 * s), calc_r=(14.0 * s, 28.0 * s, 13.5 * s),
        tuber_c=(3.0 * s, 41.0 * s, -52.0 * s), tuber_r=(12.5 * s, 12.0 * s, 16.0 * s),
        calc_ant=((4.0 * s, -6.0 * s, -45.0 * s), (8.0 * s, -30.0 * s, -44.0 * s), 9.0 * s),
        sustentaculum_c=(-11.0 * s, 2.0 * s, -38.0 * s), sustentaculum_r=(6.0 * s, 9.0 * s, 3.5 * s),
        navicular_c=(-8.0 * s, -53.5 * s, -24.0 * s), navicular_r=(14.0 * s, 6.0 * s, 11.0 * s),
        cuboid_c=(13.0 * s, -50.0 * s, -43.0 * s), cuboid_r=(10.0 * s, 9.0 * s, 9.0 * s),
        # ligaments: fibular ends in the joint frame, talar and calcaneal ends in the foot frame
        atfl=((21.0 * s, -1.0 * s, -14.0 * s), (12.0 * s, -17.0 * s, -19.0 * s)),
        atfl_wt=(float(rng.uniform(7.0, 9.0)) * s, float(rng.uniform(2.0, 2.6))),
        cfl=((23.0 * s, 5.0 * s, -23.0 * s), (15.5 * s, 20.0 * s, -44.0 * s)),
        cfl_wt=(float(rng.uniform(5.5, 6.5)) * s, float(rng.uniform(2.6, 3.2))),
        ptfl=((20.0 * s, 15.0 * s, -12.0 * s), (7.0 * s, 21.0 * s, -22.0 * s)), ptfl_wt=(7.0 * s, 4.0 * s),
        deltoid_deep=((-20.0 * s, 3.0 * s, -16.0 * s), (-13.0 * s, 5.0 * s, -25.0 * s)),
        deltoid_superficial=((-21.0 * s, 4.0 * s, -14.0 * s), (-13.0 * s, 4.0 * s, -38.0 * s)),
        # tendons: leg points in the joint frame, foot points in the foot frame
        achilles=((2.0 * s, 48.0 * s, -46.0 * s), (1.0 * s, 37.0 * s + j(1.0), 40.0 * s), (0.0, 34.0 * s, 130.0 * s)),
        achilles_wt=(float(rng.uniform(12.0, 16.0)) * s, float(rng.uniform(5.5, 6.5)) * s),
        tib_post=((-16.0 * s, 17.0 * s, 60.0 * s), (-22.0 * s, 13.0 * s, -12.0 * s), (-18.0 * s, -38.0 * s, -30.0 * s)),
        fhl=((-6.0 * s, 25.0 * s, 40.0 * s), (-8.0 * s, 22.0 * s, -28.0 * s), (-14.0 * s, 2.0 * s, -44.0 * s)),
        peroneals=((23.0 * s, 22.0 * s, 60.0 * s), (26.0 * s, 19.0 * s, -20.0 * s), (22.0 * s, 2.0 * s, -47.0 * s)),
        tib_ant=((-10.0 * s, -24.0 * s, 80.0 * s), (-12.0 * s, -26.0 * s, 0.0), (-20.0 * s, -46.0 * s, -22.0 * s)),
        extensors=((2.0 * s, -25.0 * s, 80.0 * s), (3.0 * s, -27.0 * s, 0.0), (8.0 * s, -44.0 * s, -20.0 * s)),
        # envelope: the leg (an elliptic cylinder, joint frame) and the foot and heel (foot frame)
        leg_c=(0.0, 10.0 * s), leg_r=(34.0 * s + j(1.5), 41.0 * s + j(1.5)),
        foot_c=(3.0 * s, -40.0 * s, -48.0 * s), foot_r=(40.0 * s, 80.0 * s, 38.0 * s),
        heel_c=(3.0 * s, 28.0 * s, -55.0 * s), heel_r=(30.0 * s, 33.0 * s, 30.0 * s),
        # muscles: leg (joint frame) and sole (foot frame)
        leg_muscles=[((-4.0 * s, 27.0 * s, 10.0 * s), (-6.0 * s, 26.0 * s, 200.0), 9.0 * s),  # flexor hallucis longus
                     ((0.0, 34.0 * s, 70.0 * s), (0.0, 32.0 * s, 300.0), 17.0 * s),  # soleus
                     ((22.0 * s, 22.0 * s, 30.0 * s), (22.0 * s, 20.0 * s, 200.0), 6.0 * s),  # peroneus brevis
                     ((-12.0 * s, -20.0 * s, 90.0 * s), (-14.0 * s, -16.0 * s, 300.0), 10.0 * s)],  # tibialis ant.
        sole_muscles=[((-16.0 * s, -10.0 * s, -62.0 * s), (-16.0 * s, -60.0 * s, -62.0 * s), 8.0 * s),  # abductor hallucis
                      ((0.0, 20.0 * s, -74.0 * s), (2.0 * s, -60.0 * s, -74.0 * s), 8.0 * s)],  # flexor digitorum brevis
        # vessels behind the medial malleolus (joint frame)
        artery=((-12.0 * s, 22.0 * s, 80.0 * s), (-17.0 * s, 18.0 * s, -25.0 * s), 2.2 * s),
        vein=((-10.0 * s, 25.0 * s, 80.0 * s), (-15.0 * s, 21.0 * s, -25.0 * s), 2.8 * s),
        # anterior and posterior recesses of the tibiotalar joint (joint frame), normally slits
        recess_ant_c=(-2.0 * s, -17.0 * s, 1.0 * s), recess_ant_r=(13.0 * s, 1.2, 5.0 * s),
        recess_post_c=(0.0, 20.0 * s, -3.0 * s), recess_post_r=(12.0 * s, 1.2, 5.0 * s),
    )
    plantarflexion = float(rng.uniform(0.0, 15.0))
    return Anatomy(side, s, center, rot, p, pose={"plantarflexion": plantarflexion})
