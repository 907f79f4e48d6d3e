"""Cases: sample a case of a joint (latent anatomy, findings, site, scan grids) and render its views in memory
(``generator`` writes them as a raw dataset).

A case's content depends only on (joint, seed, subset, index): every random stream is seeded from those and a
fixed purpose number, so neither the number of processes nor the order of work changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.synthetic.clinical import sample_clinical, sample_presence_with_clinical
from orthodiff_auto.synthetic.geometry import PRESETS, plan_angle, sample_view_geometry, supersampling
from orthodiff_auto.synthetic.joint import Joint, sample_presence, validate_prevalence
from orthodiff_auto.synthetic.joints import DEFAULT_JOINT, get_joint
from orthodiff_auto.synthetic.latent import Anatomy
from orthodiff_auto.synthetic.rendering import RenderSettings, mr_effects, render_anatomy, tissue_table
from orthodiff_auto.synthetic.scene import TISSUES, Scene
from orthodiff_auto.synthetic.spec import SITES, SIZES

SUBSETS = {"train": (1, None), "test": (2, "test"), "unlabeled": (3, "unl")}  # (stream number, id prefix)
MISSING_VIEW_FRACTION = 0.1


@dataclass
class CaseSpec:
    """Everything that defines one case before rendering."""

    case_id: str
    subset: str
    index: int
    seed: int
    size: str
    site: str
    anatomy: Anatomy
    findings: dict[str, bool]
    finding_params: dict[str, dict[str, Any]]
    geometries: dict[str, ImageGeometry]  # the views this case has
    tissue_jitter: np.ndarray = field(repr=False, default=None)
    joint: str = DEFAULT_JOINT
    clinical: dict[str, Any] | None = None  # --clinical-signal: true age, sex, bmi and which are left out

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(v for v in VIEWS if v in self.geometries)

    @property
    def field_strength(self) -> float:
        return SITES[self.site].field_strength

    def present_findings(self, findings: dict[str, bool] | None = None) -> dict[str, dict]:
        flags = self.findings if findings is None else findings
        return {name: self.finding_params[name] for name in get_joint(self.joint).findings if flags.get(name)}


@dataclass
class RenderedScan:
    view: str
    image: np.ndarray  # float32
    label: np.ndarray  # uint8
    geometry: ImageGeometry
    noise_sigma: float = 0.0  # Rician noise sigma of this scan (also when rendered without noise)


@dataclass
class RenderedCase:
    spec: CaseSpec
    scans: dict[str, RenderedScan]
    findings: dict[str, bool]
    regions: dict[str, np.ndarray]  # finding -> world (LPS) point at its centre


def _rng(seed: int, subset: str, index: int, purpose: int, stream: int = 0) -> np.random.Generator:
    entropy = [int(seed), SUBSETS[subset][0], int(index), int(purpose)] + ([int(stream)] if stream else [])
    return np.random.default_rng(np.random.SeedSequence(entropy))


def case_id_for(subset: str, index: int, width: int = 4, joint: str = DEFAULT_JOINT) -> str:
    prefix = SUBSETS[subset][1] or get_joint(joint).case_prefix
    return f"{prefix}{index + 1:0{width}d}"


def sample_case(
    seed: int = 0,
    index: int = 0,
    subset: str = "train",
    size: str = "tiny",
    sites: Sequence[str] | None = None,
    prevalence: dict[str, float] | None = None,
    complete: bool | None = None,
    case_id: str | None = None,
    joint: str = DEFAULT_JOINT,
    clinical_signal: bool = False,
) -> CaseSpec:
    """Draw case ``index`` of ``subset`` of a joint: its anatomy, findings, site and one scan grid per view.

    ``complete``: every view present. Default: training cases complete, ~10% of test/unlabeled cases miss
    one view. ``clinical_signal``: draw age, sex and BMI, and the findings from them and from each other
    (``synthetic.clinical``); every other draw is unchanged.
    """
    size = check_size(size)
    sites = check_sites(sites)
    spec_joint = get_joint(joint)
    prev = check_prevalence(spec_joint, prevalence)

    def rng_for(purpose: int) -> np.random.Generator:
        return _rng(seed, subset, index, purpose, spec_joint.stream)

    anatomy = spec_joint.sample_anatomy(rng_for(1))
    clinical = sample_clinical(rng_for(8)) if clinical_signal else None
    if clinical is None:
        present = sample_presence(rng_for(2), spec_joint.findings, prev)
    else:
        present = sample_presence_with_clinical(rng_for(2), spec_joint.findings, prev, clinical,
                                                spec_joint.clinical_effects)
    params = spec_joint.sample_finding_params(rng_for(3))
    site = sites[int(rng_for(4).integers(len(sites)))]
    views = list(VIEWS)
    if complete is None:
        complete = subset == "train"
    r_missing = rng_for(6)
    drop, which = r_missing.random(), int(r_missing.integers(len(VIEWS)))
    if not complete and drop < MISSING_VIEW_FRACTION:
        views.pop(which)
    geometries = {}
    plan_axes = spec_joint.plan_axes(anatomy)
    for vi, view in enumerate(VIEWS):
        rng = rng_for(50 + vi)
        centre = anatomy.to_world(np.asarray(spec_joint.view_centres[view]) * anatomy.scale) + rng.normal(0.0, 4.0, size=3)
        angle = plan_angle(anatomy.rotation, plan_axes[view])
        g = sample_view_geometry(view, size, SITES[site], centre, angle, rng)
        if view in views:
            geometries[view] = g
    jitter = np.exp(rng_for(7).normal(0.0, 0.04, size=len(TISSUES)))
    return CaseSpec(case_id or case_id_for(subset, index, joint=joint), subset, index, int(seed), size, site, anatomy,
                    present, params, geometries, jitter, joint=joint, clinical=clinical)


def render_case(
    spec: CaseSpec,
    views: Sequence[str] | None = None,
    noise: bool = True,
    findings: dict[str, bool] | None = None,
    geometries: dict[str, ImageGeometry] | None = None,
) -> RenderedCase:
    """Render the case's views in memory.

    ``findings`` overrides which findings are present (the rest of the case, noise included, stays the
    same); ``noise=False`` leaves out the Rician noise only; ``geometries`` replaces scan grids (e.g. a
    crop from :func:`crop_geometry`: the voxels it shares with the full grid get the same anatomy).
    """
    flags = dict(spec.findings if findings is None else {**spec.findings, **findings})
    scene = get_joint(spec.joint).build_scene(spec.anatomy, spec.present_findings(flags))
    site = SITES[spec.site]
    table = tissue_table(site, spec.tissue_jitter)
    scans = {}
    for view in (spec.views if views is None else views):
        if view not in spec.geometries:
            raise ValueError(f"case {spec.case_id} has no {view} view")
        g = (geometries or {}).get(view, spec.geometries[view])
        scans[view] = render_scan(scene, spec, view, table, noise, g)
    regions = {name: spec.anatomy.to_world(q) for name, q in scene.regions.items()}
    return RenderedCase(spec, scans, flags, regions)


def render_scan(scene: Scene, spec: CaseSpec, view: str, table: np.ndarray, noise: bool = True,
                geometry: ImageGeometry | None = None) -> RenderedScan:
    g = geometry or spec.geometries[view]
    n_t, m = supersampling(spec.size, spec.geometries[view])
    settings = RenderSettings(n_t, m, PRESETS[spec.size].tile)
    signal, amp, label = render_anatomy(scene, g, settings, table)
    rng = _rng(spec.seed, spec.subset, spec.index, 100 + VIEWS.index(view), get_joint(spec.joint).stream)
    image, sigma = mr_effects(signal, amp, g, SITES[spec.site], rng, noise=noise,
                              fluid_level=float(table[TISSUES.index("fluid")]))
    return RenderedScan(view, image, label, g, sigma)


def crop_geometry(geometry: ImageGeometry, center_world, half_mm: float) -> ImageGeometry:
    """The sub-grid of ``geometry`` within ``half_mm`` of a world point (in-plane and through-plane)."""
    d = geometry.direction_matrix
    spacing_itk = np.asarray(geometry.spacing[::-1])
    ijk = np.linalg.solve(d, np.asarray(center_world, dtype=float) - np.asarray(geometry.origin)) / spacing_itk
    size_itk = np.asarray(geometry.shape[::-1])
    half = np.maximum(1, np.ceil(half_mm / spacing_itk)).astype(int)
    lo = np.clip(np.round(ijk).astype(int) - half, 0, size_itk - 1)
    hi = np.clip(np.round(ijk).astype(int) + half, 0, size_itk - 1)
    origin = np.asarray(geometry.origin) + d @ (lo * spacing_itk)
    return ImageGeometry(tuple(int(x) for x in (hi - lo + 1)[::-1]), geometry.spacing, tuple(float(o) for o in origin),
                         geometry.direction)


# ------------------------------------------------------------------------------------------- checks


def check_size(size: str) -> str:
    if size not in SIZES:
        raise UserInputError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    return size


def check_sites(sites: Sequence[str] | str | None) -> list[str]:
    """Site names ('siteA' or just 'A'); default all sites."""
    if sites is None:
        return list(SITES)
    if isinstance(sites, str):
        sites = [s for s in sites.split(",")]
    out = []
    for s in sites:
        s = s.strip()
        name = s if s in SITES else f"site{s}"
        if name not in SITES:
            raise UserInputError(f"unknown site {s!r}; known sites are {', '.join(SITES)} (or A, B, C)")
        if name not in out:
            out.append(name)
    if not out:
        raise UserInputError("--sites names no site")
    return out


def check_prevalence(joint: Joint, prevalence: dict[str, float] | None) -> dict[str, float]:
    """The joint's default prevalences overridden by ``prevalence``; UserInputError for an unknown finding or a
    value outside [0, 1]."""
    try:
        return validate_prevalence(joint, prevalence)
    except ValueError as e:
        raise UserInputError(str(e)) from None


def parse_prevalence(text: str | None, joint: str = DEFAULT_JOINT) -> dict[str, float]:
    """'acl_tear=0.3,effusion=0.5' -> dict; raises UserInputError for unknown findings or bad values."""
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise UserInputError(f"--prevalence: expected finding=probability, got {item!r}")
        name, value = (x.strip() for x in item.split("=", 1))
        try:
            out[name] = float(value)
        except ValueError:
            raise UserInputError(f"--prevalence: {name}={value!r} is not a number") from None
    try:
        validate_prevalence(get_joint(joint), out)
    except ValueError as e:
        raise UserInputError(f"--prevalence: {e}") from None
    return out


__all__ = [
    "CaseSpec", "RenderedCase", "RenderedScan", "sample_case", "render_case", "crop_geometry", "parse_prevalence",
    "check_prevalence", "check_sites",
]
