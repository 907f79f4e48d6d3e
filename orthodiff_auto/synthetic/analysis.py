"""How visible a finding is on each view: the contrast its change makes, relative to the noise.

``finding_visibility`` renders the same case with and without one finding (no noise, identical texture,
bias and gain), crops every view around the finding and measures, for each view::

    CNR = max over slices of (mean of the ``top`` largest |with - without| voxels in that slice) / noise sigma

i.e. the strongest local change a reader could see in one slice, in units of the scan's noise. Thick slices
average a thin change with its surroundings (partial volume) and lower it; a view whose in-plane grid
resolves the change keeps it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.synthetic.generator import CaseSpec, crop_geometry, render_case


# How far from a finding's recorded centre its changes reach (mm): thin findings are local; a dislocation
# moves the patella and tears the MPFL (the centre lies between them); an effusion fills several recesses.
REGION_RADIUS_MM = {
    "acl_tear": 20.0, "pcl_tear": 20.0, "medial_meniscus_tear": 20.0, "lateral_meniscus_tear": 20.0,
    "mcl_tear": 20.0, "lcl_tear": 20.0, "patellar_dislocation": 60.0, "effusion": 85.0,
}

# Crop half-size for measuring visibility: enough to hold the finding's strongest changes.
CROP_MM = {"patellar_dislocation": 32.0, "effusion": 40.0}


def change_cnr(diff: np.ndarray, sigma: float, top: int = 1) -> float:
    """max over slices (axis 0) of the mean of the ``top`` largest |diff| values, divided by sigma."""
    a = np.abs(diff).reshape(diff.shape[0], -1)
    top = min(top, a.shape[1])
    best = np.partition(a, a.shape[1] - top, axis=1)[:, -top:].mean(axis=1)
    return float(best.max() / max(sigma, 1e-6))


def finding_visibility(
    spec: CaseSpec, finding: str, views: Sequence[str] = VIEWS, half_mm: float | None = None, top: int = 1
) -> dict[str, float]:
    """CNR of ``finding``'s change on each view of the case (see the module docstring).

    ``half_mm``: half size of the crop around the finding's centre (default ``CROP_MM``)."""
    with_f = render_case(spec, views=[], findings={finding: True})
    center = with_f.regions[finding]
    half_mm = CROP_MM.get(finding, 20.0) if half_mm is None else half_mm
    grids = {v: crop_geometry(spec.geometries[v], center, half_mm) for v in views}
    a = render_case(spec, views=views, noise=False, findings={finding: True}, geometries=grids)
    b = render_case(spec, views=views, noise=False, findings={finding: False}, geometries=grids)
    return {v: change_cnr(a.scans[v].image - b.scans[v].image, a.scans[v].noise_sigma, top) for v in views}
