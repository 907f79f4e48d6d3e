"""How many voxels a finding changes above the noise, and the rule that every finding is visible on the view
that shows it.

A case is rendered noise-free with one finding on and off (same anatomy, texture, bias and gain), on crops
around the finding; ``D = on - off`` is the lesion's own signal and ``sigma`` the scan's Rician noise sigma.
A reader can only see what stands out of the noise, so a finding counts as *visible* on a view when at least
``MIN_VOXELS`` voxels of ``D`` exceed ``2 sigma`` (``VISIBILITY_RULE``).

The lesion-to-anatomical-variation ratio puts a lesion beside what differs between two knees: the norm of
``D / sigma`` in a box of ``RATIO_BOX_MM`` around the lesion, divided by the norm of the difference between
this case (without the finding) and another case of the same site rendered on the same box moved to that
case's lesion centre (each image divided by its own noise sigma, which removes the scanner gain).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.synthetic.cases import CaseSpec, crop_geometry, render_case
from orthodiff_auto.synthetic.joints import get_joint

CROP_HALF_MM = 20.0  # crops around the lesion: hold its whole change (the knee's region radius)
RATIO_BOX_MM = 20.0  # side of the box in which the lesion is compared with anatomical variation
MIN_VOXELS = 10  # a finding is visible on a view when at least this many voxels ...
MIN_SIGMAS = 2.0  # ... change by more than this many noise sigmas
MIN_CASE_FRACTION = 0.9  # ... in at least this fraction of cases


@dataclass(frozen=True)
class ViewDetectability:
    """One finding on one view of one case."""

    voxels_above_1_sigma: int
    voxels_above_2_sigma: int
    peak_sigmas: float  # max |D| / sigma
    lesion_to_anatomy: float | None  # ||D|| / ||case - other case|| in the box (None: no other case given)

    @property
    def visible(self) -> bool:
        return self.voxels_above_2_sigma >= MIN_VOXELS


def rule_views(joint: str, finding: str) -> tuple[str, ...]:
    """The views the rule asks a finding to be visible on: its declared best view, else every view."""
    best = get_joint(joint).best_view.get(finding)
    return (best,) if best else tuple(VIEWS)


def lesion_centre(spec: CaseSpec, finding: str) -> np.ndarray:
    """World point at the centre of ``finding`` in this case (whether or not the case has it)."""
    return render_case(spec, views=[], findings={finding: True}).regions[finding]


def _box_mask(geometry: ImageGeometry, centre_world, half_mm: float) -> np.ndarray:
    """Voxels whose centre lies within ``half_mm`` of a world point along each of the scan's axes."""
    d = geometry.direction_matrix
    spacing_itk = np.asarray(geometry.spacing[::-1])
    ijk = np.linalg.solve(d, np.asarray(centre_world, dtype=float) - np.asarray(geometry.origin)) / spacing_itk
    axes = [np.abs(np.arange(n) - c) * s <= half_mm for n, c, s in zip(geometry.shape[::-1], ijk, spacing_itk)]
    i, j, k = axes
    return k[:, None, None] & j[None, :, None] & i[None, None, :]


def _moved(geometry: ImageGeometry, shift) -> ImageGeometry:
    return replace(geometry, origin=tuple(float(o + s) for o, s in zip(geometry.origin, shift)))


def measure_case(spec: CaseSpec, finding: str, views: Sequence[str] | None = None, other: CaseSpec | None = None,
                 half_mm: float = CROP_HALF_MM, params: Mapping | None = None) -> dict[str, ViewDetectability]:
    """Detectability of ``finding`` on each view of ``spec`` (crops of ``half_mm`` around it).

    ``other``: a second case for the lesion-to-anatomy ratio. ``params``: replace the finding's parameters
    (e.g. a shrunken lesion)."""
    if params is not None:
        spec = replace(spec, finding_params={**spec.finding_params, finding: {**spec.finding_params[finding],
                                                                              **params}})
    views = [v for v in (views or VIEWS) if v in spec.geometries]
    centre = lesion_centre(spec, finding)
    grids = {v: crop_geometry(spec.geometries[v], centre, half_mm) for v in views}
    on = render_case(spec, views=views, noise=False, findings={finding: True}, geometries=grids)
    off = render_case(spec, views=views, noise=False, findings={finding: False}, geometries=grids)
    others = None
    if other is not None:
        shift = lesion_centre(other, finding) - centre
        other_views = [v for v in views if v in other.geometries]
        others = render_case(other, views=other_views, noise=False, findings={finding: False},
                             geometries={v: _moved(grids[v], shift) for v in other_views})
    out = {}
    for v in views:
        sigma = on.scans[v].noise_sigma
        z = np.abs(on.scans[v].image - off.scans[v].image) / sigma
        ratio = None
        if others is not None and v in others.scans:
            box = _box_mask(grids[v], centre, 0.5 * RATIO_BOX_MM)
            anatomy = off.scans[v].image / sigma - others.scans[v].image / others.scans[v].noise_sigma
            ratio = float(np.linalg.norm(z[box]) / max(float(np.linalg.norm(anatomy[box])), 1e-6))
        out[v] = ViewDetectability(int((z > 1.0).sum()), int((z > MIN_SIGMAS).sum()), float(z.max()), ratio)
    return out


def rule_failures(joint: str, per_case: Mapping[str, Sequence[Mapping[str, ViewDetectability]]]) -> dict[str, str]:
    """The findings that break the rule, each with why: ``per_case`` maps a finding to one
    :func:`measure_case` result per case. A finding passes when it is visible on every one of its
    :func:`rule_views` in at least ``MIN_CASE_FRACTION`` of the cases."""
    failures = {}
    for finding, cases in per_case.items():
        for view in rule_views(joint, finding):
            counts = [c[view].voxels_above_2_sigma for c in cases if view in c]
            if not counts:
                failures[finding] = f"no case has a {view} view"
                break
            visible = sum(n >= MIN_VOXELS for n in counts)
            if visible < MIN_CASE_FRACTION * len(counts):
                failures[finding] = (f"{view}: {visible}/{len(counts)} cases with >= {MIN_VOXELS} voxels above "
                                     f"{MIN_SIGMAS:g} sigma (voxels: {sorted(counts)})")
                break
    return failures


__all__ = ["MIN_CASE_FRACTION", "MIN_SIGMAS", "MIN_VOXELS", "ViewDetectability", "lesion_centre", "measure_case",
           "rule_failures", "rule_views"]
