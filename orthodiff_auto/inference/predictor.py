"""The Python API for inference: arrays or files in, segmentations and findings out.

``Predictor(model_dir)`` (also ``from orthodiff_auto import Predictor``) loads the chosen fold checkpoints
once. ``predict`` takes one scan or one case's scans as paths, SimpleITK images or numpy arrays with their
geometry and returns a ``Prediction``: SimpleITK images in each input's geometry and the findings
(documentation/python_api.md). ``predict_case`` is the same on (array, geometry) pairs with numpy results;
``orthodiff predict_folder`` is a thin wrapper around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.inference import FindingsEnsemble, PreparedScan
from orthodiff_auto.data.image_io import ImageGeometry, read_image
from orthodiff_auto.data.label_values import label_values, to_label_values
from orthodiff_auto.data.views import infer_view
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.model_dir import ModelDescription, best_checkpoint_path
from orthodiff_auto.inference.results import Finding, Prediction
from orthodiff_auto.inference.scan_input import ScanInput, image_in_geometry, scan_from_input
from orthodiff_auto.networks.builder import build_segmentation_network
from orthodiff_auto.plans.schema import DEFAULT_CONFIGURATION, Plans, ViewPlan
from orthodiff_auto.segmentation.cascade import cascade_input, stage_one_on_grid
from orthodiff_auto.segmentation.prediction import class_indices, predict_logits, probabilities_in_original_geometry
from orthodiff_auto.segmentation.probabilities import probabilities_on_view_grid
from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.device import SpeedOptions, apply_speed_options, resolve_device

CHECKPOINTS = ("final", "best")  # which checkpoint of each segmentation fold predicts (--checkpoint)


@dataclass
class SegmentationEnsemble:
    """The fold models of one view and segmentation configuration; probabilities are averaged over folds
    (nnU-Net's ensembling). A cascade's second stage holds its first stage (``previous``), whose prediction it
    reads as extra input channels."""

    view: str
    plans: Plans
    models: list[torch.nn.Module]
    patch_size: tuple[int, ...]
    configuration: str = DEFAULT_CONFIGURATION
    previous: "SegmentationEnsemble | None" = None

    @classmethod
    def load(cls, view: str, checkpoints: Sequence[Path], device: torch.device,
             speed: SpeedOptions = SpeedOptions(), previous: "SegmentationEnsemble | None" = None,
             ) -> "SegmentationEnsemble":
        if not checkpoints:
            raise UserInputError(f"no segmentation checkpoints for view {view!r}")
        models, plans, patch, configuration = [], None, None, None
        for path in checkpoints:
            ckpt = load_checkpoint(path, map_location="cpu")
            extras = ckpt.get("extras", {})
            if ckpt.get("task") != "seg" or extras.get("view") != view:
                raise UserInputError(f"{path}: not a segmentation checkpoint of view {view!r}")
            plans = Plans.from_dict(extras["plans"])
            name = extras.get("configuration", DEFAULT_CONFIGURATION)  # checkpoints before configurations: 3d_fullres
            if configuration not in (None, name):
                raise UserInputError(f"{path}: configuration {name}, the view's other folds are {configuration}")
            configuration = name
            view_plan = plans.view(view)
            if view_plan.configuration(name).previous_stage is not None and previous is None:
                raise UserInputError(f"{path}: a cascade's second stage ({name}) without its first stage's folds")
            segmentation = view_plan.for_configuration(name).segmentation
            channels = view_plan.input_channels(name, plans.num_classes)
            net = build_segmentation_network(segmentation.architecture, channels, plans.num_classes,
                                             deep_supervision=False, initialize=False)
            net.load_state_dict(ckpt["model"])
            models.append(apply_speed_options(net.to(device).eval(), device, speed))
            patch = tuple(extras.get("patch_size") or segmentation.patch_size)
        return cls(view, plans, models, patch, configuration, previous)

    @property
    def view_plan(self) -> ViewPlan:
        """The plan this configuration's cases are preprocessed and predicted by."""
        return self.plans.view(self.view).for_configuration(self.configuration)

    @property
    def own_grid(self) -> bool:
        """Whether the configuration predicts on the view's preprocessed grid (else: 3d_lowres's coarser one)."""
        return tuple(self.view_plan.target_spacing) == tuple(self.plans.view(self.view).target_spacing)

    def scores(self, data: np.ndarray, device: torch.device, overlap: float, mirror_axes, batch_size: int | None = None,
               mixed_precision: bool = True) -> torch.Tensor:
        """Class scores on the preprocessed grid (C, z, y, x) whose softmax is the mean softmax over the folds, left
        on ``device``: one fold's logits, or the log of the folds' mean softmax."""
        image = torch.as_tensor(np.ascontiguousarray(data, dtype=np.float32))
        if device.type == "cuda":  # page-locked, so the copy to the device runs asynchronously
            image = image.pin_memory()
        folds = [predict_logits(model, image, self.patch_size, self.plans.num_classes, device, overlap=overlap,
                                mirror_axes=mirror_axes, batch_size=batch_size, mixed_precision=mixed_precision)
                 for model in self.models]
        if len(folds) == 1:
            return folds[0]
        total = None
        for logits in folds:
            log_probs = torch.log_softmax(logits, 0)
            total = log_probs if total is None else torch.logaddexp(total, log_probs)
        return total - math.log(len(folds))

    def probabilities(self, data: np.ndarray, device: torch.device, overlap: float, mirror_axes,
                      batch_size: int | None = None, mixed_precision: bool = True) -> np.ndarray:
        """Mean softmax over the folds on the preprocessed grid (C, z, y, x), float32 numpy on the host."""
        scores = self.scores(data, device, overlap, mirror_axes, batch_size, mixed_precision)
        return torch.softmax(scores, 0).cpu().numpy()

    def own_scan(self, scan: PreparedScan, original: tuple[np.ndarray, ImageGeometry] | None) -> PreparedScan:
        """The scan preprocessed for this configuration: ``scan`` (the view's) itself, or the original preprocessed
        again at the configuration's spacing."""
        if self.own_grid:
            return scan
        if original is None:
            raise ValueError(f"configuration {self.configuration} predicts at another spacing than the view's: "
                             "pass the original (image, geometry)")
        return PreparedScan.from_scan(*original, self.view_plan)

    def case_scores(self, scan: PreparedScan, device: torch.device, overlap: float, tta: bool, batch_size: int,
                    original: tuple[np.ndarray, ImageGeometry] | None) -> tuple[torch.Tensor, PreparedScan]:
        """(scores on the configuration's grid, the scan on that grid); a cascade's first stage runs first."""
        own = self.own_scan(scan, original)
        data = own.data
        if self.previous is not None:
            first = self.previous.case_scores(scan, device, overlap, tta, batch_size, original)[0]
            data = cascade_input(data, stage_one_on_grid(first, data.shape[1:], self.previous.view_plan,
                                                         self.view_plan), self.plans.num_classes)
        return self.scores(data, device, overlap, (0, 1, 2) if tta else None, batch_size), own

    def segment_prepared(self, scan: PreparedScan, device: torch.device, overlap: float = 0.5, tta: bool = False,
                         batch_size: int | None = None, probabilities: bool = False,
                         original: tuple[np.ndarray, ImageGeometry] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(label map in the input's exact geometry, label indices on the view's preprocessed grid, class
        probabilities (C, *input array shape) in the input's exact geometry, channel i = the i-th smallest label
        value: the softmax of the resampled scores, whose argmax is the label map; None unless ``probabilities``)
        of a scan that this view's plan preprocessed. ``original``: the scan's (image, geometry), which a
        configuration at another spacing (3d_lowres, alone or as a cascade's first stage) preprocesses again.

        The label map comes from the scores resampled to the input's grid, not the probabilities: one fold's
        logits, or the log of the folds' mean softmax, as nnU-Net's export resamples logits (linear interpolation
        of logits and of probabilities can pick different classes where classes meet; documentation/benchmarks.md,
        benchmarks/compare_preprocessing_with_nnunet.py)."""
        scores, own = self.case_scores(scan, device, overlap, tta, batch_size, original)
        original_labels, on_grid = class_indices(scores, own.properties, self.view_plan)
        if not self.own_grid:  # what the classifiers read: labels on the view's grid
            on_grid = stage_one_on_grid(scores, scan.data.shape[1:], self.view_plan, self.plans.view(self.view))
        # only when asked for: C times the label map's memory and time
        probs = probabilities_in_original_geometry(scores, own.properties, self.view_plan) if probabilities else None
        return to_label_values(original_labels, label_values(self.plans.labels)), on_grid, probs

    def segment(self, image: np.ndarray, geometry: ImageGeometry, device: torch.device, overlap: float = 0.5,
                tta: bool = False, batch_size: int | None = None) -> np.ndarray:
        """Label map in the input's exact geometry (same shape, to be written with the same header)."""
        scan = PreparedScan.from_scan(image, geometry, self.plans.view(self.view))
        return self.segment_prepared(scan, device, overlap, tta, batch_size, original=(image, geometry))[0]


@dataclass
class ConfigurationEnsemble:
    """nnU-Net's ensemble of configurations: the ``members`` (each a ``SegmentationEnsemble`` of one view's
    configuration, its folds averaged) predict a scan and their class probabilities are averaged before the
    argmax, in the input's geometry (the label map and the probabilities) and on the view's preprocessed grid
    (the labels the classifiers read)."""

    view: str
    members: list[SegmentationEnsemble]

    @property
    def plans(self) -> Plans:
        return self.members[0].plans

    def segment_prepared(self, scan: PreparedScan, device: torch.device, overlap: float = 0.5, tta: bool = False,
                         batch_size: int | None = None, probabilities: bool = False,
                         original: tuple[np.ndarray, ImageGeometry] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """As ``SegmentationEnsemble.segment_prepared``, from the mean of the members' probabilities."""
        in_input, on_grid = None, None
        view_plan = self.plans.view(self.view)
        for member in self.members:
            scores, own = member.case_scores(scan, device, overlap, tta, batch_size, original)
            p = probabilities_in_original_geometry(scores, own.properties, member.view_plan)
            g = probabilities_on_view_grid(scores, scan.data.shape[1:], member.view_plan, view_plan)
            in_input = p if in_input is None else in_input + p
            on_grid = g if on_grid is None else on_grid + g
        in_input /= len(self.members)
        wide = in_input.shape[0] > 256
        labels = np.argmax(in_input, axis=0).astype(np.uint16 if wide else np.uint8)
        grid_labels = np.argmax(on_grid, axis=0).astype(np.uint16 if wide else np.uint8)
        return (to_label_values(labels, label_values(self.plans.labels)), grid_labels,
                in_input if probabilities else None)

    def segment(self, image: np.ndarray, geometry: ImageGeometry, device: torch.device, overlap: float = 0.5,
                tta: bool = False, batch_size: int | None = None) -> np.ndarray:
        """Label map in the input's exact geometry (same shape, to be written with the same header)."""
        scan = PreparedScan.from_scan(image, geometry, self.plans.view(self.view))
        return self.segment_prepared(scan, device, overlap, tta, batch_size, original=(image, geometry))[0]


@dataclass
class CasePrediction:
    case_id: str
    segmentations: dict[str, np.ndarray] = field(default_factory=dict)  # view -> label map (original geometry)
    findings: dict[str, dict[str, float]] = field(default_factory=dict)  # finding -> probability, call, spread
    findings_note: str | None = None  # why ``findings`` is empty when a classifier exists
    classifier: str | None = None  # the classification configuration(s) that produced ``findings``
    readers: dict[str, str] = field(default_factory=dict)  # finding -> the classifier that read it
    thresholds: dict[str, float] = field(default_factory=dict)  # finding -> the threshold behind its call
    # view -> class probabilities (C, *input array shape) in the input's geometry, when asked for
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)


class Predictor:
    """Loads a model folder once; predicts cases from arrays or files."""

    def __init__(self, model_dir: Path | str, folds: Sequence[int] | None = None, device: str | None = None,
                 tta: bool = False, overlap: float = 0.5, checkpoint: str = "final",
                 speed: SpeedOptions = SpeedOptions()):
        """``overlap``: of neighbouring sliding windows, 1 - the step size in patch lengths (nnU-Net's
        ``tile_step_size`` 0.5 is overlap 0.5). ``checkpoint``: "final" or "best" (for segmentation: the fold's
        checkpoint at its best moving average of the per-epoch pseudo Dice; classifiers always use their final
        checkpoint, the one their thresholds and fusion weights were fitted to)."""
        self.model_dir = Path(model_dir)
        if checkpoint not in CHECKPOINTS:
            raise UserInputError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
        if not 0.0 <= overlap < 1.0:
            raise UserInputError(f"step size {1.0 - overlap:g}: must be in (0, 1] (a fraction of the patch)")
        self.description = ModelDescription.load(self.model_dir)
        self.device = resolve_device(device)
        self.tta = tta
        self.overlap = overlap
        self.checkpoint = checkpoint
        self.folds = None if folds is None else [int(f) for f in folds]
        self.segmenters: dict[str, SegmentationEnsemble | ConfigurationEnsemble] = {}
        for view, choice in self.description.segmentation.items():
            self.segmenters[view] = self._segmenter(view, choice, speed)
        # classifiers fitted on another segmentation of a view than the chosen one (an anatomy reader): that one
        self.reader_segmenters: dict[str, dict[str, SegmentationEnsemble | ConfigurationEnsemble]] = {}
        loaded = {}
        for label, by_view in self.description.reader_segmentations.items():
            for view, choice in by_view.items():
                if (view, choice.variant) not in loaded:
                    loaded[(view, choice.variant)] = self._segmenter(view, choice, speed)
                self.reader_segmenters.setdefault(label, {})[view] = loaded[(view, choice.variant)]
        # one findings ensemble per classification configuration, which one serves each combination of views, and
        # (model folders of format 3) which one reads each finding for that combination
        self.classifiers: dict[str, FindingsEnsemble] = {}
        self.classifier_by_views: dict[frozenset, str] = {}
        self.finding_readers_by_views: dict[frozenset, dict[str, str]] = {}
        for key, choice in self.description.classifiers_by_views().items():
            self._load_classifier(choice)
            self.classifier_by_views[frozenset(key.split("+"))] = choice.label
            readers = self.description.finding_readers(key)
            for label in sorted(set(readers.values())):
                self._load_classifier(self.description.readers[label])
            if readers:
                self.finding_readers_by_views[frozenset(key.split("+"))] = readers
        self.classifier = self.classifiers.get(self.description.classification.label) if (
            self.description.classification is not None) else None

    def _segmenter(self, view: str, choice, speed: SpeedOptions) -> SegmentationEnsemble | ConfigurationEnsemble:
        """The segmentation a choice predicts with: its folds (a cascade after its first stage's folds), or an
        ensemble's members averaged."""
        if choice.members:
            return ConfigurationEnsemble(view, [self._segmenter(view, m, speed) for m in choice.members])
        first = choice.previous_stage  # a cascade: its first stage's folds
        previous = None if first is None else SegmentationEnsemble.load(
            view, self._checkpoints(first.checkpoints), self.device, speed)
        return SegmentationEnsemble.load(view, self._checkpoints(choice.checkpoints), self.device, speed, previous)

    def _load_classifier(self, choice) -> None:
        if choice.label not in self.classifiers:
            self.classifiers[choice.label] = FindingsEnsemble.load(self._select(choice.checkpoints), self.device)

    def _checkpoints(self, checkpoints: Sequence[str]) -> list[Path]:
        """The chosen folds' segmentation checkpoints, final or best (``checkpoint``)."""
        paths = self._select(checkpoints)
        return [self._best(p) for p in paths] if self.checkpoint == "best" else paths

    def _select(self, checkpoints: Sequence[str]) -> list[Path]:
        paths = [self.model_dir / c for c in checkpoints]
        if self.folds is not None:
            chosen = [p for p in paths if any(p.stem == f"fold_{f}" for f in self.folds)]
            if not chosen:
                raise UserInputError(f"none of folds {self.folds} exists in {self.model_dir}")
            paths = chosen
        return paths

    def _best(self, final: Path) -> Path:
        best = best_checkpoint_path(final)
        if not best.is_file():
            raise UserInputError(f"{best}: no best checkpoint for {final.relative_to(self.model_dir)} (--checkpoint "
                                 "best needs the model folder to hold the fold's checkpoint_best.pt; folders made by "
                                 "find_best_configuration before it copied them have only the final one)")
        return best

    @property
    def views(self) -> list[str]:
        return list(self.segmenters)

    @property
    def findings(self) -> list[str]:
        first = next(iter(self.classifiers.values()), None)
        return [] if first is None else list(first.findings)

    def thresholds_table(self) -> dict[str, dict[str, float]]:
        """{classifier: {finding: threshold}} of every classification configuration the model folder holds."""
        return {name: c.thresholds_table() for name, c in self.classifiers.items()}

    def classifier_for(self, views) -> str | None:
        """The configuration model selection chose for a case with these views (the best one reading the
        largest subset of them that has a classifier); None when none reads any of them."""
        key = self._views_key(views)
        return None if key is None else self.classifier_by_views[key]

    def _views_key(self, views) -> frozenset | None:
        """The largest combination of views with a classifier that the case's views cover."""
        have = frozenset(views)
        for size in range(len(have), 0, -1):
            for key in sorted(self.classifier_by_views, key=sorted):
                if len(key) == size and key <= have:
                    return key
        return None

    def readers_for(self, views) -> dict[str, str]:
        """{finding: classifier} that reads each finding of a case with these views: the per-finding choice of
        model selection for the combination ``classifier_for`` picks, the combination's classifier for every
        finding of a model folder without one; empty when no classifier reads any of the views."""
        key = self._views_key(views)
        if key is None:
            return {}
        name = self.classifier_by_views[key]
        chosen = self.finding_readers_by_views.get(key, {})
        return {f: chosen.get(f, name) for f in self.classifiers[name].findings}

    def thresholds_for(self, views) -> dict[str, float]:
        """{finding: threshold} behind the calls of a case with these views (each from its reader's folds)."""
        return {f: self.classifiers[name].thresholds[f] for f, name in self.readers_for(views).items()}

    def clinical_declaration(self) -> list:
        """The clinical variables (``data.clinical.ClinicalVariable``) any chosen classifier reads."""
        out = {}
        for classifier in self.classifiers.values():
            out.update({v.name: v for v in classifier.clinical_declaration if v.name not in out})
        return list(out.values())

    def prepare_case(self, scans: Mapping[str, tuple[np.ndarray, ImageGeometry]]) -> dict[str, PreparedScan]:
        """Each view with a model preprocessed by its plan (numpy only: ``predict_folder`` runs this for the next
        case in a background thread while the network runs)."""
        prepared: dict[str, PreparedScan] = {}
        for view, (image, geometry) in scans.items():
            segmenter = self.segmenters.get(view)
            plans = segmenter.plans if segmenter is not None else self._classification_plans()
            if plans is not None and view in plans.views:
                prepared[view] = PreparedScan.from_scan(image, geometry, plans.view(view))
        return prepared

    def predict_case(self, case_id: str, scans: Mapping[str, tuple[np.ndarray, ImageGeometry]],
                     clinical: Mapping[str, object] | None = None, probabilities: bool = False,
                     prepared: Mapping[str, PreparedScan] | None = None) -> CasePrediction:
        """``scans``: view -> (array in SimpleITK order, geometry). Each view is preprocessed once (``prepared``:
        what ``prepare_case`` returned for them, when done already) and segmented (views without a model are
        ignored); the findings come from the classifier chosen for the case's views,
        reading the regions around the segmented anatomy (the cascade); ``clinical``: the case's clinical cells
        (name -> value), for a classifier with a tabular branch (missing when absent). ``probabilities``: also
        keep each segmented view's class probabilities in its input geometry (``CasePrediction.probabilities``)."""
        result = CasePrediction(case_id)
        prepared = dict(self.prepare_case(scans) if prepared is None else prepared)
        for view, scan in prepared.items():
            segmenter = self.segmenters.get(view)
            if segmenter is not None:
                result.segmentations[view], labels, original = segmenter.segment_prepared(
                    scan, self.device, self.overlap, self.tta, probabilities=probabilities, original=scans.get(view))
                if probabilities:
                    result.probabilities[view] = original
                prepared[view] = PreparedScan(scan.data, scan.spacing, scan.properties, labels)
        if self.classifiers:
            name = self.classifier_for(prepared)
            if name is None:
                known = sorted({v for key in self.classifier_by_views for v in key})
                result.findings_note = (f"no findings: the classifiers read {' or '.join(known)}, the case has "
                                        f"{', '.join(sorted(scans))}")
            else:
                result.readers = self.readers_for(prepared)
                read = {}  # each classifier runs once, however many findings it reads
                fitted_on: dict[str, PreparedScan] = {}  # the segmentations some reader was fitted on, once each
                for finding, reader in result.readers.items():
                    if reader not in read:
                        read[reader] = self._read_findings(
                            self.classifiers[reader], self._segmented_for(reader, prepared, scans, fitted_on),
                            scans, clinical)
                    result.findings[finding] = read[reader][finding]
                    result.thresholds[finding] = self.classifiers[reader].thresholds[finding]
                others = [f"{f} from {r}" for f, r in result.readers.items() if r != name]
                result.classifier = name + (f" ({', '.join(others)})" if others else "")
        return result

    def _segmented_for(self, reader: str, prepared: Mapping[str, PreparedScan],
                       scans: Mapping[str, tuple[np.ndarray, ImageGeometry]],
                       done: dict[str, PreparedScan]) -> Mapping[str, PreparedScan]:
        """The case's scans with the labels the classifier ``reader`` was fitted on: ``prepared`` (the chosen
        segmentations), a view segmented by another run where model selection recorded one for the reader
        (``reader_segmentations``; ``done`` keeps those per view and run for the case's other readers)."""
        others = getattr(self, "reader_segmenters", {}).get(reader)  # absent: a Predictor made without __init__
        if not others:
            return prepared
        out = dict(prepared)
        for view, segmenter in others.items():
            if view not in out:
                continue
            key = f"{view}/{id(segmenter)}"
            if key not in done:
                scan = out[view]
                labels = segmenter.segment_prepared(scan, self.device, self.overlap, self.tta,
                                                    original=scans.get(view))[1]
                done[key] = PreparedScan(scan.data, scan.spacing, scan.properties, labels)
            out[view] = done[key]
        return out

    def _read_findings(self, classifier: FindingsEnsemble, prepared: Mapping[str, PreparedScan],
                       scans: Mapping[str, tuple[np.ndarray, ImageGeometry]],
                       clinical: Mapping[str, object] | None) -> dict[str, dict[str, float]]:
        """One classifier's findings of a case, from the views it reads (preprocessed again where its plan
        differs from the segmenter's)."""
        usable = {v: (s if self._same_grid(classifier, v) else
                      PreparedScan.from_scan(*scans[v], classifier.plans.view(v)))
                  for v, s in prepared.items() if v in classifier.views}
        return classifier.predict_prepared(usable, clinical)

    def _classification_plans(self) -> Plans | None:
        first = next(iter(self.classifiers.values()), None)
        return None if first is None else first.plans

    def _same_grid(self, classifier: FindingsEnsemble, view: str) -> bool:
        """Whether the classifier preprocesses ``view`` as its segmenter does (then the prediction is reused)."""
        segmenter = self.segmenters.get(view)
        if segmenter is None:
            return True
        return classifier.plans.view(view).preprocessing_key == segmenter.plans.view(view).preprocessing_key

    def predict_files(self, case_id: str, files: Mapping[str, Path]) -> CasePrediction:
        scans = {view: read_image(path) for view, path in files.items()}
        return self.predict_case(case_id, scans)

    def predict(self, scans: ScanInput | Mapping[str, ScanInput], view: str | None = None, *,
                spacing: Sequence[float] | None = None, origin: Sequence[float] | None = None,
                direction: Sequence[float] | None = None, probabilities: bool = False,
                clinical: Mapping[str, object] | None = None, case_id: str = "case") -> Prediction:
        """Segment and diagnose one case.

        ``scans``: one scan (a path, a ``SimpleITK.Image``, or a numpy array in SimpleITK's (z, y, x) order
        with ``spacing``, ``origin`` and ``direction`` in SimpleITK's (x, y, z) order), its view given by
        ``view`` or read from its header; or a mapping view -> path or ``SimpleITK.Image`` for a case with
        several views. ``clinical``: the case's clinical values (name -> value) for a classifier that reads
        them. Returns SimpleITK images in each input's geometry (probabilities only when asked for) and the
        findings with the thresholds behind their calls."""
        if isinstance(scans, Mapping):
            if view is not None or spacing is not None or origin is not None or direction is not None:
                raise UserInputError("with a mapping view -> scan, give each view's geometry in its scan (a path or "
                                     "a SimpleITK.Image); view, spacing, origin and direction are for one scan")
            arrays = [v for v, s in scans.items() if isinstance(s, np.ndarray)]
            if arrays:
                raise UserInputError(f"view {arrays[0]!r}: a numpy array in a mapping has no geometry; pass a "
                                     "SimpleITK.Image (SimpleITK.GetImageFromArray, then SetSpacing, SetOrigin, "
                                     "SetDirection) or a path")
            loaded = {str(v): scan_from_input(s, name=f"view {v!r}") for v, s in scans.items()}
        else:
            image, geometry = scan_from_input(scans, spacing, origin, direction)
            loaded = {view or infer_view(geometry): (image, geometry)}
        unknown = sorted(set(loaded) - set(self.segmenters) - {v for key in self.classifier_by_views for v in key})
        if unknown:
            raise UserInputError(f"view {unknown[0]!r}: this model reads {', '.join(self.views)}")
        case = self.predict_case(case_id, loaded, clinical=clinical, probabilities=probabilities)
        thresholds = case.thresholds
        labels = next(iter(self.segmenters.values())).plans.labels if self.segmenters else {}
        names = {int(value): name for name, value in labels.items()}
        return Prediction(
            case_id=case_id,
            segmentations={v: image_in_geometry(a, loaded[v][1]) for v, a in case.segmentations.items()},
            probabilities={v: image_in_geometry(a, loaded[v][1]) for v, a in case.probabilities.items()},
            probability_labels=tuple(names[value] for value in label_values(labels)) if probabilities else (),
            findings={f: Finding(f, d["probability"], float(thresholds[f]), bool(d["call"]), d["spread"])
                      for f, d in case.findings.items()},
            classifier=case.classifier, findings_note=case.findings_note,
        )
