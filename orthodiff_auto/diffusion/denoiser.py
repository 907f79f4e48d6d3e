"""The timestep-conditioned denoiser: the planned segmentation U-Net with FiLM conditioning on the timestep.

``Denoiser(spec)`` holds ``encoder`` and ``decoder`` of ``build_segmentation_network(spec, 1, 1,
deep_supervision=False)`` unchanged, so ``denoiser.encoder.state_dict()`` has exactly the keys and shapes of
``build_encoder(spec, 1).state_dict()`` and of the segmentation U-Net's ``encoder``: pretrained weights load
one to one. Everything that exists only for diffusion lives in separate modules that fine-tuning drops:

- ``time_mlp``: sinusoidal embedding of t -> MLP;
- ``film_encoder[s]`` / ``film_decoder[s]``: per-stage Linear layers mapping the embedding to a per-channel
  (scale, shift), applied to each encoder and decoder stage's output as ``h * (1 + scale) + shift``. They are
  zero-initialised, so at initialisation the denoiser computes exactly what the plain U-Net computes.

The U-Net's deep-supervision heads other than the full-resolution one are kept (same parameter names as the
U-Net) but frozen, because they take no part in the forward pass (DistributedDataParallel requires every
trainable parameter to receive a gradient).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.builder import build_segmentation_network
from orthodiff_auto.networks.spec import ArchitectureSpec

#: top-level submodules that only exist for diffusion (export and fine-tuning ignore them)
CONDITIONING_MODULES = ("time_mlp", "film_encoder", "film_decoder")


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style embedding of (integer or real) timesteps: (B,) -> (B, dim) [cos | sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, sinusoidal_dim: int, hidden_dim: int):
        super().__init__()
        self.sinusoidal_dim = sinusoidal_dim
        self.mlp = nn.Sequential(nn.Linear(sinusoidal_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.sinusoidal_dim))


class FiLM(nn.Module):
    """Per-channel scale and shift from the timestep embedding; identity at initialisation."""

    def __init__(self, embed_dim: int, channels: int):
        super().__init__()
        self.act = nn.SiLU()
        self.proj = nn.Linear(embed_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(self.act(emb)).to(h.dtype).chunk(2, dim=1)
        view = (h.shape[0], h.shape[1]) + (1,) * (h.ndim - 2)
        return h * (1 + scale.reshape(view)) + shift.reshape(view)


class Denoiser(nn.Module):
    """``forward(x_t, t)`` -> prediction (noise, v or x_0) with ``out_channels`` channels, same spatial shape."""

    def __init__(self, spec: ArchitectureSpec, in_channels: int = 1, out_channels: int = 1,
                 embed_dim: int | None = None):
        super().__init__()
        if spec.network_class != "PlainConvUNet":
            raise UserInputError(f"diffusion pretraining supports PlainConvUNet architectures, not "
                                 f"{spec.network_class!r}")
        unet = build_segmentation_network(spec, in_channels, out_channels, deep_supervision=False)
        self.spec = spec
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        for head in list(self.decoder.seg_layers)[:-1]:
            head.requires_grad_(False)
        embed_dim = embed_dim or max(32, 4 * spec.features_per_stage[0])
        self.time_mlp = TimestepEmbedding(max(16, spec.features_per_stage[0]), embed_dim)
        self.film_encoder = nn.ModuleList(FiLM(embed_dim, c) for c in spec.features_per_stage)
        self.film_decoder = nn.ModuleList(FiLM(embed_dim, c) for c in reversed(spec.features_per_stage[:-1]))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(t)
        skips = []
        h = x
        for stage, film in zip(self.encoder.stages, self.film_encoder):
            h = film(stage(h), emb)
            skips.append(h)
        dec = self.decoder
        for s, film in enumerate(self.film_decoder):
            h = torch.cat((dec.transpconvs[s](h), skips[-(s + 2)]), dim=1)
            h = film(dec.stages[s](h), emb)
        return dec.seg_layers[-1](h)


__all__ = ["CONDITIONING_MODULES", "Denoiser", "FiLM", "TimestepEmbedding", "sinusoidal_embedding"]
