"""One fold of one task and view: the request (``FoldRequest``: where the inputs and outputs are), its checks,
and the fold's split of the cases. What trains it is the task's package (``segmentation``, ``classification``),
chosen by ``pipeline.train_fold``; the loop they share is ``training.loop``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import DEFAULT_CONFIGURATION, Plans
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.training.config import TrainingConfig
from orthodiff_auto.training.splits import fold_cases, load_or_create_splits, subsample_labelled

SPLITS_JSON = "splits.json"
#: tasks whose run folders are "pretrained" or "scratch" (then the label fraction)
PLAIN_VARIANT_TASKS = frozenset({"seg"})
#: task -> the name of a request's run folder below its view (before the label fraction); filled by the task
#: packages (``classification.reader`` names a classifier's folder after its reader and fusion mode)
VARIANT_NAMERS: dict[str, Callable[["FoldRequest"], str]] = {}


def register_variant(task: str, namer: Callable[["FoldRequest"], str]) -> None:
    """Name the run folders of ``task`` with ``namer(request)`` (see ``FoldRequest.variant``)."""
    VARIANT_NAMERS[task] = namer


@dataclass(frozen=True)
class FoldRequest:
    preprocessed_dir: Path
    task: str
    view: str
    fold: int | str
    config: TrainingConfig
    results_dir: Path | None = None
    pretrained: Path | None = None
    label_fraction: float = 1.0
    label_fraction_seed: int = 0
    device: str | None = None
    resume: bool = False
    configuration: str = DEFAULT_CONFIGURATION  # segmentation: nnU-Net's configuration (plans.subplans)
    # segmentation: keep each validation case's class probabilities on the view's grid (nnU-Net's --npz), which
    # find_best_configuration needs to score ensembles of two configurations (segmentation.probabilities)
    save_probabilities: bool = False

    @property
    def variant(self) -> str:
        """The run folder's name below its view: the task's own name for it (a task package registers one with
        ``register_variant``; classification's depends on the reader), else "pretrained" or "scratch", after
        the configuration's name for any but 3d_fullres ("3d_lowres_scratch"); then the label fraction and its
        seed."""
        namer = VARIANT_NAMERS.get(self.task)
        if namer is None and self.task not in PLAIN_VARIANT_TASKS:  # a silent fall-back would pick another folder
            raise RuntimeError(f"task {self.task!r}: its run folders are named by its package, which registers "
                               "the name with register_variant (cls: import orthodiff_auto.classification.readers)")
        name = namer(self) if namer is not None else ("pretrained" if self.pretrained else "scratch")
        if namer is None and self.configuration != DEFAULT_CONFIGURATION:
            name = f"{self.configuration}_{name}"
        if self.label_fraction < 1.0:
            name += f"_frac{self.label_fraction:g}"
            if self.label_fraction_seed:  # each seed's subset trains in its own folder
                name += f"_seed{self.label_fraction_seed}"
        return name

    def output_dir(self) -> Path:
        root = self.results_dir or self.preprocessed_dir.parent / "results"
        return Path(root) / self.task / self.view / self.variant / f"fold_{self.fold}"


def parse_fold(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise UserInputError(f"fold must be 0-4 or 'all', got {text!r}") from None


def training_cases_and_findings(preprocessed_dir: Path, plans: Plans) -> tuple[list[str], pd.DataFrame | None]:
    """Every training case of any view (splits are per case, shared by all views and tasks) and the findings."""
    cases: set[str] = set()
    for view in plans.views:
        if (preprocessed_dir / view).is_dir():
            cases.update(PreprocessedDataset(preprocessed_dir, view).case_ids(subset="train"))
    return sorted(cases), findings_table(preprocessed_dir, plans)


def findings_table(preprocessed_dir: Path, plans: Plans) -> pd.DataFrame | None:
    """The preprocessed folder's findings.csv indexed by case (None without findings)."""
    findings_csv = preprocessed_dir / "findings.csv"
    if plans.findings and findings_csv.is_file():
        return pd.read_csv(findings_csv, dtype={"case_id": str}).set_index("case_id")
    return None


def prepare_split(request: FoldRequest, plans: Plans) -> tuple[list[str], list[str]]:
    all_cases, table = training_cases_and_findings(request.preprocessed_dir, plans)
    splits = load_or_create_splits(request.preprocessed_dir / SPLITS_JSON, all_cases, table, plans.findings)
    return fold_cases(splits, request.fold)


def label_fraction_subset(request: FoldRequest, plans: Plans, train_ids: list[str]) -> list[str]:
    """The fold's training cases reduced to ``request.label_fraction`` (all of them at 1): a subset stratified
    per finding and site that keeps a positive and a negative of every finding the cases have, chosen by
    ``request.label_fraction_seed`` (``training.splits.subsample_labelled``)."""
    if request.label_fraction >= 1:
        return list(train_ids)
    table = findings_table(request.preprocessed_dir, plans)
    return subsample_labelled(train_ids, request.label_fraction, request.label_fraction_seed, table, plans.findings)


def check_request(request: FoldRequest) -> Plans:
    """The plans of the request's preprocessed folder, after checking the view, fold, label fraction and
    pretrained file (UserInputError naming what is wrong). The task name is checked by its dispatcher."""
    if not request.preprocessed_dir.is_dir():
        raise UserInputError(f"{request.preprocessed_dir}: preprocessed folder does not exist")
    plans = Plans.load(request.preprocessed_dir / "plans.json")
    if request.task == "seg" or request.view != "fused":
        plans.view(request.view)  # clear error for an unknown view
    if request.configuration != DEFAULT_CONFIGURATION:
        if request.task != "seg":
            raise UserInputError(f"--configuration {request.configuration} is a segmentation configuration; "
                                 f"task {request.task!r} has none")
        plans.view(request.view).configuration(request.configuration)  # error naming the planned ones
    if request.fold != "all" and (not isinstance(request.fold, int) or not 0 <= request.fold < 5):
        raise UserInputError(f"fold {request.fold!r} out of range: choose 0-4 or 'all'")
    if not 0 < request.label_fraction <= 1:
        raise UserInputError(f"--label-fraction must be in (0, 1], got {request.label_fraction}")
    if not isinstance(request.label_fraction_seed, int) or request.label_fraction_seed < 0:
        raise UserInputError(f"--label-fraction-seed must be a non-negative integer, got {request.label_fraction_seed}")
    if request.pretrained is not None and not Path(request.pretrained).is_file():
        raise UserInputError(f"{request.pretrained}: pretrained checkpoint not found")
    return plans


__all__ = ["FoldRequest", "SPLITS_JSON", "VARIANT_NAMERS", "register_variant", "check_request", "findings_table", "label_fraction_subset", "parse_fold",
           "prepare_split", "training_cases_and_findings"]
