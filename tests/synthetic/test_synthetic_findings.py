"""Findings of every joint change the anatomy where they should, the labels follow, thin ones are plane-dependent."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from orthodiff_auto.synthetic import FINDINGS, JOINTS, LABELS, render_case, sample_case
from orthodiff_auto.synthetic.analysis import finding_visibility
from orthodiff_auto.synthetic.generator import crop_geometry

NONE = {f: False for f in FINDINGS}
ALL_FINDINGS = [(joint.name, finding) for joint in JOINTS.values() for finding in joint.findings]
BEST_VIEWS = [(joint.name, finding, view) for joint in JOINTS.values() for finding, view in sorted(joint.best_view.items())]


def voxel_centres(g) -> np.ndarray:
    nk, nj, ni = g.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1) * np.asarray(g.spacing[::-1])
    return np.asarray(g.origin) + ijk @ g.direction_matrix.T


def no_findings(joint: str) -> dict[str, bool]:
    return {f: False for f in JOINTS[joint].findings}


@pytest.fixture(scope="module")
def tiny_pairs():
    """Per joint: a tiny case and its rendering without any finding (made on first use)."""
    cache = {}

    def get(joint):
        if joint not in cache:
            spec = sample_case(0, 1, size="tiny", joint=joint)
            cache[joint] = spec, render_case(spec, noise=False, findings=no_findings(joint))
        return cache[joint]

    return get


@pytest.mark.parametrize("joint, finding", ALL_FINDINGS)
def test_finding_changes_the_image_in_its_region_only(tiny_pairs, joint, finding):
    spec, without = tiny_pairs(joint)
    with_f = render_case(spec, noise=False, findings={**no_findings(joint), finding: True})
    centre = with_f.regions[finding]
    radius = JOINTS[joint].region_radius_mm[finding]
    total = near = 0.0
    best_cnr = 0.0
    for view, scan in with_f.scans.items():
        diff = np.abs(scan.image - without.scans[view].image)
        dist = np.linalg.norm(voxel_centres(scan.geometry) - centre, axis=-1)
        total += float(diff.sum())
        near += float(diff[dist < radius].sum())
        best_cnr = max(best_cnr, float(diff.max()) / scan.noise_sigma)
    assert total > 0, f"{finding} changed nothing"
    assert near / total > 0.95, f"{finding}: only {near / total:.0%} of the change lies within {radius} mm"
    assert best_cnr > 2.5, f"{finding}: change of {best_cnr:.1f} noise sigmas is too faint"


@pytest.mark.parametrize("joint, finding, label, view, half_mm", [
    ("knee", "acl_tear", "acl", "sag", 20.0), ("knee", "pcl_tear", "pcl", "sag", 20.0),
    ("knee", "medial_meniscus_tear", "medial_meniscus", "sag", 20.0),
    ("knee", "lateral_meniscus_tear", "lateral_meniscus", "sag", 20.0),
    # around the gap only: beside it the ruptured tendon's stumps are thickened (and labelled)
    ("ankle", "achilles_tendon_rupture", "achilles_tendon", "sag", 4.0),
    ("shoulder", "supraspinatus_tear", "supraspinatus_tendon", "cor", 20.0),
    ("shoulder", "infraspinatus_tear", "infraspinatus_tendon", "sag", 20.0),
    ("shoulder", "subscapularis_tear", "subscapularis_tendon", "ax", 20.0),
])
def test_labels_follow_the_torn_anatomy(joint, finding, label, view, half_mm):
    spec = sample_case(2, 0, size="demo", sites=["siteA"], joint=joint)
    none = no_findings(joint)
    centre = render_case(spec, views=[], findings={finding: True}).regions[finding]
    grid = {view: crop_geometry(spec.geometries[view], centre, half_mm)}
    a = render_case(spec, views=[view], noise=False, findings={**none, finding: True}, geometries=grid).scans[view].label
    b = render_case(spec, views=[view], noise=False, findings=none, geometries=grid).scans[view].label
    value = JOINTS[joint].labels[label]
    assert (a == value).sum() < (b == value).sum()  # the fluid-filled gap is not the structure any more
    assert ((b == value) & (a == 0)).any()


def test_acromioclavicular_spurs_are_labelled_as_their_bones():
    """Arthropathy grows bone under both sides of the AC joint: acromion and clavicle labels grow."""
    spec = sample_case(1, 0, size="demo", sites=["siteA"], joint="shoulder")
    none = no_findings("shoulder")
    centre = render_case(spec, views=[], findings={"acromioclavicular_arthropathy": True}).regions[
        "acromioclavicular_arthropathy"]
    grid = {"cor": crop_geometry(spec.geometries["cor"], centre, 20.0)}
    scans = [render_case(spec, views=["cor"], noise=False, findings={**none, "acromioclavicular_arthropathy": flag},
                         geometries=grid).scans["cor"].label for flag in (True, False)]
    labels = JOINTS["shoulder"].labels
    for bone in ("acromion", "clavicle"):
        assert (scans[0] == labels[bone]).sum() > (scans[1] == labels[bone]).sum(), bone


def test_talar_osteochondral_lesion_stays_within_the_talus_label():
    """The lesion (fragment, fluid rim, cyst, oedema) lies inside the bone, whose label it keeps; only the
    image changes, and inside the talus."""
    spec = sample_case(3, 0, size="demo", sites=["siteA"], joint="ankle")
    none = no_findings("ankle")
    centre = render_case(spec, views=[], findings={"talar_osteochondral_lesion": True}).regions[
        "talar_osteochondral_lesion"]
    grid = {"cor": crop_geometry(spec.geometries["cor"], centre, 15.0)}
    a, b = (render_case(spec, views=["cor"], noise=False, findings={**none, "talar_osteochondral_lesion": flag},
                        geometries=grid).scans["cor"] for flag in (True, False))
    assert np.array_equal(a.label, b.label)
    changed = np.abs(a.image - b.image) > 3 * a.noise_sigma
    talus = a.label == JOINTS["ankle"].labels["talus"]
    assert changed.sum() >= 3 and (changed & talus).sum() > 0.5 * changed.sum()


def test_dislocation_moves_the_patella_laterally():
    spec = sample_case(2, 0, size="demo", sites=["siteA"])
    shift = spec.finding_params["patellar_dislocation"]["shift"]
    patella = spec.anatomy.to_world(spec.anatomy.p["pat_c"])
    grid = {"ax": crop_geometry(spec.geometries["ax"], patella, 35.0)}
    centroids = []
    for flag in (False, True):
        scan = render_case(spec, views=["ax"], noise=False, findings={**NONE, "patellar_dislocation": flag},
                           geometries=grid).scans["ax"]
        pts = voxel_centres(scan.geometry)[scan.label == LABELS["patella"]]
        centroids.append(spec.anatomy.to_local(pts).mean(axis=0))  # knee frame: u points lateral
    moved = centroids[1] - centroids[0]
    assert 0.5 * shift < moved[0] < 1.5 * shift and abs(moved[2]) < 1.0


def test_effusion_adds_fluid_signal():
    spec = sample_case(2, 0, size="tiny")
    a = render_case(spec, views=["sag"], noise=False, findings={**NONE, "effusion": True}).scans["sag"]
    b = render_case(spec, views=["sag"], noise=False, findings=NONE).scans["sag"]
    diff = a.image - b.image
    assert diff.sum() > 0 and (diff > 0).sum() > 5 * (diff < 0).sum()
    assert (np.abs(diff) > 5 * a.noise_sigma).sum() >= 10


def thin_form(spec, finding):
    """The case with ``finding`` reduced to its cleft: partial grade, no fluid around the ligament."""
    params = spec.finding_params[finding]
    if "grade" not in params:
        return spec
    thin = {k: v for k, v in params.items() if k not in ("sheath", "sheath_length")}
    return replace(spec, finding_params={**spec.finding_params, finding: {**thin, "grade": "partial"}})


@pytest.mark.parametrize("joint, finding, best", BEST_VIEWS)
def test_thin_findings_are_plane_dependent(joint, finding, best):
    """Peak change / noise (see orthodiff_auto.synthetic.analysis), averaged over 4 demo-size cases:
    the view whose in-plane grid resolves the finding shows it clearly more than the thick-slice views.
    Graded tears are measured by their cleft alone (partial grade, no fluid around the ligament): a
    complete tear's long fluid gap shows on every plane, and the fluid over a collateral ligament on coronal
    and axial alike, as on a scanner."""
    cnr = {"sag": [], "cor": [], "ax": []}
    for index in range(4):
        spec = thin_form(sample_case(0, index, size="demo", joint=joint), finding)
        vis = finding_visibility(spec, finding)
        for view in cnr:
            cnr[view].append(vis[view])
    mean = {view: float(np.mean(v)) for view, v in cnr.items()}
    for view, value in mean.items():
        if view != best:
            assert mean[best] > 1.25 * value, f"{finding}: {best} {mean[best]:.1f} vs {view} {value:.1f} ({mean})"
    assert mean[best] > 8.0  # and clearly visible there
