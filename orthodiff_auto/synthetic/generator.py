"""The synthetic dataset folder: write a joint's cases (images, labels, findings tables, dataset.json and the
marker that lets a rerun replace the folder) and the ``generate_synthetic`` command behind them.

Cases are sampled and rendered by ``cases`` (whose names this module re-exports); each is written by one task, in one or several processes, and
depends only on (joint, seed, subset, index), so the number of processes changes nothing.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from orthodiff_auto.data.image_io import write_image
from orthodiff_auto.data.views import VIEWS
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.synthetic.clinical import CLINICAL_DECLARATION, clinical_cells
from orthodiff_auto.synthetic.cases import (  # noqa: F401  (re-exported: the generator's public names)
    CaseSpec, RenderedCase, RenderedScan, check_size, case_id_for, check_prevalence, check_sites, crop_geometry,
    parse_prevalence, render_case, sample_case,
)
from orthodiff_auto.synthetic.joints import DEFAULT_JOINT, get_joint
from orthodiff_auto.synthetic.spec import SIZES
from orthodiff_auto.utils.atomic import write_json_atomic, write_text_atomic
from orthodiff_auto.utils.log import log_line

MARKER = ".orthodiff_synthetic.json"
_FILE_ENDING = ".nii.gz"
_OWNED_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "unlabeled")
_OWNED_FILES = ("dataset.json", "findings.csv", "findingsTs.csv", MARKER)


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
        **({"description": spec_joint.description} if spec_joint.description else {}),
        **clinical,
    }


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


def finding_details(spec) -> dict[str, dict[str, str]]:
    """The grade and kind of each present finding that has them (e.g. {"acl_tear": {"grade": "complete"}})."""
    details = {}
    for name, params in spec.present_findings().items():
        got = {key: str(params[key]) for key in ("grade", "kind") if key in params}
        if got:
            details[name] = got
    return details


def _run_task(task: _Task) -> dict[str, Any]:
    t0, cpu0 = time.perf_counter(), time.process_time()
    spec = sample_case(task.seed, task.index, task.subset, task.size, task.sites, dict(task.prevalence),
                       task.complete, case_id=task.case_id, joint=task.joint, clinical_signal=task.clinical_signal)
    rendered = render_case(spec)
    render_cpu = time.process_time() - cpu0
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
        # CPU time of this process: what one free core needs, whatever else shares the machine
        cpu_seconds=time.process_time() - cpu0, render_cpu_seconds=render_cpu,
        regions={k: [round(float(x), 2) for x in v] for k, v in rendered.regions.items() if rendered.findings.get(k)},
        finding_details=finding_details(spec),
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
    size = check_size(size)
    spec_joint = get_joint(joint)
    site_names = check_sites(sites)
    for name, n in (("cases", n_cases), ("unlabeled", n_unlabeled), ("test", n_test)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise UserInputError(f"--{name} must be a non-negative integer, got {n!r}")
    # --cases 0 --unlabeled N: unlabeled scans only, to be added to another dataset's unlabeled/ for pretraining
    if n_cases < 1 and (n_unlabeled < 1 or n_test > 0):
        raise UserInputError("--cases must be at least 1: a dataset needs training cases (or --cases 0 --unlabeled N "
                             "--test 0: unlabeled scans only, for another dataset's unlabeled/)")
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
        r["case_id"]: {"subset": r["subset"], "views": r["views"], "site": r["site"], "regions": r["regions"],
                            **({"finding_details": r["finding_details"]} if r["finding_details"] else {})} for r in rows}})
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
    def median(key):
        values = sorted(r[key] for r in summary["rows"])
        return values[len(values) // 2]

    log(f"wrote {summary['out']}: {cases} training, {test} test, {unlabeled} unlabeled {joint} cases "
        f"({size}, seed {seed}) in {summary['seconds']:.1f} s "
        f"(median per case per process: {median('seconds'):.2f} s, CPU {median('cpu_seconds'):.2f} s of which "
        f"rendering {median('render_cpu_seconds'):.2f} s)")
    return summary



__all__ = [
    "CaseSpec", "MARKER", "RenderedCase", "RenderedScan", "check_prevalence", "check_sites", "crop_geometry",
    "dataset_json", "generate_dataset", "generate_synthetic", "parse_prevalence", "read_marker", "render_case",
    "sample_case",
]
