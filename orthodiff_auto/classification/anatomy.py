"""Anatomy-guided features: the findings read from the segmentation of each view (``classifier_features=anatomy``).

A finding changes a structure where a radiologist looks: a torn ligament or meniscus is interrupted and fluid
fills the gap, an effusion is fluid around the joint, a dislocation moves a bone. This classifier reads, for
every labelled structure of the dataset (whatever its labels are: the features are indexed by label value,
never by name), what the segmentation of the case says about it and about the image around it:

- size and integrity: log volume (mm^3), the number of connected components, the fraction of the volume
  outside the largest component, the bounding box's extent per axis (mm);
- signal inside the structure (mean, 95th percentile) and in two shells around it (1 voxel, and 2-3 voxels:
  mean, 95th and 99th percentiles, maximum, fraction above 2 standard deviations of the normalised image);
- position: the distance of its centroid from the centroid of all structures, per axis (absolute values, so a
  left and a right joint give the same features);

plus the image's upper quantiles over the labelled anatomy's bounding box; and the where-in-the-structure
features of ``classification.anatomy_features`` (regions in millimetres, halves along each structure's principal
axes, position and pose, the joint's surroundings per octant; feature set "sectors" adds each region per
tercile sector of the structure's principal frame). An L2-regularised logistic
regression per finding (scikit-learn; the regularisation strength by inner cross-validation on the fold's
training cases) maps the standardised features of the views to a probability. Training reads each case's
segmentation predicted by the fold's own segmentation models (the cascade: prediction reads the segmentation
``predict_folder`` makes), so that training and prediction see the same kind of segmentation.

One logistic regression is fitted for every combination of the views (a case arriving with only some views
uses the model fitted on exactly those), so no view is ever imputed. The fitted numbers (standardisation,
coefficients, intercepts) are stored as tensors in ``checkpoint_final.pt`` (``weights_only`` loadable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from orthodiff_auto.classification.anatomy_features import left_right_axis, where_feature_names, where_features
from orthodiff_auto.classification.reader import PreparedScan
from orthodiff_auto.data.clinical import ClinicalVariable
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.classification_metrics import auroc_of_each

ANATOMY_KIND = "anatomy"
ANATOMY_FORMAT = "orthodiff_auto.anatomy_features/2"  # /2: records its feature set
READABLE_FORMATS = ("orthodiff_auto.anatomy_features/1", ANATOMY_FORMAT)  # /1: the basic features
BRIGHT = 2.0  # "bright" voxels: more than 2 standard deviations above the normalised image's mean
PER_STRUCTURE = ("log_volume", "components", "outside_largest", "extent_0", "extent_1", "extent_2",
                 "inside_mean", "inside_p95",
                 "shell1_mean", "shell1_p95", "shell1_p99", "shell1_max", "shell1_bright",
                 "shell3_mean", "shell3_p95", "shell3_p99", "shell3_max", "shell3_bright",
                 "offset_0", "offset_1", "offset_2")
GLOBAL = ("box_p50", "box_p90", "box_p99", "box_p999", "box_bright", "box_very_bright")


def basic_feature_names(label_values: Sequence[int]) -> list[str]:
    """``basic_features``' columns: per structure (label value) then the global ones."""
    return [f"label{v}_{name}" for v in label_values for name in PER_STRUCTURE] + list(GLOBAL)


def feature_names(label_values: Sequence[int], feature_set: str = "basic") -> list[str]:
    """The features of one view, in order: the basic ones, then (feature sets "where" and "sectors") the
    where-in-the-structure ones, then (feature set "sectors") the sector ones."""
    where = where_feature_names(label_values, feature_set == "sectors") if feature_set != "basic" else []
    return basic_feature_names(label_values) + where


def feature_families(label_values: Sequence[int], feature_set: str, n_views: int) -> list[np.ndarray] | None:
    """What ``fit_logistic`` chooses among per finding for the features of ``n_views`` views concatenated: for
    the "sectors" set, the columns without the sectors or every column (the sectors find the collateral tears,
    benchmarks.md; in development runs they also crowded the few position columns of a displaced bone out of
    the screen); otherwise None (every column)."""
    if feature_set != "sectors":
        return None
    names = feature_names(label_values, feature_set) * n_views
    coarse = np.array([i for i, n in enumerate(names) if "_sector" not in n])
    return [coarse, np.arange(len(names))]


def _quantiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    return [float(v) for v in np.percentile(values, qs)] if values.size else [0.0] * len(qs)


def anatomy_features(image: np.ndarray, labels: np.ndarray, spacing: Sequence[float],
                     label_values: Sequence[int], mirror_axis: int | None = None,
                     feature_set: str = "basic") -> np.ndarray:
    """Features of one view (``feature_names`` order): ``image`` (z, y, x) normalised, ``labels`` (z, y, x)
    label indices on the same grid (as the segmentation predicts them), ``spacing`` in mm, ``mirror_axis`` the
    patient's left-right array axis (``anatomy_features.left_right_axis``), ``feature_set`` "basic", "where" or
    "sectors"."""
    basic = basic_features(image, labels, spacing, label_values)
    if feature_set == "basic":
        return basic
    return np.concatenate([basic, where_features(image, labels, spacing, label_values, mirror_axis,
                                                 sectors=feature_set == "sectors")])


def basic_features(image: np.ndarray, labels: np.ndarray, spacing: Sequence[float],
                   label_values: Sequence[int]) -> np.ndarray:
    """The whole-structure features (``basic_feature_names`` order) of one view."""
    from scipy import ndimage as ndi  # scipy only where features are computed

    image = np.asarray(image, dtype=np.float32)
    labels = np.asarray(labels)
    spacing = np.asarray(spacing, dtype=float)
    ball = ndi.generate_binary_structure(3, 1)
    rows, centroids = [], []
    for value in label_values:
        mask = labels == value
        if not mask.any():
            rows.append(None)
            centroids.append(None)
            continue
        # work inside the structure's box grown by the outer shell's width (the rest of the image is far away)
        idx = np.argwhere(mask)
        lo, hi = np.maximum(idx.min(0) - 4, 0), np.minimum(idx.max(0) + 5, mask.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        m, x = mask[box], image[box]
        components, n = ndi.label(m, ball)
        sizes = np.bincount(components.ravel())[1:]
        volume = float(m.sum())
        grown1 = ndi.binary_dilation(m, ball)
        grown3 = ndi.binary_dilation(grown1, ball, iterations=2)
        shell1, shell3 = x[grown1 & ~m], x[grown3 & ~grown1]
        inside = x[m]
        extent = (idx.max(0) - idx.min(0) + 1) * spacing
        rows.append([
            math.log1p(volume * float(np.prod(spacing))), float(n), 1.0 - sizes.max() / volume, *extent,
            float(inside.mean()), *_quantiles(inside, [95]),
            float(shell1.mean()) if shell1.size else 0.0, *_quantiles(shell1, [95, 99, 100]),
            float((shell1 > BRIGHT).mean()) if shell1.size else 0.0,
            float(shell3.mean()) if shell3.size else 0.0, *_quantiles(shell3, [95, 99, 100]),
            float((shell3 > BRIGHT).mean()) if shell3.size else 0.0,
        ])
        centroids.append(idx.mean(0) * spacing)
    present = [c for c in centroids if c is not None]
    centre = np.mean(present, axis=0) if present else np.zeros(3)
    out: list[float] = []
    for row, centroid in zip(rows, centroids):
        if row is None:  # the structure is not in this scan's segmentation: a row of zeros (volume 0)
            out += [0.0] * len(PER_STRUCTURE)
        else:
            out += row + list(np.abs(centroid - centre))
    anatomy = labels > 0
    if anatomy.any():
        idx = np.argwhere(anatomy)
        box = image[tuple(slice(a, b + 1) for a, b in zip(idx.min(0), idx.max(0)))]
    else:
        box = image
    out += _quantiles(box, [50, 90, 99, 99.9]) + [float((box > BRIGHT).mean()), float((box > 2 * BRIGHT).mean())]
    return np.asarray(out, dtype=np.float64)


# ---------------------------------------------------------------- the fitted model

@dataclass
class LogisticModel:
    """Standardisation and one logistic regression per finding over the concatenated features of ``views``."""

    views: tuple[str, ...]
    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    coef: np.ndarray  # (F, D)
    intercept: np.ndarray  # (F,)
    strength: np.ndarray  # (F,) the chosen inverse regularisation strength C (NaN: constant model)

    def decision(self, features: np.ndarray) -> np.ndarray:
        """(N, F) logits of (N, D) features."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return z @ self.coef.T + self.intercept

    def to_state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{k}": torch.from_numpy(np.asarray(getattr(self, k), dtype=np.float64))
                for k in ("mean", "scale", "coef", "intercept", "strength")}

    @classmethod
    def from_state(cls, views: Sequence[str], state: Mapping[str, torch.Tensor], prefix: str) -> "LogisticModel":
        get = lambda k: state[f"{prefix}.{k}"].double().numpy()  # noqa: E731
        return cls(tuple(views), get("mean"), get("scale"), get("coef"), get("intercept"), get("strength"))


def logistic_regression(strength: float, shape: tuple[int, int], seed: int):
    """scikit-learn's L2 logistic regression with balanced class weights, solved by liblinear (15-20x faster
    than lbfgs on these few-case, many-feature problems; dual when there are fewer cases than features).
    liblinear also regularises the intercept, a small shrinkage of the base rate that the balanced weights
    make harmless. liblinear visits the coordinates in a random order: ``seed`` fixes it (unseeded, it draws
    from numpy's global state and two identical runs fit different weights)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=strength, class_weight="balanced", solver="liblinear", dual=shape[0] < shape[1],
                              max_iter=5000, random_state=seed)


def screened_columns(z: np.ndarray, y: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep`` columns whose univariate AUROC is farthest from chance on these cases, in column order
    (``keep`` 0 or at least the number of columns: all). A finding is one structure's change among hundreds
    of features; screening lets the fit see the few that carry it instead of spreading its weight over the rest."""
    if keep <= 0 or keep >= z.shape[1]:
        return np.arange(z.shape[1])
    distance = np.abs(auroc_of_each(y, z.T) - 0.5)
    return np.sort(np.argsort(-distance, kind="stable")[:keep])


def choose_strength(z: np.ndarray, y: np.ndarray, strengths: Sequence[float], folds: int, seed: int,
                    screen: int = 0) -> tuple[float, float]:
    """(C, its score): the inverse L2 strength C with the best pooled out-of-fold ROC AUC over stratified inner
    folds of these cases (ties: the stronger regularisation). With ``screen`` > 0 each inner fold screens its
    own training cases (``screened_columns``), so the score is not flattered by columns chosen on the held-out
    ones."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    splits = []  # (held-out rows, training and held-out features of the fold's screened columns)
    for train, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(z, y):
        columns = screened_columns(z[train], y[train], screen)
        splits.append((train, held_out, z[np.ix_(train, columns)], z[np.ix_(held_out, columns)]))
    best, best_score = float(min(strengths)), -np.inf
    for c in sorted(float(v) for v in strengths):
        scores = np.empty(len(y))
        for train, held_out, z_train, z_held_out in splits:
            model = logistic_regression(c, z_train.shape, seed).fit(z_train, y[train])
            scores[held_out] = model.decision_function(z_held_out)
        score = roc_auc_score(y, scores)
        if score > best_score + 1e-12:
            best, best_score = c, score
    return best, best_score


def fit_logistic(features: np.ndarray, labels: np.ndarray, views: Sequence[str], strengths: Sequence[float],
                 seed: int = 0, screen: int = 0, families: Sequence[np.ndarray] | None = None) -> LogisticModel:
    """Standardise, then per finding an L2 logistic regression (balanced class weights, scikit-learn) whose C
    is chosen by stratified inner cross-validation on these cases (``choose_strength``); with ``screen`` > 0,
    each finding's regression reads only its ``screen`` features of strongest univariate AUROC on these cases
    (``screened_columns``; the others get weight 0). ``families``: column index arrays to choose from per
    finding (default: every column), the one of best inner cross-validated AUROC, so that a finding carried by
    a few whole-structure features is not crowded out of the screen by hundreds of finer columns. A finding
    with one class only gets a constant model (its training prevalence, clipped to [1e-3, 1 - 1e-3])."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale < 1e-12] = 1.0
    z = (x - mean) / scale
    n_findings, dim = y.shape[1], x.shape[1]
    families = [np.arange(dim)] if families is None else [np.asarray(f, dtype=np.int64) for f in families]
    coef, intercept, chosen = np.zeros((n_findings, dim)), np.zeros(n_findings), np.full(n_findings, np.nan)
    for f in range(n_findings):
        n_pos = int(y[:, f].sum())
        n_neg = len(y) - n_pos
        if n_pos == 0 or n_neg == 0:
            p = min(max(n_pos / max(len(y), 1), 1e-3), 1 - 1e-3)
            intercept[f] = math.log(p / (1 - p))
            continue
        folds = min(5, n_pos, n_neg)
        family, c = families[0], float(np.median(strengths))
        if folds >= 2:
            best_score = -np.inf
            for candidate in families:
                c_candidate, score = choose_strength(z[:, candidate], y[:, f], strengths, folds, seed, screen)
                if score > best_score + 1e-12:
                    family, c, best_score = candidate, c_candidate, score
        columns = family[screened_columns(z[:, family], y[:, f], screen)]
        model = logistic_regression(c, (len(y), len(columns)), seed).fit(z[:, columns], y[:, f])
        coef[f, columns], intercept[f], chosen[f] = model.coef_[0], model.intercept_[0], c
    return LogisticModel(tuple(views), mean, scale, coef, intercept, chosen)


class AnatomyFeatureModel:
    """The fitted logistic regressions of every view combination; ``probabilities(features, views)``."""

    kind = ANATOMY_KIND
    clinical_variables: tuple[ClinicalVariable, ...] = ()

    def __init__(self, views: Sequence[str], label_values: Sequence[int], models: Mapping[tuple[str, ...], LogisticModel],
                 feature_set: str = "basic"):
        self.views = list(views)
        self.feature_set = feature_set
        self.label_values = [int(v) for v in label_values]
        self.models = dict(models)

    def model_for(self, views) -> LogisticModel:
        have = tuple(v for v in self.views if v in views)
        if have not in self.models:
            raise UserInputError(f"the anatomy-feature classifier reads {' or '.join(self.views)}; the case has "
                                 f"{sorted(views) or 'none'}")
        return self.models[have]

    def logits(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """(F,) logits of one case from its views' feature vectors (any subset of ``views``)."""
        model = self.model_for(features)
        return model.decision(np.concatenate([features[v] for v in model.views])[None])[0]

    def prepare(self, view: str, scan: PreparedScan) -> np.ndarray:
        """The features of one view from its preprocessed scan and predicted segmentation."""
        if scan.labels is None:
            raise UserInputError(f"the anatomy-feature classifier needs the {view} scan's segmentation")
        props = scan.properties
        return anatomy_features(scan.data[0], scan.labels, scan.spacing, self.label_values,
                                left_right_axis(props.original_geometry, props.orientation), self.feature_set)

    def probabilities(self, inputs: Mapping[str, np.ndarray], present=None, clinical=None) -> np.ndarray:
        """(F,) probabilities of one case (float32 sigmoid, as the network models)."""
        return torch.sigmoid(torch.from_numpy(self.logits(inputs))[None].float())[0].numpy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        for views, model in self.models.items():
            state.update(model.to_state("+".join(views)))
        return state

    def describe(self) -> dict[str, Any]:
        return {"format": ANATOMY_FORMAT, "views": list(self.views), "label_values": self.label_values,
                "feature_set": self.feature_set, "combinations": ["+".join(v) for v in self.models]}

    @classmethod
    def from_checkpoint(cls, extras: Mapping, state: Mapping[str, torch.Tensor], where: str) -> "AnatomyFeatureModel":
        info = extras.get("anatomy") or {}
        if info.get("format") not in READABLE_FORMATS:
            raise UserInputError(f"{where}: not an anatomy-feature checkpoint of format {' or '.join(READABLE_FORMATS)}")
        models = {tuple(key.split("+")): LogisticModel.from_state(key.split("+"), state, key)
                  for key in info["combinations"]}
        return cls(info["views"], info["label_values"], models, info.get("feature_set", "basic"))


__all__ = ["ANATOMY_FORMAT", "ANATOMY_KIND", "AnatomyFeatureModel", "LogisticModel", "anatomy_features",
           "basic_feature_names", "basic_features",
           "choose_strength", "feature_families", "feature_names", "fit_logistic", "logistic_regression", "screened_columns"]
