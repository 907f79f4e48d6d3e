"""The frozen-diffusion-feature models (``classification.diffusion_reader``): what a fold's features are
(``DiffusionFeatureSpec``), the light head trained on them (``FrozenFeatureHead``: per view attention or mean
pooling of standardised features, fused by a gate or by concatenation), and the inference model that computes
the features of new cases with the frozen denoisers and applies the head (``FrozenFeatureClassifier``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from orthodiff_auto.classification.fusion import GATE_SCALE
from orthodiff_auto.classification.model import AttentionPoolingHead
from orthodiff_auto.diffusion.features import BlockFeatures, denoiser_from_state
from orthodiff_auto.diffusion.schedule import make_alphas_cumprod
from orthodiff_auto.errors import UserInputError

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


__all__ = ["DiffusionFeatureSpec", "FROZEN_FUSION_MODES", "FrozenFeatureClassifier", "FrozenFeatureHead",
           "Standardize", "frozen_classifier_from_extras"]
