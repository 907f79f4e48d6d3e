"""The joints the synthetic generator knows (``--joint``), each a small description (``joint.Joint``)."""

from __future__ import annotations

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.synthetic import (ankle, ankle_anatomy, knee, knee_anatomy, knee_findings, shoulder, shoulder_anatomy,
                                      shoulder_findings)
from orthodiff_auto.synthetic.joint import Joint, posterior_for_every_view

KNEE = Joint(
    name="knee",
    dataset_name=knee.DATASET_NAME,
    case_prefix="knee",
    label_names=knee.LABEL_NAMES,
    findings=knee.FINDINGS,
    default_prevalence=knee.DEFAULT_PREVALENCE,
    sample_anatomy=knee.sample_knee,
    sample_finding_params=knee_findings.sample_finding_params,
    build_scene=knee_anatomy.build_scene,
    view_centres={"sag": (0.0, 2.0, 8.0), "cor": (0.0, 2.0, 8.0), "ax": (0.0, 0.0, 12.0)},
    plan_axes=posterior_for_every_view,
    best_view=knee.BEST_VIEW,
    clinical_effects=knee.CLINICAL_EFFECTS,
    description=knee.DESCRIPTION,
    # a dislocation moves the patella and tears the MPFL (its centre lies between them); an effusion fills
    # several recesses
    region_radius_mm={"acl_tear": 20.0, "pcl_tear": 20.0, "medial_meniscus_tear": 20.0, "lateral_meniscus_tear": 20.0,
                      "mcl_tear": 20.0, "lcl_tear": 20.0, "patellar_dislocation": 60.0, "effusion": 85.0},
    crop_mm={"patellar_dislocation": 32.0, "effusion": 40.0},
    hint_labels={"acl_tear": "acl", "pcl_tear": "pcl", "medial_meniscus_tear": "medial_meniscus",
                 "lateral_meniscus_tear": "lateral_meniscus", "patellar_dislocation": "patella", "effusion": "patella"},
)

ANKLE = Joint(
    name="ankle",
    dataset_name=ankle.DATASET_NAME,
    case_prefix="ankle",
    label_names=ankle.LABEL_NAMES,
    findings=ankle.FINDINGS,
    default_prevalence=ankle.DEFAULT_PREVALENCE,
    sample_anatomy=ankle.sample_ankle,
    sample_finding_params=ankle_anatomy.sample_finding_params,
    build_scene=ankle_anatomy.build_scene,
    # between the plafond and the subtalar joint, a little behind the dome: the heel and the talar head fit
    view_centres={"sag": (0.0, 5.0, -15.0), "cor": (0.0, 5.0, -15.0), "ax": (0.0, 5.0, -15.0)},
    plan_axes=posterior_for_every_view,  # planes follow the leg's rotation in the coil
    best_view={"atfl_tear": "ax"},
    region_radius_mm={"atfl_tear": 20.0, "cfl_tear": 20.0, "achilles_tendon_rupture": 32.0,
                      "talar_osteochondral_lesion": 20.0},
    crop_mm={"achilles_tendon_rupture": 30.0},
    hint_labels={"achilles_tendon_rupture": "achilles_tendon", "talar_osteochondral_lesion": "talus"},
    stream=1,
)

SHOULDER = Joint(
    name="shoulder",
    dataset_name=shoulder.DATASET_NAME,
    case_prefix="shoulder",
    label_names=shoulder.LABEL_NAMES,
    findings=shoulder.FINDINGS,
    default_prevalence=shoulder.DEFAULT_PREVALENCE,
    sample_anatomy=shoulder.sample_shoulder,
    sample_finding_params=shoulder_findings.sample_finding_params,
    build_scene=shoulder_anatomy.build_scene,
    # a little medial of and above the head's centre: glenoid, acromion and AC joint in the field of view
    view_centres={"sag": (-4.0, 2.0, 6.0), "cor": (-4.0, 2.0, 6.0), "ax": (-4.0, 2.0, 4.0)},
    plan_axes=shoulder.plan_axes,  # oblique coronal and sagittal planes in and across the scapular plane
    region_radius_mm={"supraspinatus_tear": 25.0, "infraspinatus_tear": 25.0, "subscapularis_tear": 25.0,
                      "biceps_tendon_pathology": 40.0, "acromioclavicular_arthropathy": 25.0,
                      "glenohumeral_effusion": 70.0, "labral_tear": 30.0},
    crop_mm={"glenohumeral_effusion": 40.0, "biceps_tendon_pathology": 28.0},
    hint_labels={"supraspinatus_tear": "supraspinatus_tendon", "infraspinatus_tear": "infraspinatus_tendon",
                 "subscapularis_tear": "subscapularis_tendon", "biceps_tendon_pathology": "biceps_long_head",
                 "acromioclavicular_arthropathy": "clavicle", "glenohumeral_effusion": "humerus"},
    stream=2,
)

JOINTS: dict[str, Joint] = {j.name: j for j in (KNEE, ANKLE, SHOULDER)}
DEFAULT_JOINT = "knee"


def get_joint(name: str) -> Joint:
    """The joint called ``name``; UserInputError listing the known ones otherwise."""
    if name not in JOINTS:
        raise UserInputError(f"unknown joint {name!r}; choose one of {', '.join(JOINTS)}")
    return JOINTS[name]
