"""The anatomy reader (``classifier_features=anatomy``): the features of each view's predicted segmentation
(``anatomy.anatomy_features``) from this fold's segmentation models, a logistic regression per combination of
views (``anatomy.fit_logistic``), the fold's validation and outputs (``fold_outputs.write_fold_outputs``).

Run folders: ``results/cls/<view or fused>/anatomy/fold_k`` (one fused model reads every combination of views,
so no fusion mode). Checkpoint kind: ``anatomy`` (fitted numbers as tensors, no network).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.anatomy import (ANATOMY_KIND, AnatomyFeatureModel, anatomy_features,
                                                   feature_families, feature_names, fit_logistic)
from orthodiff_auto.classification.anatomy_features import left_right_axis
from orthodiff_auto.classification.config import FUSED, ClassificationConfig
from orthodiff_auto.classification.fold import ClassificationFold, classification_fold, view_combinations
from orthodiff_auto.classification.fold_outputs import (CasePredictions, FoldOutputs, probabilities_of,
                                                        score_validation, write_fold_outputs)
from orthodiff_auto.classification.metrics_io import thresholds_table
from orthodiff_auto.classification.reader import FoldResult, Reader, register_reader
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.builder import build_segmentation_network
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.segmentation.prediction import predict_logits
from orthodiff_auto.training.checkpoint import load_checkpoint, refuse_to_overwrite
from orthodiff_auto.training.fold import FoldRequest

SEGMENTATION_VARIANTS = ("pretrained", "scratch")  # which fold segmentation the features read, first found


# ---------------------------------------------------------------- the segmentation the features read

def segmentation_folds(request: FoldRequest, view: str) -> list[Path]:
    """The run folders of this fold's segmentation of ``view`` the features may read, in order of preference:
    the configuration ``anatomy_segmentation`` names, pretrained before from scratch."""
    root = Path(request.results_dir or Path(request.preprocessed_dir).parent / "results")
    configuration = request.config.anatomy_segmentation
    return [root / "seg" / view / replace(request, task="seg", configuration=configuration,
                                          pretrained=Path(variant) if variant == "pretrained" else None,
                                          label_fraction=1.0).variant / f"fold_{request.fold}"
            for variant in SEGMENTATION_VARIANTS]


def fold_segmenter(request: FoldRequest, view: str, plans: Plans, device: torch.device):
    """(network, patch size, segmentation run folder) of this fold's segmentation of ``view`` (pretrained if
    trained, else from scratch); UserInputError naming the folders when there is none."""
    tried = []
    for fold_dir in segmentation_folds(request, view):
        tried.append(str(fold_dir))
        path = fold_dir / "checkpoint_final.pt"
        if path.is_file():
            ckpt = load_checkpoint(path)
            seg_plans = Plans.from_dict(ckpt["extras"]["plans"])
            if seg_plans.view(view).preprocessing_key != plans.view(view).preprocessing_key:
                raise UserInputError(f"{path}: trained under other plans than {request.preprocessed_dir}; retrain it")
            seg_view = seg_plans.view(view).for_configuration(ckpt["extras"].get("configuration", "3d_fullres"))
            spec = seg_view.segmentation.architecture
            net = build_segmentation_network(spec, 1, seg_plans.num_classes, deep_supervision=False, initialize=False)
            net.load_state_dict(ckpt["model"])
            patch = tuple(ckpt["extras"].get("patch_size") or seg_view.segmentation.patch_size)
            return net.to(device).eval(), patch, fold_dir
    raise UserInputError(f"classifier_features=anatomy reads this fold's segmentation of {view}: train it first "
                         f"(`orthodiff train_fold ... seg {view} {request.fold}`); looked in {', '.join(tried)}")


def predicted_labels(net, patch, data: np.ndarray, num_classes: int, device: torch.device) -> np.ndarray:
    logits = predict_logits(net, data, patch, num_classes, device)
    return torch.argmax(logits, 0).cpu().numpy().astype(np.uint8 if num_classes <= 256 else np.uint16)


def fold_features(request: FoldRequest, plans: Plans, fold: ClassificationFold, device: torch.device,
                  log, feature_set: str = "basic") -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """{view: {case: feature vector}} of the fold's cases from this fold's predicted segmentations, and the
    segmentation run each view read."""
    label_values = foreground_indices(plans)
    cases = sorted(set(fold.train) | set(fold.val))
    features: dict[str, dict[str, np.ndarray]] = {}
    sources: dict[str, str] = {}
    for i, view in enumerate(fold.views):
        net, patch, source = fold_segmenter(request, view, plans, device)
        sources[view] = str(source)
        data_source = PreprocessedDataset(request.preprocessed_dir, view)
        start = time.perf_counter()
        have = [c for c in cases if fold.present[c][i]]
        features[view] = {}
        for case in have:
            data, _, props = data_source.load(case)
            data = np.asarray(data[...], dtype=np.float32)
            labels = predicted_labels(net, patch, data, plans.num_classes, device)
            features[view][case] = anatomy_features(data[0], labels, props.spacing_after_resampling, label_values,
                                                    left_right_axis(props.original_geometry, props.orientation),
                                                    feature_set)
        log(f"anatomy features {view}: {len(have)} cases from the segmentation of {source} "
            f"({time.perf_counter() - start:.1f} s)")
    return features, sources


def foreground_indices(plans: Plans) -> list[int]:
    """The label indices of the structures (the channels of the segmentation, background and ignore left out)."""
    values = sorted(plans.labels.values())
    return [i for i, v in enumerate(values) if v != 0 and v != plans.ignore_label]


# ---------------------------------------------------------------- a fold

def case_matrix(features: Mapping[str, Mapping[str, np.ndarray]], views: Sequence[str],
                cases: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(cases having every view in ``views``, their concatenated features)."""
    keep = [c for c in cases if all(c in features[v] for v in views)]
    if not keep:
        return [], np.zeros((0, sum(len(next(iter(features[v].values()))) for v in views if features[v])))
    return keep, np.stack([np.concatenate([features[v][c] for v in views]) for c in keep])


def fit_anatomy_model(request: FoldRequest, plans: Plans, cls_config: ClassificationConfig, fold: ClassificationFold,
                      features: Mapping[str, Mapping[str, np.ndarray]]) -> AnatomyFeatureModel:
    """One logistic regression per combination of the fold's views (a view: that view only) with two or more
    training cases; UserInputError when the combination of every view has too few."""
    combos = view_combinations(fold.views) if request.view == FUSED else [tuple(fold.views)]
    strengths = [float(c) for c in cls_config.anatomy_strengths]
    models = {}
    for combo in combos:
        cases, x = case_matrix(features, combo, fold.train)
        if len(cases) < 2:
            continue
        families = feature_families(foreground_indices(plans), cls_config.anatomy_feature_set, len(combo))
        models[combo] = fit_logistic(x, labels_of(fold, cases), combo, strengths, seed=request.config.seed,
                                     screen=cls_config.anatomy_screen_features, families=families)
    if tuple(fold.views) not in models:
        raise UserInputError(f"fold {request.fold}: too few training cases with {'+'.join(fold.views)} for the "
                             "anatomy-feature classifier")
    return AnatomyFeatureModel(fold.views, foreground_indices(plans), models, cls_config.anatomy_feature_set)


def labels_of(fold: ClassificationFold, cases: Sequence[str]) -> np.ndarray:
    return np.stack([fold.labels[c] for c in cases]) if cases else np.zeros((0, len(fold.findings)))


def anatomy_validation(fold: ClassificationFold, features: Mapping[str, Mapping[str, np.ndarray]],
                       model: AnatomyFeatureModel) -> tuple[CasePredictions, dict]:
    """The validation cases each read with the views it has, and per proper subset of views with a fitted
    model the cases that have those views, reading only them."""
    val = fold.val
    logits = np.stack([model.logits({v: features[v][c] for v in fold.views if c in features[v]}) for c in val]) \
        if val else np.zeros((0, len(fold.findings)))
    subsets = {}
    for combo in (c for c in model.models if c != tuple(fold.views)):
        cases = [c for c in val if all(c in features[v] for v in combo)]
        sub = np.stack([model.models[combo].decision(np.concatenate([features[v][c] for v in combo])[None])[0]
                        for c in cases]) if cases else np.zeros((0, len(fold.findings)))
        subsets[combo] = CasePredictions(cases, probabilities_of(sub), labels_of(fold, cases))
    return CasePredictions(list(val), probabilities_of(logits), labels_of(fold, val)), subsets


def train_anatomy_fold(request: FoldRequest, plans: Plans, cls_config: ClassificationConfig,
                       device: torch.device, ctx=None, log=print) -> FoldResult:
    """Fit the anatomy-feature classifier of one fold (a view, or ``fused``: every view and each combination),
    validate it and write the run folder (checkpoint_final.pt, validation predictions, summary.json)."""
    if request.pretrained is not None:
        raise UserInputError(f"{request.pretrained}: --pretrained does not apply to classifier_features=anatomy, "
                             "which reads the fold's segmentation (pretrained or not)")
    out = request.output_dir()
    refuse_to_overwrite(out, request.resume)
    fold = classification_fold(request, plans)
    start = time.perf_counter()
    features, sources = fold_features(request, plans, fold, device, log, cls_config.anatomy_feature_set)
    model = fit_anatomy_model(request, plans, cls_config, fold, features)
    fit_seconds = time.perf_counter() - start
    predictions, subsets = anatomy_validation(fold, features, model)
    val = fold.val
    extra = {"site": [fold.sites.get(c, "") for c in val]} if fold.sites else {}
    if request.view == FUSED:
        extra["views"] = ["+".join(v for v in fold.views if c in features[v]) for c in val]
    thresholds, metrics = score_validation(predictions.labels, predictions.probabilities, fold.findings, cls_config,
                                           extra.get("site"))
    table = thresholds_table(fold.findings, thresholds)
    extras = {
        "plans": plans.to_dict(), "findings": list(fold.findings), "views": list(fold.views), "kind": ANATOMY_KIND,
        "view": request.view, "fold": str(request.fold), "split": {"train": list(fold.train), "val": list(val)},
        "thresholds": table, "threshold_method": cls_config.threshold_method, "inputs": {},
        "anatomy": {**model.describe(), "segmentation": sources, "feature_names": feature_names(model.label_values, model.feature_set)},
        "classification_config": cls_config.to_dict(),
    }
    checkpoint = {"task": "cls", "model": model.state_dict(), "extras": extras, "config": request.config.to_dict()}
    summary = {
        "task": "cls", "view": request.view, "views": list(fold.views), "fold": str(request.fold),
        "variant": request.variant, "classifier_features": ANATOMY_KIND, "findings": list(fold.findings),
        "num_training_cases": len(fold.train), "num_validation_cases": len(val),
        "skipped_without_view": fold.skipped, "thresholds": table, "metrics": metrics,
        "segmentation_read": sources,
        "regularisation": {"+".join(k): {f: m.strength[i] for i, f in enumerate(fold.findings)}
                           for k, m in model.models.items()},
        "config": request.config.to_dict(), "classification_config": cls_config.to_dict(),
        "timing": {"features_and_fit_seconds": fit_seconds},
    }
    return write_fold_outputs(out, FoldOutputs(checkpoint, predictions, thresholds, summary, extra, subsets),
                              fold.findings, log)


def anatomy_fold_inputs(request: FoldRequest, views: Sequence[str]) -> list[Path]:
    """The fold's segmentations the features read."""
    return [d / "checkpoint_final.pt" for v in views for d in segmentation_folds(request, v)]


def load_anatomy(extras: Mapping[str, Any], state: Mapping[str, torch.Tensor], plans: Plans, device: torch.device,
                 where: str) -> AnatomyFeatureModel:
    return AnatomyFeatureModel.from_checkpoint(extras, state, where)


READER = register_reader(Reader(ANATOMY_KIND, lambda request: ANATOMY_KIND, train_anatomy_fold, load_anatomy,
                                fold_inputs=anatomy_fold_inputs))

__all__ = ["READER", "SEGMENTATION_VARIANTS", "anatomy_fold_inputs", "anatomy_validation", "case_matrix",
           "fit_anatomy_model", "fold_features", "fold_segmenter", "foreground_indices", "load_anatomy",
           "predicted_labels", "segmentation_folds", "train_anatomy_fold"]
