"""Frozen-feature classification (``--set classifier_features=diffusion``): OrthoDiffusion's other mode.

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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from orthodiff_auto.classification.data import SeededCaseBatches, drop_views
from orthodiff_auto.classification.fusion import GATE_SCALE
from orthodiff_auto.classification.task import MultiViewOutputs, ClassificationTaskBase
from orthodiff_auto.diffusion.features import BlockFeatures, denoiser_from_state, load_frozen_denoiser, truncated_state
from orthodiff_auto.classification.model import AttentionPoolingHead
from orthodiff_auto.diffusion.probe import PROBE_FEATURES, PROBE_JSON, fold_choice, read_probe
from orthodiff_auto.diffusion.run import output_dir_for
from orthodiff_auto.diffusion.schedule import make_alphas_cumprod
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.preprocessing.classification_input import InputLoader, ViewInput
from orthodiff_auto.training.checkpoint import unwrap
from orthodiff_auto.training.device import autocast_for
from orthodiff_auto.training.distributed import per_rank_batch_size
from orthodiff_auto.training.fold import SPLITS_JSON, training_cases_and_findings
from orthodiff_auto.training.splits import load_or_create_splits

FROZEN_KIND = "diffusion_features"
# the features are cached vectors, so a large batch costs nothing and gives low-noise gradients
DEFAULT_BATCH_SIZE = 32
FROZEN_FUSION_MODES = ("gate", "concat")


@dataclass(frozen=True)
class DiffusionFeatureSpec:
    """How one view's features are computed (stored in the checkpoint; what inference rebuilds)."""

    view: str
    timestep: int
    block: str
    noise_seed: int
    channels: int
    architecture: dict[str, Any]  # the denoiser's ArchitectureSpec.to_dict()
    schedule: str
    timesteps: int
    probe: str  # the probe features the choice was scored on
    probe_macro_auroc: float  # inner cross-validated macro AUROC of the chosen pair on the fold's training cases
    denoiser_checkpoint: str
    encoder_checkpoint: str
    encoder_sha256: str
    pooling: str = "mean"  # "attention": the head pools the block's map; "mean": averaged over space
    chosen_on: str = "probe.json"  # "fold <k> training cases (inner cross-validation)" or the global probe
    feature_shape: tuple[int, ...] = ()  # (C, *spatial) of an attention-pooled view's map

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DiffusionFeatureSpec":
        d = dict(d)
        d["feature_shape"] = tuple(int(v) for v in d.get("feature_shape", ()))
        return cls(**d)


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


# ---------------------------------------------------------------- the head

class Standardize(nn.Module):
    """(x - mean) / std with statistics fitted on the training features (saved with the model)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """``x`` (N, C) vectors or (N, C, *spatial) maps: statistics per channel over cases (and positions)."""
        if len(x):
            flat = x.float().transpose(0, 1).reshape(x.shape[1], -1)
            self.mean.copy_(flat.mean(1))
            self.std.copy_(flat.std(1, unbiased=False).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x.float() - self.mean.view(shape)) / self.std.view(shape)


class FrozenFeatureHead(nn.Module):
    """``forward({view: (B, C_v)}, present (B, V))`` -> ``logits`` (B, F), ``view_logits`` (B, F, V) (0 where
    absent) and, gate mode, ``weights`` (B, F, V). With one view the logits are that view's own."""

    def __init__(self, views: Sequence[str], channels: Mapping[str, int], num_findings: int, fusion: str = "gate",
                 gate_scale: float = GATE_SCALE, pooling: str = "mean"):
        super().__init__()
        if len(views) > 1 and fusion not in FROZEN_FUSION_MODES:
            raise ValueError(f"fusion mode must be one of {list(FROZEN_FUSION_MODES)}, got {fusion!r}")
        if len(views) > 1 and pooling == "attention" and fusion != "gate":
            raise UserInputError("attention-pooled frozen features fuse with fusion=gate only (concat needs one vector "
                                 "per view: use frozen_pooling=mean)")
        self.views, self.fusion, self.gate_scale, self.pooling = list(views), fusion, float(gate_scale), pooling
        self.scalers = nn.ModuleDict({v: Standardize(channels[v]) for v in self.views})
        if pooling == "attention":
            self.attention = nn.ModuleDict({v: AttentionPoolingHead(channels[v], num_findings) for v in self.views})
        else:
            self.linears = nn.ModuleDict({v: nn.Linear(channels[v], num_findings) for v in self.views})
            for layer in self.linears.values():  # logistic regression: zero is the natural start
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        if len(self.views) > 1 and fusion == "gate":
            self.gate_logits = nn.Parameter(torch.zeros(num_findings, len(self.views)))
        elif len(self.views) > 1:
            self.missing = nn.ParameterDict({v: nn.Parameter(torch.zeros(channels[v])) for v in self.views})
            self.concat = nn.Linear(sum(channels[v] for v in self.views), num_findings)
            nn.init.zeros_(self.concat.weight)
            nn.init.zeros_(self.concat.bias)

    def view_logit(self, view: str, scaled: torch.Tensor) -> torch.Tensor:
        """(B, F) logits of one view from its standardised features (vectors, or maps attention-pooled)."""
        if self.pooling == "attention":
            return self.attention[view](scaled)[1]
        return self.linears[view](scaled)

    def gate_weights(self) -> torch.Tensor | None:
        """(F, V) weights with every view present; None without a gate."""
        if not hasattr(self, "gate_logits"):
            return None
        return torch.softmax(self.gate_scale * self.gate_logits.detach().float(), dim=-1)

    def forward(self, features: Mapping[str, torch.Tensor], present: torch.Tensor) -> dict[str, torch.Tensor]:
        present = present.bool()
        scaled = {v: self.scalers[v](features[v]) for v in self.views}
        view_logits = torch.stack([torch.where(present[:, i, None], self.view_logit(v, scaled[v]), 0.0)
                                   for i, v in enumerate(self.views)], dim=-1)
        out = {"view_logits": view_logits}
        if len(self.views) == 1:
            out["logits"] = view_logits[..., 0]
        elif hasattr(self, "gate_logits"):
            gate = (self.gate_scale * self.gate_logits.float())[None].expand(present.shape[0], -1, -1)
            weights = torch.nan_to_num(torch.softmax(gate.masked_fill(~present[:, None, :], float("-inf")), -1))
            out["weights"] = weights
            out["logits"] = (weights * view_logits.detach()).sum(-1)  # see fusion.py: the gate learns alone
        else:
            cat = torch.cat([torch.where(present[:, i, None], scaled[v], self.missing[v].float())
                             for i, v in enumerate(self.views)], dim=-1)
            out["logits"] = self.concat(cat)
        return out


class FrozenFeatureClassifier(nn.Module):
    """Inference: whole-field-of-view inputs -> features (frozen denoisers) -> head. Same call as
    ``FusedClassifier``: ``forward({view: (B, 1, *size)}, present (B, V))``; absent views are not computed."""

    def __init__(self, extractors: Mapping[str, BlockFeatures], head: FrozenFeatureHead,
                 feature_shapes: Mapping[str, tuple[int, ...]] | None = None):
        super().__init__()
        self.extractors = nn.ModuleDict(dict(extractors))
        self.head = head
        self.feature_shapes = dict(feature_shapes or {})

    @torch.no_grad()
    def forward(self, inputs: Mapping[str, torch.Tensor], present: torch.Tensor) -> dict[str, torch.Tensor]:
        present = present.bool()
        features = {}
        for i, view in enumerate(self.head.views):
            rows = torch.nonzero(present[:, i]).squeeze(1)
            if rows.numel():
                computed = self.extractors[view](inputs[view].index_select(0, rows)).float()
                f = torch.zeros((present.shape[0], *computed.shape[1:]), device=present.device)
                f[rows] = computed
            else:  # the view is absent from every case: any placeholder (its logits are masked)
                shape = self.feature_shapes.get(view) or (self.head.scalers[view].mean.numel(),)
                f = torch.zeros((present.shape[0], *shape), device=present.device)
            features[view] = f
        return self.head(features, present)


def frozen_classifier_from_extras(extras: Mapping[str, Any], where: str = "checkpoint") -> FrozenFeatureClassifier:
    """The inference model a frozen-feature checkpoint describes (the head's weights not yet loaded)."""
    states = extras.get("denoiser_states")
    if not states:
        raise UserInputError(f"{where}: no denoiser weights; only checkpoint_final.pt of a finished frozen-feature "
                             "fold holds them")
    specs = {v: DiffusionFeatureSpec.from_dict(d) for v, d in extras["diffusion_features"].items()}
    views = list(extras["views"])
    extractors = {
        v: BlockFeatures(denoiser_from_state(specs[v].architecture, states[v], specs[v].block, where),
                         make_alphas_cumprod(specs[v].schedule, specs[v].timesteps).float(), specs[v].timestep,
                         specs[v].block, specs[v].noise_seed, specs[v].pooling)
        for v in views
    }
    head = FrozenFeatureHead(views, {v: specs[v].channels for v in views}, len(extras["findings"]),
                             extras.get("fusion") or "gate", pooling=specs[views[0]].pooling)
    return FrozenFeatureClassifier(extractors, head, {v: specs[v].feature_shape for v in views})


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
        self.view = "fused" if fused else self.views[0]
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
        if self.view != "fused":
            return self.bce(out["logits"], batch["target"])
        return self.fused_loss(out, batch["target"], present)

    def forward_cases(self, model: nn.Module, cases: Sequence[str], device: torch.device,
                      views: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        rows = self._rows(cases)
        feats = {v: torch.from_numpy(f[rows].astype(np.float32)).to(device) for v, f in self._features.items()}
        out = model(feats, torch.from_numpy(self.present_matrix(cases, views)).to(device))
        return {k: t.float().cpu().numpy() for k, t in out.items()}

    def checkpoint_extras(self) -> dict[str, Any]:
        return {**super().checkpoint_extras(), "kind": FROZEN_KIND, "view": self.view, "fusion": self.fusion,
                "gate_weights": self.gate_weights(), "init_sources": dict(self.init_sources),
                "diffusion_features": {v: s.to_dict() for v, s in self.specs.items()}}

    def inference_extras(self) -> dict[str, Any]:
        """Only in checkpoint_final.pt (the loop's other checkpoints stay small): the denoiser weights."""
        return {"denoiser_states": dict(self.denoiser_states)}


def build_frozen_task(request, plans, views: Sequence[str], present: Mapping[str, Sequence[bool]],
                      device: torch.device, log, **common) -> FrozenFeatureTask:
    """Load each view's frozen denoiser and probe choice, extract the features of the fold's cases once, and
    return the task (``common``: the classification task arguments of ``run.build_task``)."""

    fusion = common["cls_config"].fusion
    if request.view == "fused" and fusion not in FROZEN_FUSION_MODES:
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
                                  max(1, request.config.val_batch_size))
        log(f"{view}: frozen denoiser features t={spec.timestep}, {spec.block} ({spec.channels} channels, {pooling} "
            f"pooling; chosen on the {spec.chosen_on}: macro AUROC {spec.probe_macro_auroc:.3f}) of {len(have)} cases "
            f"in {time.perf_counter() - start:.1f} s")
        if pooling == "attention":
            spec = replace(spec, feature_shape=tuple(int(v) for v in matrix.shape[1:]))
        specs[view], features[view] = spec, dict(zip(have, matrix))
        states[view] = truncated_state(extractor.denoiser, spec.block)
        del extractor  # frees the device memory before the next view
    return FrozenFeatureTask(plans, views, specs=specs, features=features, present=present,
                             fused=request.view == "fused", denoiser_states=states, **common)


__all__ = [
    "DEFAULT_BATCH_SIZE", "DiffusionFeatureSpec", "FROZEN_FUSION_MODES", "FROZEN_KIND", "FeatureBatches",
    "FrozenFeatureClassifier", "FrozenFeatureHead", "FrozenFeatureTask", "Standardize", "build_frozen_task",
    "extract_features", "frozen_classifier_from_extras", "load_view_features",
]
