"""What a way of reading findings provides, and the registry of them (``READERS``, as ``networks.registry`` is
for architectures).

A reader is one module. It defines a ``Reader``: its name (the ``classifier_features`` setting, the
``kind`` in its checkpoints and the start of its run folders' names), how it trains a fold
(``train_fold(request, plans, cls_config, device, ctx, log) -> FoldResult``), the files a fold reads beside
the plans (``fold_inputs``: ``auto`` redoes a fold when one is newer), and how a fold's checkpoint becomes a
``FindingsModel`` (``load``): ``prepare(view, scan)`` turns one preprocessed scan into the model's input and
``probabilities(inputs, present, clinical)`` gives the findings' probabilities of one case. The dispatch sites
(``run.train_classification_fold``, ``inference.FindingsEnsemble.load``, ``FoldRequest.variant``,
``pipeline.auto``'s stale check) look the reader up here; ``readers`` registers the built-in ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from orthodiff_auto.classification.config import FUSED
from orthodiff_auto.data.clinical import ClinicalVariable
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.preprocessing.case import preprocess_case
from orthodiff_auto.training.fold import FoldRequest, register_variant

#: what a reader's ``train_fold`` returns: the fold's summary (also written to its summary.json)
FoldResult = dict[str, Any]


@dataclass(frozen=True)
class PreparedScan:
    """One view of a case as the models read it: preprocessed data (1, z, y, x) at ``spacing``, its properties
    (for mapping back), and the predicted segmentation on that grid (label indices; None when not segmented)."""

    data: np.ndarray
    spacing: tuple[float, float, float]
    properties: object
    labels: np.ndarray | None = None

    @classmethod
    def from_scan(cls, image: np.ndarray, geometry, view_plan, segmentation: np.ndarray | None = None) -> "PreparedScan":
        """Preprocess a scan (array in SimpleITK order with its geometry); ``segmentation``: a label map of the
        scan in its own geometry (e.g. from another tool), carried onto the preprocessed grid."""
        data, seg, props = preprocess_case(image, geometry, view_plan, segmentation)
        return cls(data, tuple(props.spacing_after_resampling), props, None if seg is None else seg[0])


class FindingsModel(Protocol):
    """One fold's classifier at prediction time (``FindingsEnsemble`` averages the folds')."""

    #: the declared clinical variables it reads (empty for a model without a tabular branch)
    clinical_variables: tuple[ClinicalVariable, ...]

    def prepare(self, view: str, scan: PreparedScan) -> np.ndarray:
        """The model's input of one preprocessed view of a case."""

    def probabilities(self, inputs: Mapping[str, np.ndarray], present: Sequence[str],
                      clinical: Mapping[str, object] | None) -> np.ndarray:
        """(F,) probabilities of one case from its prepared inputs (``present``: the views it has)."""


def _no_inputs(request: FoldRequest, views: Sequence[str]) -> list[Path]:
    return []


@dataclass(frozen=True)
class Reader:
    name: str
    #: request -> the run folder's name below the view (before the fusion mode and the label fraction)
    variant: Callable[[FoldRequest], str]
    #: (request, plans, cls_config, device, ctx, log) -> FoldResult; writes the fold's outputs (``fold_outputs``)
    train_fold: Callable[..., FoldResult]
    #: (checkpoint extras, model state, plans, device, where) -> FindingsModel
    load: Callable[..., FindingsModel]
    #: (request, the views it reads) -> files beside the plans the fold is made from (a newer one: stale)
    fold_inputs: Callable[[FoldRequest, Sequence[str]], list[Path]] = _no_inputs
    #: the ``kind`` its checkpoints carry besides ``name`` (older names, mapped here once at load)
    checkpoint_kinds: tuple[str, ...] = ()
    #: fusion modes of its fused model, named in the run folder (empty: one fused model, no mode in the name)
    fusion_modes: tuple[str, ...] = ()


READERS: dict[str, Reader] = {}


def register_reader(reader: Reader) -> Reader:
    """Add ``reader`` under its name (replacing one of the same name); returns it."""
    READERS[reader.name] = reader
    return reader


def reader_named(name: str) -> Reader:
    """The reader registered as ``name``; UserInputError (exit 2) naming the known ones."""
    try:
        return READERS[name]
    except KeyError:
        raise UserInputError(f"config classifier_features: choose one of {sorted(READERS)}, got {name!r}") from None


def reader_of_checkpoint(extras: Mapping[str, Any], where: str) -> Reader:
    """The reader whose checkpoints carry ``extras["kind"]`` (its name or an older name of it)."""
    kind = extras.get("kind") or "view"  # without a kind: a single-view network, as before the registry
    for reader in READERS.values():
        if kind == reader.name or kind in reader.checkpoint_kinds:
            return reader
    raise UserInputError(f"{where}: classification checkpoint of unknown kind {kind!r}; known: {sorted(READERS)}")


def classifier_variant(request: FoldRequest) -> str:
    """A classifier's run folder: its reader's name for it, then the fusion mode of a fused model."""
    reader = reader_named(request.config.classifier_features)
    name = reader.variant(request)
    if request.view == FUSED and reader.fusion_modes:
        name += f"_{request.config.fusion}"  # gate and concat runs of a fold must not share a folder
    return name


register_variant("cls", classifier_variant)

__all__ = ["FindingsModel", "FoldResult", "PreparedScan", "READERS", "Reader", "classifier_variant",
           "reader_named", "reader_of_checkpoint", "register_reader"]
