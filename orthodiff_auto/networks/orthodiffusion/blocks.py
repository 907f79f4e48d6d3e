"""The building blocks of the OrthoDiffusion authors' 3D diffusion U-Net (the med-ddpm / guided-diffusion
design), written for this project from the published description so that their checkpoints load key for key.

Parameter names are part of the contract (``networks.orthodiffusion.unet`` lists them): a ``ResBlock`` holds
``in_layers`` (GroupNorm, SiLU, conv), ``emb_layers`` (SiLU, Linear), ``out_layers`` (GroupNorm, SiLU, Dropout,
conv) and a ``skip_connection`` (1x1x1 conv when the width changes); an ``AttentionBlock`` holds ``norm``,
``qkv`` and ``proj_out`` (1-D convolutions over the flattened volume); ``Downsample.op`` is a stride-2 conv on
all three axes and ``Upsample.conv`` follows a trilinear doubling of all three axes.

Facts of their implementation kept here because the weights depend on them: group normalisation with 32 groups
computed in float32, the sinusoidal timestep embedding with ``max_period`` 1000 (not guided-diffusion's 10000),
and the "legacy" attention order (heads split before q, k, v).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORM_GROUPS = 32
EMBEDDING_MAX_PERIOD = 1000.0


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = EMBEDDING_MAX_PERIOD) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) [cos | sin] at frequencies max_period ** (-k / half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """Group normalisation evaluated in float32 (as under mixed precision in the authors' code)."""

    def __init__(self, channels: int):
        super().__init__(NORM_GROUPS, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class ResBlock(nn.Module):
    """norm-SiLU-conv, plus the timestep embedding (added per channel), norm-SiLU-dropout-conv, plus the skip."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv3d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                        nn.Conv3d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv3d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        e = self.emb_layers(emb).type(h.dtype)
        h = self.out_layers(h + e.reshape(*e.shape, *([1] * (h.ndim - 2))))
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over every voxel of the volume; residual."""

    def __init__(self, channels: int, num_heads: int = 1):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention: {channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        n = flat.shape[-1]
        ch = c // self.num_heads
        q, k, v = qkv.reshape(b * self.num_heads, 3 * ch, n).split(ch, dim=1)  # heads split before q, k, v
        scale = ch ** -0.25  # on q and k each: the product is scaled by 1/sqrt(ch)
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale).float(), dim=-1).type(q.dtype)
        h = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, n)
        return (flat + self.proj_out(h)).reshape(b, c, *spatial)


class Downsample(nn.Module):
    """Stride-2 3x3x3 convolution (all three axes halved)."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv3d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Trilinear doubling of all three axes, then a 3x3x3 convolution."""

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv3d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, tuple(2 * s for s in x.shape[2:]), mode="trilinear"))


class TimestepSequential(nn.Sequential):
    """A sequence of blocks; residual blocks also take the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def time_embed(model_channels: int) -> nn.Sequential:
    """Linear(C, 4C) - SiLU - Linear(4C, 4C) on the sinusoidal embedding of width C."""
    dim = 4 * model_channels
    return nn.Sequential(nn.Linear(model_channels, dim), nn.SiLU(), nn.Linear(dim, dim))


__all__ = ["AttentionBlock", "Downsample", "EMBEDDING_MAX_PERIOD", "GroupNorm32", "NORM_GROUPS", "ResBlock",
           "TimestepSequential", "Upsample", "time_embed", "timestep_embedding"]
