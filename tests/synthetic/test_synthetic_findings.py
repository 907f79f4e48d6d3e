"""Findings change the anatomy where they should, and thin ones are plane-dependent."""

from __future__ import annotations

import numpy as np
import pytest

from orthodiff_auto.synthetic import BEST_VIEW, FINDINGS, LABELS, render_case, sample_case
from orthodiff_auto.synthetic.analysis import REGION_RADIUS_MM, finding_visibility
from orthodiff_auto.synthetic.generator import crop_geometry

NONE = {f: False for f in FINDINGS}


def voxel_centres(g) -> np.ndarray:
    nk, nj, ni = g.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1) * np.asarray(g.spacing[::-1])
    return np.asarray(g.origin) + ijk @ g.direction_matrix.T


@pytest.fixture(scope="module")
def tiny_pair():
    spec = sample_case(0, 1, size="tiny")
    return spec, render_case(spec, noise=False, findings=NONE)


@pytest.mark.parametrize("finding", FINDINGS)
def test_finding_changes_the_image_in_its_region_only(tiny_pair, finding):
    spec, without = tiny_pair
    with_f = render_case(spec, noise=False, findings={**NONE, finding: True})
    centre = with_f.regions[finding]
    radius = REGION_RADIUS_MM[finding]
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


@pytest.mark.parametrize("finding, label", [
    ("acl_tear", "acl"), ("pcl_tear", "pcl"), ("medial_meniscus_tear", "medial_meniscus"),
    ("lateral_meniscus_tear", "lateral_meniscus"),
])
def test_labels_follow_the_torn_anatomy(finding, label):
    spec = sample_case(2, 0, size="demo", sites=["siteA"])
    centre = render_case(spec, views=[], findings={finding: True}).regions[finding]
    grid = {"sag": crop_geometry(spec.geometries["sag"], centre, 20.0)}
    a = render_case(spec, views=["sag"], noise=False, findings={**NONE, finding: True}, geometries=grid).scans["sag"].label
    b = render_case(spec, views=["sag"], noise=False, findings=NONE, geometries=grid).scans["sag"].label
    value = LABELS[label]
    assert (a == value).sum() < (b == value).sum()  # the fluid-filled gap is not the structure any more
    assert ((b == value) & (a == 0)).any()


def test_dislocation_moves_the_patella_laterally():
    spec = sample_case(2, 0, size="demo", sites=["siteA"])
    shift = spec.finding_params["patellar_dislocation"]["shift"]
    patella = spec.knee.to_world(spec.knee.p["pat_c"])
    grid = {"ax": crop_geometry(spec.geometries["ax"], patella, 35.0)}
    centroids = []
    for flag in (False, True):
        scan = render_case(spec, views=["ax"], noise=False, findings={**NONE, "patellar_dislocation": flag},
                           geometries=grid).scans["ax"]
        pts = voxel_centres(scan.geometry)[scan.label == LABELS["patella"]]
        centroids.append(spec.knee.to_knee(pts).mean(axis=0))  # knee frame: u points lateral
    moved = centroids[1] - centroids[0]
    assert 0.5 * shift < moved[0] < 1.5 * shift and abs(moved[2]) < 1.0


def test_effusion_adds_fluid_signal():
    spec = sample_case(2, 0, size="tiny")
    a = render_case(spec, views=["sag"], noise=False, findings={**NONE, "effusion": True}).scans["sag"]
    b = render_case(spec, views=["sag"], noise=False, findings=NONE).scans["sag"]
    diff = a.image - b.image
    assert diff.sum() > 0 and (diff > 0).sum() > 5 * (diff < 0).sum()
    assert (np.abs(diff) > 5 * a.noise_sigma).sum() >= 10


@pytest.mark.parametrize("finding, best", sorted(BEST_VIEW.items()))
def test_thin_findings_are_plane_dependent(finding, best):
    """Peak change / noise (see orthodiff_auto.synthetic.analysis), averaged over 4 demo-size cases:
    the view whose in-plane grid resolves the finding shows it clearly more than the thick-slice views."""
    cnr = {"sag": [], "cor": [], "ax": []}
    for index in range(4):
        vis = finding_visibility(sample_case(0, index, size="demo"), finding)
        for view in cnr:
            cnr[view].append(vis[view])
    mean = {view: float(np.mean(v)) for view, v in cnr.items()}
    for view, value in mean.items():
        if view != best:
            assert mean[best] > 1.25 * value, f"{finding}: {best} {mean[best]:.1f} vs {view} {value:.1f} ({mean})"
    assert mean[best] > 8.0  # and clearly visible there
