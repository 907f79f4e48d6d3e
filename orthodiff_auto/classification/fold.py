"""The cases of one classification fold, and the models a fused model's branches start from.

``classification_fold`` reads the preprocessed views, the findings and the project's split into a
``ClassificationFold``: the views the model reads, each case's labels, which views each case has, and the
training and validation cases (a single-view model leaves out the cases without its view, listed in
``skipped``). ``single_view_states`` and ``pretrained_by_view`` find what each fused branch starts from.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.config import FUSED
from orthodiff_auto.data.preprocessed import load_findings
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.fold import FoldRequest, label_fraction_subset, prepare_split
from orthodiff_auto.training.pretrained import read_encoder_checkpoint


@dataclass(frozen=True)
class ClassificationFold:
    """The cases of one fold of a classification model (a view, or the fused views)."""

    views: list[str]  # the views the model reads
    findings: list[str]  # dataset.json's order
    labels: dict[str, np.ndarray]  # case -> 0/1 per finding (every training case of any view)
    sites: dict[str, str] | None  # case -> site, when findings.csv has sites
    train: list[str]  # the fold's training cases the model trains on
    val: list[str]  # the fold's validation cases the model is validated on
    val_ids: list[str]  # the split's validation cases, before those without the model's views are left out
    skipped: dict[str, list[str]]  # "train"/"val" -> the split's cases without any of the model's views
    present: dict[str, list[bool]]  # case (train and val) -> has the view, per view in ``views`` order


def view_combinations(views: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``views`` (the combinations a case can arrive with), largest first, each in the
    views' order: ``[tuple(views)]`` then the proper subsets."""
    return [s for n in range(len(views), 0, -1) for s in itertools.combinations(views, n)]


def view_cases(preprocessed_dir: Path, plans: Plans) -> dict[str, set[str]]:
    """The preprocessed training cases of each planned view that was preprocessed."""
    return {v: set(PreprocessedDataset(preprocessed_dir, v).case_ids(subset="train"))
            for v in plans.views if (preprocessed_dir / v).is_dir()}


def classification_fold(request: FoldRequest, plans: Plans) -> ClassificationFold:
    """The fold's cases for ``request.view`` (a view, or ``fused``); UserInputError when there are none."""
    pp = Path(request.preprocessed_dir)
    have = view_cases(pp, plans)
    if not have:
        raise UserInputError(f"{pp}: no preprocessed views (run `orthodiff preprocess`)")
    if request.view != FUSED and request.view not in have:
        raise UserInputError(f"{pp / request.view}: no preprocessed data for view {request.view!r}")
    all_cases = sorted(set().union(*have.values()))
    findings, table = load_findings(pp, plans.findings, all_cases)  # before the split: it reads the same table
    train_ids, val_ids = prepare_split(request, plans)
    labels = {c: table.loc[c, findings].to_numpy(dtype=np.float32) for c in all_cases}
    sites = table["site"].astype(str).to_dict() if "site" in table.columns else None

    if request.view == FUSED:
        views = [v for v in have if any(c in have[v] for c in train_ids)]
        if not views:
            raise UserInputError(f"fold {request.fold}: no training scans of any view")
        train = [c for c in train_ids if any(c in have[v] for v in views)]
        val = [c for c in val_ids if any(c in have[v] for v in views)]
        skipped = {"train": sorted(set(train_ids) - set(train)), "val": sorted(set(val_ids) - set(val))}
    else:
        views = [request.view]
        own = have[request.view]
        train = [c for c in train_ids if c in own]
        val = [c for c in val_ids if c in own]
        skipped = {"train": [c for c in train_ids if c not in own], "val": [c for c in val_ids if c not in own]}
    train = label_fraction_subset(request, plans, train)
    if not train:
        raise UserInputError(f"fold {request.fold}: no training scans of view {request.view!r}")
    present = {c: [c in have[v] for v in views] for c in set(train) | set(val)}
    return ClassificationFold(views, list(findings), labels, sites, train, val, list(val_ids), skipped, present)


def single_view_states(request, views: Sequence[str], findings: Sequence[str], val_cases: Sequence[str],
                        log) -> dict[str, dict[str, torch.Tensor]]:
    """Model states of this fold's single-view classifiers (same variant) that exist; refuses one that was
    trained on any of this fold's validation cases (splits remade since)."""
    states = {}
    held_out = set(val_cases)
    for view in views:
        path = replace(request, view=view).output_dir() / "checkpoint_final.pt"
        if not path.is_file():
            continue
        ckpt = load_checkpoint(path)
        extras = ckpt.get("extras", {})
        if list(extras.get("findings", [])) != list(findings):
            raise UserInputError(f"{path}: trained for findings {extras.get('findings')}, the dataset declares "
                                 f"{list(findings)}; retrain that view or delete it")
        leaked = sorted(set(extras.get("split", {}).get("train", [])) & held_out)
        if leaked:
            raise UserInputError(f"{path}: trained on validation cases of this fold ({leaked[:5]}); the splits "
                                 "changed since — retrain that view or delete it")
        states[view] = ckpt["model"]
        log(f"fused: {view} branch starts from {path}")
    return states


def pretrained_by_view(request, pretrained: dict[str, Any] | None, views: Sequence[str],
                        log) -> dict[str, dict[str, Any]]:
    """Fused model: an encoder checkpoint per view without a single-view classifier. ``--pretrained`` names one
    file; ``encoder_<view>.pt`` beside it or in a sibling folder named after the view (``pretrain/<view>/``, as
    ``orthodiff pretrain`` writes them) serves each view, and the named file serves the view it was pretrained on."""
    if pretrained is None:
        return {}
    given = Path(request.pretrained).resolve()
    out: dict[str, dict[str, Any]] = {}
    for view in views:
        candidates = [given.parent / f"encoder_{view}.pt", given.parent.parent / view / f"encoder_{view}.pt"]
        candidate = next((c for c in candidates if c.is_file()), None)
        if candidate is not None:
            out[view] = pretrained if candidate.resolve() == given else read_encoder_checkpoint(candidate)
        elif pretrained.get("view") == view:
            out[view] = pretrained
        else:
            log(f"fused: no pretrained encoder for view {view} beside {given} (encoder_{view}.pt): from scratch")
    return out


__all__ = ["ClassificationFold", "classification_fold", "pretrained_by_view", "single_view_states", "view_cases",
           "view_combinations"]
