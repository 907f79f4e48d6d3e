"""Preprocess a whole raw dataset into ``PREPROCESSED_DIR/<view>/`` (parallel, resumable, atomic).

A case is up to date, and skipped, when its properties file exists, names the same subset, records the same
source image/label size and modification time, and was written with the same preprocessing-relevant plan
fields (target spacing, normalisation, resampling; ``ViewPlan.preprocessing_key``) and label values. Label
arrays are stored as class indices (``data.label_values``). Everything else is
(re)written. Cases that no longer exist in the dataset are removed, as are temporary files an interrupted run
left behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.plans.schema import Plans, ViewPlan
from orthodiff_auto.preprocessing.case import preprocess_case
from orthodiff_auto.utils.parallel import run_parallel
from orthodiff_auto.preprocessing.properties import CaseProperties, file_signature, preprocessing_key
from orthodiff_auto.utils.seeding import stable_seed
from orthodiff_auto.preprocessing.storage import case_paths, remove_case, remove_temporaries, write_case

if TYPE_CHECKING:  # pragma: no cover - workers must not import pandas via the dataset module
    from orthodiff_auto.data.dataset import RawDataset, ScanEntry

PREPROCESS_SUBSETS = ("train", "unlabeled")


@dataclass(frozen=True)
class ScanRef:
    """The plain fields of a ScanEntry a worker needs."""

    case_id: str
    view: str
    subset: str
    image: str
    label: str | None


@dataclass(frozen=True)
class ScanTask:
    scan: ScanRef
    view_plan: ViewPlan
    view_dir: str
    key: str
    source: dict
    ignore_label: int | None
    label_values: tuple[int, ...]  # channel order: the stored label arrays hold each value's index


@dataclass
class PreprocessSummary:
    processed: list[str] = field(default_factory=list)  # "<view>/<case>"
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unplanned_views: list[str] = field(default_factory=list)

    def text(self) -> str:
        s = f"preprocessed {len(self.processed)} scans, {len(self.skipped)} already up to date"
        if self.removed:
            s += f", removed {len(self.removed)} stale"
        if self.unplanned_views:
            s += f"; views without a plan (not preprocessed): {self.unplanned_views}"
        return s


def source_signature(scan: "ScanEntry") -> dict:
    return {"image": file_signature(scan.image), "label": file_signature(scan.label)}


def is_up_to_date(view_dir: Path, scan: "ScanEntry", key: str, source: dict) -> bool:
    image_path, seg_path, props_path = case_paths(view_dir, scan.case_id)
    if not props_path.is_file() or not image_path.is_file():
        return False
    try:
        props = CaseProperties.load(props_path)
    except Exception:
        return False
    if props.preprocessing_key != key or props.subset != scan.subset or props.source != source:
        return False
    return seg_path.is_file() if props.has_seg else True


def preprocess_scan(task: ScanTask) -> str:
    """Read, preprocess and store one scan (the worker function)."""
    scan = task.scan
    image, geometry = read_image(scan.image)
    label = read_image(scan.label, dtype=None)[0] if scan.label is not None else None
    data, seg, props = preprocess_case(image, geometry, task.view_plan, label, case_id=scan.case_id,
                                       ignore_label=task.ignore_label, label_values=task.label_values,
                                       seed=stable_seed(scan.case_id, scan.view, "locations"))
    props = props.with_source(scan.case_id, scan.subset, task.source, task.key)
    write_case(task.view_dir, scan.case_id, data, seg, props, task.view_plan.segmentation.patch_size)
    return f"{Path(task.view_dir).name}/{scan.case_id}"


def data_folders(view_plan: ViewPlan) -> dict[str, ViewPlan]:
    """The folders a view's cases are preprocessed into, each with the plan it is preprocessed by: the view's own
    (3d_fullres, 2d and the cascade read it) and one per configuration at another spacing (3d_lowres)."""
    out = {view_plan.view: view_plan}
    for name in view_plan.configuration_names:
        folder = view_plan.configuration(name).data_identifier
        if folder not in out:
            out[folder] = view_plan.for_configuration(name)
    return out


def _tasks_for_folder(view_dir: Path, folder: str, scans, vp: ViewPlan, plans: Plans,
                      summary: PreprocessSummary) -> list[ScanTask]:
    """Remove the folder's cases that left the dataset; the tasks of the scans not up to date."""
    view_dir.mkdir(parents=True, exist_ok=True)
    remove_temporaries(view_dir)
    # the label convention decides the stored arrays too: a change of the declared values redoes the cases
    key = preprocessing_key({**vp.preprocessing_key, "label_values": list(plans.label_values),
                             "ignore_label": plans.ignore_label})
    wanted = {s.case_id for s in scans}
    for p in sorted(view_dir.glob("*.json")):
        if not p.name.startswith(".") and p.stem not in wanted:
            remove_case(view_dir, p.stem)
            summary.removed.append(f"{folder}/{p.stem}")
    tasks = []
    for scan in scans:
        source = source_signature(scan)
        if is_up_to_date(view_dir, scan, key, source):
            summary.skipped.append(f"{folder}/{scan.case_id}")
        else:
            ref = ScanRef(scan.case_id, scan.view, scan.subset, str(scan.image),
                          None if scan.label is None else str(scan.label))
            tasks.append(ScanTask(ref, vp, str(view_dir), key, source, plans.ignore_label, plans.label_values))
    return tasks


def preprocess_dataset(dataset: "RawDataset", plans: Plans, out_dir: Path | str, num_workers: int = 2,
                       progress: bool = True, subsets: tuple[str, ...] = PREPROCESS_SUBSETS) -> PreprocessSummary:
    """Preprocess every scan of ``subsets`` for every planned view into ``out_dir/<view>/`` (and into the folder
    of each configuration planned at another spacing, ``data_folders``)."""
    out_dir = Path(out_dir)
    summary = PreprocessSummary()
    tasks: list[ScanTask] = []
    for view in dataset.views_present():
        scans = [s for s in dataset.select(view=view) if s.subset in subsets]
        if not scans:
            continue
        if view not in plans.views:
            summary.unplanned_views.append(view)
            continue
        for folder, vp in data_folders(plans.views[view]).items():
            # a configuration's own folder serves segmentation only: its labelled scans (pretraining and the
            # classifiers read the view's folder)
            chosen = scans if folder == view else [s for s in scans if s.label is not None and s.subset == "train"]
            tasks += _tasks_for_folder(out_dir / folder, folder, chosen, vp, plans, summary)
    # Largest files first: better load balance across workers.
    tasks.sort(key=lambda t: -(t.source["image"]["size"] if t.source["image"] else 0))
    for done in run_parallel(preprocess_scan, tasks, num_workers, desc="preprocess", progress=progress):
        summary.processed.append(done)
    summary.processed.sort()
    return summary
