"""Cases and datasets: sample a case of a joint (latent anatomy, findings, site, scan grids), render its views,
write the raw dataset folder.

A case's content depends only on (joint, seed, subset, index): every random stream is seeded from those and a
fixed purpose number, so neither the number of processes nor the order of work changes anything.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from orthodiff_auto.data.image_io import ImageGeometry, write_image
from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.synthetic.clinical import (CLINICAL_DECLARATION, clinical_cells, sample_clinical,
                                               sample_presence_with_clinical)
from orthodiff_auto.synthetic.geometry import PRESETS, plan_angle, sample_view_geometry, supersampling
from orthodiff_auto.synthetic.joint import Joint, sample_presence, validate_prevalence
from orthodiff_auto.synthetic.joints import DEFAULT_JOINT, get_joint
from orthodiff_auto.synthetic.latent import Anatomy
from orthodiff_auto.synthetic.rendering import RenderSettings, mr_effects, render_anatomy, tissue_table
from orthodiff_auto.synthetic.scene import TISSUES, Scene
from orthodiff_auto.synthetic.spec import SITES, SIZES
from orthodiff_auto.utils.atomic import write_json_atomic, write_text_atomic
from orthodiff_auto.utils.log import log_line

SUBSETS = {"train": (1, None), "test": (2, "test"), "unlabeled": (3, "unl")}  # (stream number, id prefix)
MARKER = ".orthodiff_synthetic.json"
_FILE_ENDING = ".nii.gz"
_OWNED_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "unlabeled")
_OWNED_FILES = ("dataset.json", "findings.csv", "findingsTs.csv", MARKER)
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
    size = _check_size(size)
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


# ------------------------------------------------------------------------------------------- dataset


def dataset_json(joint: str = DEFAULT_JOINT, clinical_signal: bool = False) -> dict[str, Any]:
    spec_joint = get_joint(joint)
    clinical = {"clinical": CLINICAL_DECLARATION} if clinical_signal else {}
    return {
        "name": spec_joint.dataset_name,
        "anatomy": spec_joint.name,
        "modality": "MRI",
        "views": list(VIEWS),
        "labels": spec_joint.labels,
        "findings": list(spec_joint.findings),
        "file_ending": _FILE_ENDING,
        **clinical,
    }


def _check_size(size: str) -> str:
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


def _prepare_output(out: Path) -> None:
    """Refuse a non-empty folder unless it holds a previous synthetic dataset, whose files are removed."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UserInputError(
                f"{out}: folder is not empty and does not hold a previous synthetic dataset; "
                "choose a new or empty folder"
            )
        for name in _OWNED_FOLDERS:
            folder = out / name
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.is_file() and (path.name.endswith(_FILE_ENDING) or path.name.endswith(".tmp" + _FILE_ENDING)):
                        path.unlink()
                if not any(folder.iterdir()):
                    folder.rmdir()
        for name in _OWNED_FILES:
            if (out / name).is_file() and name != MARKER:
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class _Task:
    out: str
    seed: int
    subset: str
    index: int
    case_id: str
    size: str
    sites: tuple[str, ...]
    prevalence: tuple[tuple[str, float], ...]
    complete: bool | None
    joint: str
    clinical_signal: bool = False


def _run_task(task: _Task) -> dict[str, Any]:
    t0 = time.perf_counter()
    spec = sample_case(task.seed, task.index, task.subset, task.size, task.sites, dict(task.prevalence),
                       task.complete, case_id=task.case_id, joint=task.joint, clinical_signal=task.clinical_signal)
    rendered = render_case(spec)
    out = Path(task.out)
    image_folder = {"train": "imagesTr", "test": "imagesTs", "unlabeled": "unlabeled"}[task.subset]
    label_folder = {"train": "labelsTr", "test": "labelsTs"}.get(task.subset)
    for view, scan in rendered.scans.items():
        name = f"{spec.case_id}_{view}{_FILE_ENDING}"
        write_image(out / image_folder / name, scan.image, scan.geometry)
        if label_folder is not None:
            write_image(out / label_folder / name, scan.label, scan.geometry)
    return dict(
        case_id=spec.case_id, subset=task.subset, findings=rendered.findings, site=spec.site,
        field_strength=spec.field_strength, views=list(spec.views), seconds=time.perf_counter() - t0,
        regions={k: [round(float(x), 2) for x in v] for k, v in rendered.regions.items() if rendered.findings.get(k)},
        clinical=None if spec.clinical is None else clinical_cells(spec.clinical),
    )


def generate_dataset(
    out: Path | str,
    n_cases: int = 20,
    n_unlabeled: int = 0,
    n_test: int = 0,
    size: str = "demo",
    seed: int = 0,
    sites: Sequence[str] | str | None = None,
    prevalence: dict[str, float] | None = None,
    num_processes: int = 1,
    complete: bool | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    joint: str = DEFAULT_JOINT,
    clinical_signal: bool = False,
) -> dict[str, Any]:
    """Write a synthetic raw dataset of ``joint`` to ``out``; returns a summary (counts, seconds, per-case rows).

    ``complete=True`` gives every case all three views; by default training cases are complete and ~10% of
    test and unlabeled cases miss one view. ``clinical_signal``: age, sex and BMI columns (declared in
    dataset.json) that shift the findings' prevalences, and co-occurring findings (``synthetic.clinical``).
    """
    size = _check_size(size)
    spec_joint = get_joint(joint)
    site_names = check_sites(sites)
    for name, n in (("cases", n_cases), ("unlabeled", n_unlabeled), ("test", n_test)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise UserInputError(f"--{name} must be a non-negative integer, got {n!r}")
    if n_cases < 1:
        raise UserInputError("--cases must be at least 1: a dataset needs training cases")
    if not isinstance(num_processes, (int, np.integer)) or num_processes < 1:
        raise UserInputError(f"-np must be at least 1, got {num_processes!r}")
    prev = check_prevalence(spec_joint, prevalence)
    out = Path(out)
    _prepare_output(out)
    params = dict(generator="orthodiff_auto.synthetic", joint=joint, n_cases=n_cases, n_unlabeled=n_unlabeled, n_test=n_test,
                  size=size, seed=seed, sites=site_names, prevalence=prev, complete=complete)
    if clinical_signal:  # only then, so that a dataset made without the option stays byte-identical
        params["clinical_signal"] = True
    # The marker goes first: an interrupted run leaves a folder that a rerun may overwrite.
    write_json_atomic(out / MARKER, {"params": params, "cases": {}})
    tasks = []
    for subset, n in (("train", n_cases), ("test", n_test), ("unlabeled", n_unlabeled)):
        width = max(4, len(str(n)))
        for i in range(n):
            tasks.append(_Task(str(out), int(seed), subset, i, case_id_for(subset, i, width, joint), size,
                               tuple(site_names), tuple(sorted(prev.items())), complete, joint, bool(clinical_signal)))
    t0 = time.perf_counter()
    rows = []
    if num_processes == 1 or len(tasks) == 1:
        for task in tasks:
            rows.append(_run_task(task))
            if progress:
                progress(rows[-1])
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(num_processes, len(tasks))) as pool:
            for row in pool.imap_unordered(_run_task, tasks):
                rows.append(row)
                if progress:
                    progress(row)
    order = {t.case_id: i for i, t in enumerate(tasks)}
    rows.sort(key=lambda r: order[r["case_id"]])
    _write_tables(out, rows, spec_joint.findings)
    write_json_atomic(out / "dataset.json", dataset_json(joint, clinical_signal))
    write_json_atomic(out / MARKER, {"params": params, "cases": {
        r["case_id"]: {"subset": r["subset"], "views": r["views"], "site": r["site"], "regions": r["regions"]} for r in rows}})
    seconds = time.perf_counter() - t0
    return dict(out=str(out), joint=joint, n_cases=n_cases, n_test=n_test, n_unlabeled=n_unlabeled, size=size, seed=seed,
                seconds=seconds, case_seconds=[r["seconds"] for r in rows], rows=rows)


def _write_tables(out: Path, rows: list[dict], findings: tuple[str, ...]) -> None:
    clinical = [d["name"] for d in CLINICAL_DECLARATION] if rows and rows[0].get("clinical") else []
    header = "case_id," + ",".join(findings) + ",site,field_strength" + "".join("," + c for c in clinical)
    for subset, name in (("train", "findings.csv"), ("test", "findingsTs.csv")):
        lines = [header]
        for r in rows:
            if r["subset"] != subset:
                continue
            flags = ",".join("1" if r["findings"][f] else "0" for f in findings)
            cells = "".join("," + r["clinical"][c] for c in clinical)
            lines.append(f"{r['case_id']},{flags},{r['site']},{r['field_strength']:.1f}{cells}")
        if len(lines) > 1:
            write_text_atomic(out / name, "\n".join(lines) + "\n")


def read_marker(root: Path | str) -> dict[str, Any] | None:
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def generate_synthetic(out: Path | str, cases: int = 20, unlabeled: int = 0, test: int = 0, size: str = "demo",
                       seed: int = 0, sites: str | None = None, prevalence: str | None = None, num_processes: int = 1,
                       complete: bool = False, joint: str = DEFAULT_JOINT, clinical_signal: bool = False,
                       log=log_line) -> dict[str, Any]:
    """``orthodiff generate_synthetic``: ``generate_dataset`` from the command's options (``prevalence`` as
    ``finding=p,...``), logging progress every tenth of the cases and a closing summary; returns the summary."""
    if size not in SIZES:
        raise UserInputError(f"unknown --size {size!r}; choose one of {', '.join(SIZES)}")
    get_joint(joint)
    parsed = parse_prevalence(prevalence, joint)
    total = cases + test + unlabeled
    done = [0]

    def progress(row):
        done[0] += 1
        if done[0] == total or done[0] % max(1, total // 10) == 0:
            log(f"  {done[0]}/{total} cases ({row['case_id']}: {row['seconds']:.2f} s)")

    summary = generate_dataset(
        out, n_cases=cases, n_unlabeled=unlabeled, n_test=test, size=size, seed=seed, sites=sites,
        prevalence=parsed, num_processes=num_processes, complete=True if complete else None, progress=progress,
        joint=joint, clinical_signal=clinical_signal,
    )
    secs = summary["case_seconds"]
    log(f"wrote {summary['out']}: {cases} training, {test} test, {unlabeled} unlabeled {joint} cases "
        f"({size}, seed {seed}) in {summary['seconds']:.1f} s "
        f"(median {sorted(secs)[len(secs) // 2]:.2f} s per case per process)")
    return summary


__all__ = [
    "CaseSpec", "RenderedCase", "RenderedScan", "sample_case", "render_case", "generate_dataset", "dataset_json",
    "generate_synthetic", "parse_prevalence", "check_prevalence", "check_sites", "read_marker",
]
