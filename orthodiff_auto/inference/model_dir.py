"""The model folder: everything ``predict_folder`` needs (plans, fold checkpoints, thresholds, CV numbers).

Layout (written by ``find_best_configuration``)::

    model.json                       what was chosen, with its cross-validation numbers
    plans.json                       the plans the models were trained under
    seg/<view>/fold_<k>.pt           segmentation checkpoints of the chosen configuration per view
    seg/<view>/fold_<k>_best.pt      the same folds' best-validation checkpoints, where training wrote one
    seg/<view>/<variant>/fold_<k>.pt a chosen cascade's previous stage (e.g. 3d_lowres_scratch), each member
                                     of a chosen ensemble, and a segmentation an anatomy reader was fitted on;
                                     their best checkpoints beside them as above
    cls/<name>/<variant>/fold_<k>.pt classification checkpoints (name: a view or "fused") of every classifier
                                     chosen for a combination of views or for a finding

Per finding (format 3): ``findings_by_views`` names, for each combination of views, the classifier that reads
each finding (the combination's macro winner unless another reader clearly beats it on that finding, with the
pooled out-of-fold figures behind the choice), and ``readers`` holds those classifiers' checkpoints. A folder of
format 2 has neither: every finding comes from the combination's classifier, as before.

Segmentation configurations (format 4): each view's choice names its nnU-Net configuration (``configuration``:
"3d_fullres", "2d", "3d_lowres" or "3d_cascade_fullres"), and a cascade's second stage carries its first
(``previous_stage``, a choice of its own with its checkpoints), whose prediction it reads. Folders of format 2
and 3 have neither: their segmentation is the view's 3d_fullres configuration (``configuration_name``).

Ensembles of two configurations (format 5): a view's choice may be an ensemble (``members``: two choices, each
with its checkpoints and a cascade's first stage), whose prediction averages the members' probabilities; and
``reader_segmentations`` names, per classifier that reads predicted anatomy, the segmentation of each view it
was fitted on where that is not the view's chosen one (prediction feeds it that segmentation). Folders of
format 2 to 4 have neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.subplans import DEFAULT_CONFIGURATION
from orthodiff_auto.utils.atomic import write_json_atomic

# 2: a classifier per combination of views; 3: and a reader per finding; 4: and the segmentation configuration
# per view (a cascade with its previous stage); 5: and ensembles of two configurations, the segmentations the anatomy
# readers were fitted on
MODEL_FORMAT = "orthodiff_auto.model/5"
READABLE_FORMATS = ("orthodiff_auto.model/2", "orthodiff_auto.model/3", "orthodiff_auto.model/4", MODEL_FORMAT)


def best_checkpoint_path(final: Path) -> Path:
    """Where a model folder keeps a segmentation fold's best checkpoint beside its final one
    (``seg/<view>/fold_<k>.pt`` -> ``fold_<k>_best.pt``)."""
    return final.with_name(f"{final.stem}_best{final.suffix}")


@dataclass(frozen=True)
class TaskChoice:
    """One chosen configuration: which run, its checkpoints (relative to the model folder), its CV score.

    Segmentation choices also name their nnU-Net ``configuration`` (None in folders older than format 4: read
    ``configuration_name``, which is then "3d_fullres") and, for a cascade's second stage, the ``previous_stage``
    whose prediction it reads (a choice of the same view, its own checkpoints under ``seg/<view>/<variant>/``).
    An ensemble of two configurations has ``members`` (their choices, checkpoints under ``seg/<view>/<variant>/``)
    and no checkpoints of its own; its variant is ``<member>+<member>``. Classifiers have none of these. They are
    written to model.json only when set, so a description loaded and saved again is the same file."""

    name: str  # view, or "fused"
    variant: str  # e.g. scratch | pretrained | 2d_scratch | 3d_cascade_fullres_pretrained
    checkpoints: tuple[str, ...]
    cv: dict[str, Any] = field(default_factory=dict)
    configuration: str | None = None  # segmentation: "3d_fullres", "2d", "3d_lowres" or "3d_cascade_fullres"
    previous_stage: "TaskChoice | None" = None  # a cascade's first stage
    members: tuple["TaskChoice", ...] = ()  # an ensemble's configurations, whose probabilities are averaged

    @property
    def label(self) -> str:
        """``name/variant``: how findings.csv and the logs name the configuration."""
        return f"{self.name}/{self.variant}"

    @property
    def configuration_name(self) -> str:
        """The segmentation configuration this choice was trained as ("3d_fullres" where none is named; an
        ensemble's: its members' joined by "+")."""
        if self.members:
            return "+".join(m.configuration_name for m in self.members)
        return self.configuration or DEFAULT_CONFIGURATION

    def stages(self) -> tuple["TaskChoice", ...]:
        """The choices a prediction runs, first stage first: ``(previous_stage, self)`` for a cascade, each
        member's stages for an ensemble, else ``(self,)``."""
        if self.members:
            return tuple(stage for member in self.members for stage in member.stages())
        return (*(self.previous_stage.stages() if self.previous_stage else ()), self)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "variant": self.variant, "checkpoints": list(self.checkpoints), "cv": self.cv}
        if self.configuration is not None:
            out["configuration"] = self.configuration
        if self.previous_stage is not None:
            out["previous_stage"] = self.previous_stage.to_dict()
        if self.members:
            out["members"] = [m.to_dict() for m in self.members]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskChoice":
        previous = d.get("previous_stage")
        return cls(str(d["name"]), str(d["variant"]), tuple(str(c) for c in d["checkpoints"]), dict(d.get("cv", {})),
                   str(d["configuration"]) if d.get("configuration") is not None else None,
                   cls.from_dict(previous) if previous is not None else None,
                   tuple(cls.from_dict(m) for m in d.get("members") or ()))


@dataclass(frozen=True)
class ModelDescription:
    dataset: dict[str, Any]  # the dataset description (labels, findings, views)
    segmentation: dict[str, TaskChoice]  # per view (its configuration, a cascade with its previous stage)
    classification: TaskChoice | None  # the choice for a case with every view
    candidates: dict[str, Any] = field(default_factory=dict)  # every configuration compared, with CV numbers
    # the choice for each combination of views a case can arrive with ("sag+cor": plans' view order)
    classification_by_views: dict[str, TaskChoice] = field(default_factory=dict)
    # per combination of views: {finding: {"reader": label, "auroc", "ci", "n_cases", "default", "compared", ...}}
    findings_by_views: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # every classifier some finding is read by (label "name/variant" -> its checkpoints and CV numbers)
    readers: dict[str, TaskChoice] = field(default_factory=dict)
    # classifier label -> {view: the segmentation it was fitted on}, where that is not the view's chosen one
    reader_segmentations: dict[str, dict[str, TaskChoice]] = field(default_factory=dict)

    def classifiers_by_views(self) -> dict[str, TaskChoice]:
        """Every view combination's classifier (the all-view choice alone for a model without the table)."""
        if self.classification_by_views:
            return dict(self.classification_by_views)
        if self.classification is None:
            return {}
        views = self.classification.cv.get("views") or [self.classification.name]
        return {"+".join(views): self.classification}

    def finding_readers(self, key: str) -> dict[str, str]:
        """{finding: classifier label} for cases arriving with the views ``key`` ("sag+cor"); empty for a model
        without the per-finding table (every finding from ``classifiers_by_views()[key]``)."""
        return {f: str(row["reader"]) for f, row in self.findings_by_views.get(key, {}).items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "dataset": self.dataset,
            "segmentation": {k: v.to_dict() for k, v in self.segmentation.items()},
            "classification": self.classification.to_dict() if self.classification else None,
            "classification_by_views": {k: v.to_dict() for k, v in self.classification_by_views.items()},
            "findings_by_views": self.findings_by_views,
            "readers": {k: v.to_dict() for k, v in self.readers.items()},
            "reader_segmentations": {k: {view: c.to_dict() for view, c in v.items()}
                                     for k, v in self.reader_segmentations.items()},
            "candidates": self.candidates,
        }

    def save(self, model_dir: Path) -> None:
        write_json_atomic(Path(model_dir) / "model.json", self.to_dict())

    @classmethod
    def load(cls, model_dir: Path | str) -> "ModelDescription":
        path = Path(model_dir) / "model.json"
        if not path.is_file():
            raise UserInputError(f"{path}: not a model folder (run `orthodiff find_best_configuration`)")
        try:
            d = json.loads(path.read_text())
            if d.get("format") not in READABLE_FORMATS:
                raise ValueError(f"format {d.get('format')!r}, expected one of "
                                 f"{', '.join(map(repr, READABLE_FORMATS))}")
            description = cls(
                dataset=d["dataset"],
                segmentation={k: TaskChoice.from_dict(v) for k, v in d["segmentation"].items()},
                classification=TaskChoice.from_dict(d["classification"]) if d.get("classification") else None,
                candidates=d.get("candidates", {}),
                classification_by_views={k: TaskChoice.from_dict(v)
                                         for k, v in d.get("classification_by_views", {}).items()},
                findings_by_views={k: dict(v) for k, v in d.get("findings_by_views", {}).items()},
                readers={k: TaskChoice.from_dict(v) for k, v in d.get("readers", {}).items()},
                reader_segmentations={k: {view: TaskChoice.from_dict(c) for view, c in v.items()}
                                      for k, v in d.get("reader_segmentations", {}).items()},
            )
            named = {key: description.finding_readers(key) for key in description.findings_by_views}
            missing = sorted({r for table in named.values() for r in table.values()} - set(description.readers))
            if missing:
                raise ValueError(f"findings_by_views names {missing[0]!r}, which readers lacks")
            return description
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"{path}: invalid model description ({e})") from None
