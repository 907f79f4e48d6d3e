"""The shoulder: what its synthetic dataset declares (labels, findings, default prevalences) and the latent
shoulder drawn per case (placement, scapular angle, humeral rotation and every shape parameter).

Shoulder coordinates (the joint frame of ``latent``): u points lateral, v posterior, w superior; the origin is
the centre of the humeral head. The scapula lies in a plane turned 24-34 degrees anterior to the coronal
plane (the scapular plane; its frame, ``scapula``: x along the scapular axis towards the glenoid's face,
laterally and anteriorly; y the plane's normal, posterior; z superior). Oblique coronal images are planned
in the scapular plane and oblique sagittal ones parallel to the glenoid's face, as a technologist does; the
angle is kept below 45 degrees with the placement's rotation, so every view keeps the name its slice normal
gives it (``data.views.infer_view``).

Labels: humerus, scapula (glenoid, neck, blade, spine and coracoid), acromion, clavicle, the supraspinatus,
infraspinatus and subscapularis tendons (4.5-6.5 mm thick, 25-40 mm wide) and the long head of biceps (a
5 mm cord). Teres minor, the labrum, the capsule, cartilage and muscles are rendered but unlabelled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orthodiff_auto.synthetic.joint import label_values
from orthodiff_auto.synthetic.latent import Anatomy, sample_placement, sample_side

DATASET_NAME = "SyntheticShoulder"

LABEL_NAMES: tuple[str, ...] = (
    "humerus",
    "scapula",
    "acromion",
    "clavicle",
    "supraspinatus_tendon",
    "infraspinatus_tendon",
    "subscapularis_tendon",
    "biceps_long_head",
)
LABELS: dict[str, int] = label_values(LABEL_NAMES)

FINDINGS: tuple[str, ...] = (
    "supraspinatus_tear",
    "infraspinatus_tear",
    "subscapularis_tear",
    "biceps_tendon_pathology",
    "acromioclavicular_arthropathy",
    "glenohumeral_effusion",
    "labral_tear",
)

DEFAULT_PREVALENCE: dict[str, float] = {
    "supraspinatus_tear": 0.35,
    "infraspinatus_tear": 0.15,
    "subscapularis_tear": 0.2,
    "biceps_tendon_pathology": 0.25,
    "acromioclavicular_arthropathy": 0.35,
    "glenohumeral_effusion": 0.3,
    "labral_tear": 0.25,
}

# Sectors of the rotator cuff about the scapular axis (degrees; 0 superior, +90 posterior), the lateral and
# medial ends of each tendon as cosines of the angle from the scapular axis, and its thickness range (mm).
CUFF: dict[str, dict[str, Any]] = {
    "supraspinatus": dict(phi=(-25.0, 28.0), a=(-0.3, 0.62), thickness=(5.0, 6.5)),
    "infraspinatus": dict(phi=(28.0, 85.0), a=(-0.45, 0.4), thickness=(4.5, 5.5)),
    "teres_minor": dict(phi=(85.0, 120.0), a=(-0.45, 0.3), thickness=(3.5, 4.5)),
    "subscapularis": dict(phi=(-125.0, -48.0), a=(-0.35, 0.75), thickness=(4.5, 6.0)),
}


def sample_shoulder(rng: np.random.Generator) -> Anatomy:
    """Draw a latent shoulder: side, size, shape details, scapular angle, humeral rotation and placement in the
    scanner (supine, the arm at the side)."""
    s = float(rng.uniform(0.9, 1.1))
    side = sample_side(rng)
    rot, center = sample_placement(rng, side, (4.0, 4.0, 6.0), (10.0, 10.0, 12.0))
    j = lambda sd: float(rng.normal(0.0, sd))  # noqa: E731  jitter in mm
    head_r = 23.5 * s + j(0.6)
    t_head = float(rng.uniform(1.2, 1.6))
    t_glenoid = float(rng.uniform(1.5, 2.2))
    film = float(rng.uniform(0.5, 0.8))
    p: dict[str, Any] = dict(
        cortex=float(rng.uniform(1.1, 1.5)),
        skin=float(rng.uniform(1.4, 2.0)),
        fat=float(rng.uniform(4.0, 10.0)),
        scapular_angle=float(rng.uniform(24.0, 34.0)),
        head_r=head_r, t_head=t_head, t_glenoid=t_glenoid, film=film,
        glenoid_r=head_r + t_head + t_glenoid + film,  # the glenoid's bony face: a cap of this sphere
        glenoid_half=(12.5 * s + j(0.4), 18.0 * s + j(0.6)),  # its half-width (y) and half-height (z), mm
        glenoid_depth=13.0 * s,
        cuff_thickness={name: float(rng.uniform(*c["thickness"])) * s for name, c in CUFF.items()},
        # humerus (humerus frame): tuberosities, groove, metaphysis, shaft
        gt_c=(17.0 * s, 4.0 * s, 8.0 * s), gt_r=(9.0 * s, 16.0 * s, 14.0 * s),
        lt_c=(8.0 * s, -19.0 * s, -2.0 * s), lt_r=(7.0 * s, 7.0 * s, 10.0 * s),
        groove=((13.5 * s, -21.5 * s, 16.0 * s), (16.0 * s, -22.0 * s, -70.0 * s), 4.0 * s),
        meta_c=(7.0 * s, 0.0, -22.0 * s), meta_r=(19.0 * s, 19.0 * s, 22.0 * s),
        shaft=((10.0 * s, 0.0, -30.0 * s), (13.0 * s, 2.0 * s, -300.0), 12.0 * s + j(0.4)),
        # biceps long head: the groove entrance and the groove (humerus frame); it leaves the supraglenoid
        # tubercle at the top of the glenoid
        biceps_groove=((14.0 * s, -20.0 * s, 12.0 * s), (15.5 * s, -22.0 * s, -10.0 * s),
                       (16.5 * s, -21.5 * s, -80.0 * s)),
        biceps_wt=(float(rng.uniform(5.0, 6.0)) * s, float(rng.uniform(4.0, 5.0)) * s),
        # scapula (scapula frame): neck, blade, spine; the coracoid from its base (scapula frame) to its bend
        # and tip (joint frame)
        neck=((-(head_r + 10.0 * s), 0.0, -2.0 * s), (-(head_r + 32.0 * s), 2.0 * s, -8.0 * s), 12.0 * s),
        blade_c=(-95.0 * s, -25.0 * s), blade_r=(58.0 * s, 75.0 * s), blade_t=2.5 * s,
        spine=((-(head_r + 25.0 * s), 9.0 * s, 22.0 * s), (-110.0 * s, 8.0 * s, 14.0 * s), 6.0 * s),
        coracoid=((-(head_r + 8.0 * s), -6.0 * s, 16.0 * s), (-18.0 * s, -22.0 * s, 26.0 * s),
                  (-8.0 * s, -40.0 * s, 14.0 * s), 6.0 * s),
        # acromion, its link to the spine, and the clavicle (joint frame); the AC joint lies between them
        acromion_c=(6.0 * s, 4.0 * s, head_r + 14.5 * s), acromion_r=(18.0 * s, 15.0 * s, 4.5 * s),
        acromion_link=((-6.0 * s, 14.0 * s, head_r + 12.0 * s), 5.5 * s),
        clavicle_c=(-29.0 * s, 0.0, head_r + 16.5 * s), clavicle_r=(14.0 * s, 10.0 * s, 6.0 * s),
        clavicle_shaft=((-38.0 * s, -3.0 * s, head_r + 15.5 * s), (-150.0 * s, -25.0 * s, head_r + 6.0 * s), 8.0 * s),
        ac_joint=(-13.5 * s, 2.0 * s, head_r + 16.0 * s),
        # envelope and muscles (joint frame; the cuff's bellies in the scapula frame)
        envelope=[("e", (-5.0 * s, 5.0 * s, 0.0), (70.0 * s + j(2.0), 60.0 * s + j(2.0), 62.0 * s)),  # shoulder cap
                  ("c", (12.0 * s, 2.0 * s, -20.0 * s), (15.0 * s, 4.0 * s, -300.0), 42.0 * s + j(1.5)),  # arm
                  ("e", (-130.0 * s, 12.0 * s, -60.0 * s), (100.0 * s, 90.0 * s, 170.0 * s)),  # torso
                  ("c", (-40.0 * s, 25.0 * s, 50.0 * s), (-150.0 * s, 30.0 * s, 95.0 * s), 30.0 * s)],  # neck slope
        muscles=[("c", (-25.0 * s, 22.0 * s, 48.0 * s), (-150.0 * s, 40.0 * s, 70.0 * s), 12.0 * s),  # trapezius
                 ("c", (-40.0 * s, -50.0 * s, -15.0 * s), (-150.0 * s, -60.0 * s, -10.0 * s), 14.0 * s),  # pectoralis
                 ("c", (-40.0 * s, -50.0 * s, -15.0 * s), (10.0 * s, -18.0 * s, -58.0 * s), 8.0 * s)],
        cuff_muscles=[((-(head_r + 4.0 * s), 2.0 * s, head_r + 2.0 * s), (-100.0 * s, 6.0 * s, 40.0 * s), 12.0 * s),
                      ((-(head_r - 2.0 * s), 19.0 * s, 10.0 * s), (-100.0 * s, 14.0 * s, -20.0 * s), 14.0 * s),
                      ((-(head_r - 2.0 * s), -20.0 * s, -6.0 * s), (-100.0 * s, -14.0 * s, -25.0 * s), 14.0 * s),
                      ((-(head_r + 2.0 * s), 16.0 * s, -12.0 * s), (-80.0 * s, 12.0 * s, -50.0 * s), 9.0 * s)],
        deltoid=(10.0 * s, 30.0 * s),  # between these distances from the humerus, lateral of the glenoid
        artery=((-90.0 * s, -28.0 * s, -18.0 * s), (-5.0 * s, -12.0 * s, -60.0 * s), 3.2 * s),
        vein=((-88.0 * s, -20.0 * s, -25.0 * s), (-3.0 * s, -6.0 * s, -64.0 * s), 4.5 * s),
        # recesses of the joint (scapula frame), slits unless an effusion distends them
        recess_axillary_c=(-(head_r - 6.0 * s), 0.0, -(head_r + 3.0 * s)), recess_axillary_r=(10.0 * s, 12.0 * s, 1.0),
        recess_subscapular_c=(-(head_r + 2.0 * s), -(head_r - 4.0 * s), 4.0 * s), recess_subscapular_r=(6.0 * s, 1.0, 12.0 * s),
        recess_posterior_c=(-(head_r - 4.0 * s), head_r - 2.0 * s, -2.0 * s), recess_posterior_r=(8.0 * s, 1.0, 10.0 * s),
    )
    humeral_rotation = float(rng.uniform(-8.0, 12.0))  # external rotation positive
    return Anatomy(side, s, center, rot, p, pose={"humeral_rotation": humeral_rotation})


def scapular_axes(anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint-frame directions of the scapula frame's x (scapular axis, lateral-anterior), y (the scapular
    plane's normal, posterior-lateral) and z (superior)."""
    a = float(np.deg2rad(anatomy.p["scapular_angle"]))
    return (np.array([np.cos(a), -np.sin(a), 0.0]), np.array([np.sin(a), np.cos(a), 0.0]),
            np.array([0.0, 0.0, 1.0]))


def plan_axes(anatomy: Anatomy) -> dict[str, tuple[float, float, float]]:
    """Oblique coronal and sagittal planes in and across the scapular plane; axial on the body's axis."""
    normal = tuple(float(x) for x in scapular_axes(anatomy)[1])
    return {"sag": normal, "cor": normal, "ax": (0.0, 1.0, 0.0)}
