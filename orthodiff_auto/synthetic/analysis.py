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
from orthodiff_auto.synthetic.cases import CaseSpec, crop_geometry, render_case
from orthodiff_auto.synthetic.joints import get_joint

DEFAULT_CROP_MM = 20.0  # enough to hold a thin finding's strongest changes


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

    ``half_mm``: half size of the crop around the finding's centre (default: the joint's ``crop_mm``)."""
    with_f = render_case(spec, views=[], findings={finding: True})
    center = with_f.regions[finding]
    half_mm = get_joint(spec.joint).crop_mm.get(finding, DEFAULT_CROP_MM) if half_mm is None else half_mm
    grids = {v: crop_geometry(spec.geometries[v], center, half_mm) for v in views}
    a = render_case(spec, views=views, noise=False, findings={finding: True}, geometries=grids)
    b = render_case(spec, views=views, noise=False, findings={finding: False}, geometries=grids)
    return {v: change_cnr(a.scans[v].image - b.scans[v].image, a.scans[v].noise_sigma, top) for v in views}
