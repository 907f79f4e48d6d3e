"""The diffusion reader (``--set classifier_features=diffusion``): OrthoDiffusion's frozen-feature mode.

Each view's classification input (the region of interest), noised at a timestep with a fixed noise, goes once
through the frozen EMA denoiser of ``orthodiff pretrain``; a block's output is the case's features for that
view (``diffusion.features.BlockFeatures``). The timestep and block are chosen per fold, on the fold's
training cases only (``diffusion.probe.fold_choice``: inner cross-validation of the probe's linear probes), so
the fold's validation labels never choose them. The denoiser never changes, so the features of every training
and validation case are extracted once, before training, and kept in memory; only a light head trains on them:

- ``frozen_pooling="attention"`` (default; the method reads features where a finding is): the block's whole
  feature map, standardised per channel with the fold's training statistics, then per finding an attention
  over the map's positions and a linear map of the attended features to its logit
  (``model.AttentionPoolingHead``);
- ``frozen_pooling="mean"``: the map averaged over space, standardised, one linear map to a logit per finding;
- fused (several views): a gate over the views per finding with missing views masked, as in
  ``fusion.FusedClassifier`` (the gate sees the views' logits detached; each view learns from its own loss),
  or, with mean pooling, ``concat``: one linear map of the concatenated standardised features, a learned
  "missing" vector in place of an absent view's features.

There is no augmentation (it would need a denoiser pass per training step).

The final checkpoint also holds what inference needs to compute the features of a new case: per view the
feature spec (timestep, block, noise seed, schedule, the probe and pretraining files it came from) and the
denoiser weights up to the chosen block (``extras["denoiser_states"]``), so ``predict_folder`` runs it like
any other classifier.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from orthodiff_auto.classification.config import FUSED
from orthodiff_auto.classification.data import SeededCaseBatches, drop_views
from orthodiff_auto.classification.diffusion_head import (FROZEN_FUSION_MODES, DiffusionFeatureSpec,
                                                          FrozenFeatureHead, frozen_classifier_from_extras)
from orthodiff_auto.classification.reader import FoldResult, Reader, register_reader
from orthodiff_auto.classification.region_models import MultiViewModel
from orthodiff_auto.classification.task import ClassificationTaskBase, MultiViewOutputs
from orthodiff_auto.classification.trained_fold import checked_fold, fit_and_validate, task_arguments
from orthodiff_auto.diffusion.features import BlockFeatures, load_frozen_denoiser, truncated_state
from orthodiff_auto.diffusion.probe import PROBE_FEATURES, PROBE_JSON, fold_choice, read_probe
from orthodiff_auto.diffusion.run import output_dir_for
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.preprocessing.classification_input import InputLoader, ViewInput
from orthodiff_auto.training.checkpoint import unwrap
from orthodiff_auto.training.device import autocast_for
from orthodiff_auto.training.distributed import per_rank_batch_size
from orthodiff_auto.training.fold import SPLITS_JSON, training_cases_and_findings
from orthodiff_auto.training.splits import load_or_create_splits

#: the reader's name: the ``classifier_features`` value, the checkpoints' kind and the run folders' prefix
DIFFUSION = "diffusion"
#: the kind its checkpoints carried before the reader registry (mapped to DIFFUSION at load)
OLD_KIND = "diffusion_features"
# the features are cached vectors, so a large batch costs nothing and gives low-noise gradients
DEFAULT_BATCH_SIZE = 32


def load_view_features(pretrain_dir: Path | str, view: str, pooling: str = "mean",
                       train_cases: Sequence[str] | None = None, splits=None, findings: Sequence[str] = (),
                       fold: int | str | None = None) -> tuple[DiffusionFeatureSpec, BlockFeatures]:
    """The spec and the feature extractor of ``view`` from its pretraining folder (denoiser + the probe's
    output); UserInputError naming the file when either is missing or the probe was made with other weights.
    With ``train_cases`` (and the project's ``splits``) the timestep and block are chosen on those cases alone
    (``fold_choice``); without, probe.json's choice is taken (every fold's labels: analysis only)."""
    pretrain_dir = Path(pretrain_dir)
    probe_path = pretrain_dir / PROBE_JSON
    frozen = load_frozen_denoiser(pretrain_dir, view)
    probe = read_probe(probe_path)
    if probe.encoder_sha256 != frozen.encoder_sha256:
        raise UserInputError(f"{probe_path}: made with other pretrained weights than {frozen.encoder_checkpoint} "
                             f"(pretraining continued since?); run `orthodiff probe PREPROCESSED_DIR {view}` again")
    if train_cases is not None:
        choice, rows = fold_choice(pretrain_dir, train_cases, splits, findings, probe.l2)
        chosen_on, source = f"fold {fold} training cases (inner cross-validation)", pretrain_dir / PROBE_FEATURES
    else:
        choice, rows, chosen_on, source = probe.choice, probe.rows, "probe.json (all folds)", probe_path
    channels = next(r.channels for r in rows if (r.timestep, r.block) == (choice.timestep, choice.block))
    spec = DiffusionFeatureSpec(
        view=view, timestep=choice.timestep, block=choice.block, noise_seed=probe.noise_seed, channels=channels,
        architecture=frozen.architecture.to_dict(), schedule=frozen.schedule, timesteps=frozen.timesteps,
        probe=str(source.resolve()), probe_macro_auroc=choice.macro_auroc,
        denoiser_checkpoint=str(frozen.checkpoint.resolve()), encoder_checkpoint=str(frozen.encoder_checkpoint.resolve()),
        encoder_sha256=frozen.encoder_sha256, pooling=pooling, chosen_on=chosen_on)
    return spec, BlockFeatures(frozen.model, frozen.alphas_cumprod, spec.timestep, spec.block, spec.noise_seed,
                               pooling)


def extract_features(extractor: BlockFeatures, loader: InputLoader, view: str, cases: Sequence[str],
                     device: torch.device, mixed_precision: bool = True, batch_size: int = 1) -> np.ndarray:
    """(N, C) or, attention pooling, (N, C, *spatial) features of ``cases`` (their unaugmented inputs); maps are
    kept in float16 (half the memory; the head standardises them in float32)."""
    extractor = extractor.to(device)
    out = []
    dtype = np.float16 if extractor.pooling == "attention" else np.float32
    for i in range(0, len(cases), max(1, batch_size)):
        x = torch.from_numpy(np.stack([loader.load(view, c) for c in cases[i:i + batch_size]])).to(device)
        with autocast_for(device, mixed_precision):
            out.append(extractor(x).float().cpu().numpy().astype(dtype))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=dtype)


# ---------------------------------------------------------------- training

class FeatureBatches(SeededCaseBatches):
    """Batches of cached features: ``{"feat_<view>": (B, C_v), "present": (B, V), "target": (B, F)}``, cases
    drawn as in ``data.FusedBatches`` (seeded by (seed, rank, iteration); views dropped with ``view_dropout``)."""

    def __init__(self, features: Mapping[str, np.ndarray], present: np.ndarray, labels: np.ndarray, batch_size: int,
                 start: int, total: int, seed: int, rank: int = 0, weights: np.ndarray | None = None,
                 view_dropout: float = 0.0):
        super().__init__(len(labels), labels, batch_size, start, total, seed, rank, weights)
        self.features = {v: np.asarray(f) for v, f in features.items()}
        self.present = np.asarray(present, dtype=bool)
        self.view_dropout = float(view_dropout)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        _, rng, chosen = self.draw(index)
        present = self.present[chosen]
        if self.view_dropout > 0 and present.shape[1] > 1:
            present = drop_views(present, self.view_dropout, rng)
        out = {f"feat_{v}": torch.from_numpy(f[chosen].astype(np.float32)) for v, f in self.features.items()}
        out["present"] = torch.from_numpy(np.ascontiguousarray(present))
        out["target"] = torch.from_numpy(self.labels[chosen])
        return out


class FrozenFeatureTask(MultiViewOutputs, ClassificationTaskBase):
    """A view (``fused`` False) or the fusion of views on cached frozen-denoiser features."""

    def __init__(self, plans, views: Sequence[str], config, cls_config, preprocessed_dir, findings, labels,
                 train_cases, val_cases, fold, specs: Mapping[str, DiffusionFeatureSpec],
                 features: Mapping[str, Mapping[str, np.ndarray]], present: Mapping[str, Sequence[bool]],
                 fused: bool, denoiser_states: Mapping[str, dict[str, torch.Tensor]]):
        super().__init__(plans, views, config, cls_config, preprocessed_dir, findings, labels, train_cases,
                         val_cases, fold, pretrained=None)
        self.view = FUSED if fused else self.views[0]
        self.fusion = cls_config.fusion
        self.specs = dict(specs)
        self.denoiser_states = dict(denoiser_states)
        self.batch_size = int(config.batch_size or DEFAULT_BATCH_SIZE)
        self.init_sources = {v: f"frozen denoiser features (t={s.timestep}, {s.block})" for v, s in self.specs.items()}
        cases = sorted(set(self.train_cases) | set(self.val_cases))
        self._row = {c: i for i, c in enumerate(cases)}
        self._present = np.stack([np.asarray(present[c], dtype=bool) for c in cases])
        self._features = {v: np.stack([np.asarray(features[v].get(c, np.zeros(s.feature_shape or (s.channels,))))
                                       for c in cases]).astype(np.float16 if s.pooling == "attention" else np.float32)
                          for v, s in self.specs.items()}

    def _rows(self, cases: Sequence[str]) -> np.ndarray:
        return np.array([self._row[c] for c in cases], dtype=np.int64)

    def present_matrix(self, cases: Sequence[str], views: Sequence[str] | None = None) -> np.ndarray:
        """(cases, views) whether each case has each view (restricted to ``views`` when given)."""
        if not len(cases):
            return np.zeros((0, len(self.views)), dtype=bool)
        present = self._present[self._rows(cases)].copy()
        if views is not None:
            present &= np.isin(self.views, list(views))[None]
        return present

    def build_model(self) -> nn.Module:
        model = FrozenFeatureHead(self.views, {v: s.channels for v, s in self.specs.items()}, len(self.findings),
                                  self.fusion, pooling=self.specs[self.views[0]].pooling)
        rows, present = self._rows(self.train_cases), self.present_matrix(self.train_cases)
        for i, v in enumerate(self.views):
            model.scalers[v].fit(torch.from_numpy(self._features[v][rows[present[:, i]]]))
        self._model = model
        return model

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": list(unwrap(model).parameters())}]

    def batch_dataset(self, start: int, total: int, ctx) -> FeatureBatches:
        rows = self._rows(self.train_cases)
        return FeatureBatches({v: f[rows] for v, f in self._features.items()}, self._present[rows],
                              self.label_matrix(self.train_cases), per_rank_batch_size(self.batch_size, ctx), start, total,
                              seed=self.config.seed, rank=ctx.rank, weights=self.sample_weights,
                              view_dropout=self.cls_config.view_dropout)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        present = batch["present"].bool()
        out = model({v: batch[f"feat_{v}"] for v in self.views}, present)
        if self.view != FUSED:
            return self.bce(out["logits"], batch["target"])
        return self.fused_loss(out, batch["target"], present)

    def forward_cases(self, model: nn.Module, cases: Sequence[str], device: torch.device,
                      views: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        rows = self._rows(cases)
        feats = {v: torch.from_numpy(f[rows].astype(np.float32)).to(device) for v, f in self._features.items()}
        out = model(feats, torch.from_numpy(self.present_matrix(cases, views)).to(device))
        return {k: t.float().cpu().numpy() for k, t in out.items()}

    def checkpoint_extras(self) -> dict[str, Any]:
        return {**super().checkpoint_extras(), "kind": DIFFUSION, "view": self.view, "fusion": self.fusion,
                "gate_weights": self.gate_weights(), "init_sources": dict(self.init_sources),
                "diffusion_features": {v: s.to_dict() for v, s in self.specs.items()}}

    def inference_extras(self) -> dict[str, Any]:
        """Only in checkpoint_final.pt (the loop's other checkpoints stay small): the denoiser weights."""
        return {"denoiser_states": dict(self.denoiser_states)}


def build_frozen_task(request, plans, views: Sequence[str], present: Mapping[str, Sequence[bool]],
                      device: torch.device, log, **common) -> FrozenFeatureTask:
    """Load each view's frozen denoiser and probe choice, extract the features of the fold's cases once, and
    return the task (``common``: ``trained_fold.task_arguments``)."""

    fusion = common["cls_config"].fusion
    if request.view == FUSED and fusion not in FROZEN_FUSION_MODES:
        raise UserInputError(f"fusion={fusion} is not available with classifier_features=diffusion; choose one of "
                             f"{list(FROZEN_FUSION_MODES)}")
    cases = sorted(set(common["train_cases"]) | set(common["val_cases"]))
    pooling = request.config.frozen_pooling
    all_cases, split_table = training_cases_and_findings(Path(request.preprocessed_dir), plans)
    splits = load_or_create_splits(Path(request.preprocessed_dir) / SPLITS_JSON, all_cases, split_table, plans.findings)
    specs, features, states = {}, {}, {}
    for i, view in enumerate(views):
        train_view = [c for c in common["train_cases"] if present[c][i]]
        spec, extractor = load_view_features(output_dir_for(request.preprocessed_dir, view, request.results_dir), view,
                                             pooling, train_view, splits, common["findings"], request.fold)
        loader = InputLoader(request.preprocessed_dir, {view: ViewInput.from_plan(view, plans.view(view).classification)},
                             cache_bytes=0, ignore_label=plans.ignore_label)  # each input is read once
        have = [c for c in cases if present[c][i]]
        start = time.perf_counter()
        matrix = extract_features(extractor, loader, view, have, device, request.config.mixed_precision,
                                  max(1, request.config.val_batch_size or 2))
        log(f"{view}: frozen denoiser features t={spec.timestep}, {spec.block} ({spec.channels} channels, {pooling} "
            f"pooling; chosen on the {spec.chosen_on}: macro AUROC {spec.probe_macro_auroc:.3f}) of {len(have)} cases "
            f"in {time.perf_counter() - start:.1f} s")
        if pooling == "attention":
            spec = replace(spec, feature_shape=tuple(int(v) for v in matrix.shape[1:]))
        specs[view], features[view] = spec, dict(zip(have, matrix))
        states[view] = truncated_state(extractor.denoiser, spec.block)
        del extractor  # frees the device memory before the next view
    return FrozenFeatureTask(plans, views, specs=specs, features=features, present=present,
                             fused=request.view == FUSED, denoiser_states=states, **common)


def diffusion_variant(request) -> str:
    """"diffusion" (attention pooling) or ``diffusion-mean``: never shares a folder with fine-tuned runs."""
    pooling = request.config.frozen_pooling
    return DIFFUSION if pooling == "attention" else f"{DIFFUSION}-{pooling}"


def train_diffusion_fold(request, plans, cls_config, device: torch.device, ctx, log) -> FoldResult:
    fold = checked_fold(request, plans)
    if request.pretrained is not None:
        raise UserInputError(f"{request.pretrained}: --pretrained does not apply to classifier_features=diffusion, "
                             "which reads each view's frozen denoiser and probe.json from RESULTS/pretrain/VIEW")
    task = build_frozen_task(request, plans, fold.views, fold.present, device, log,
                             **task_arguments(request, cls_config, fold))
    return fit_and_validate(request, task, fold, cls_config, device, ctx, log, cached_inputs=True)


def diffusion_fold_inputs(request, views) -> list[Path]:
    """Each view's encoder and probe choice."""
    dirs = [output_dir_for(request.preprocessed_dir, v, request.results_dir) for v in views]
    return [d / f"encoder_{v}.pt" for d, v in zip(dirs, views)] + [d / PROBE_JSON for d in dirs]


def load_diffusion(extras: Mapping[str, Any], state: Mapping[str, torch.Tensor], plans, device: torch.device,
                   where: str) -> MultiViewModel:
    """The frozen denoisers up to the chosen blocks (from the checkpoint) and the trained head."""
    network = frozen_classifier_from_extras(extras, where)
    network.head.load_state_dict(state)
    return MultiViewModel(network, extras, device)


READER = register_reader(Reader(DIFFUSION, diffusion_variant, train_diffusion_fold, load_diffusion,
                                fold_inputs=diffusion_fold_inputs, checkpoint_kinds=(OLD_KIND,),
                                fusion_modes=FROZEN_FUSION_MODES))

__all__ = [
    "DEFAULT_BATCH_SIZE", "DIFFUSION", "FeatureBatches", "FrozenFeatureTask", "READER", "build_frozen_task",
    "diffusion_fold_inputs", "diffusion_variant", "extract_features", "load_diffusion", "load_view_features",
    "train_diffusion_fold",
]
