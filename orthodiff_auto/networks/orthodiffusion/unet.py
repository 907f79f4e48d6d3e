"""The OrthoDiffusion authors' 3D diffusion U-Net (``OrthoDiffusionUNet``), its encoder and its hyper-parameters.

Module tree (their names, so a state dict of theirs, ``denoise_fn.`` prefix removed, loads key for key)::

    time_embed        Linear(C, 4C), SiLU, Linear(4C, 4C) on the sinusoidal embedding of t (width C)
    input_blocks.0    conv 3x3x3 in -> C*mult[0]
    input_blocks.k    per level: num_res_blocks x [ResBlock (+ AttentionBlock at attention levels)],
                      then a Downsample (stride 2, all axes) except after the last level
    middle_block      ResBlock, AttentionBlock, ResBlock
    output_blocks.k   per level, deepest first: num_res_blocks + 1 x [ResBlock on concat(h, skip)
                      (+ AttentionBlock)], the last of a level (but level 0) followed by an Upsample
    out               GroupNorm, SiLU, conv 3x3x3 -> out channels

Their defaults (``create_model``): C 64, one residual block per level, ``channel_mult`` by input size (256:
1,1,2,2,4), attention where the volume is downsampled 16 times less than ``image_size`` (256: level 4), one head.

Named blocks, as the authors read features: ``in_<i>`` = output of ``input_blocks.<i>``, ``mid_<i>`` = output of
``middle_block.<i>``, ``out_<i>`` = output of ``output_blocks.<i>`` (``block_module`` maps one to its module).

``OrthoDiffusionHyperParameters.to_spec`` writes them as an ``ArchitectureSpec`` (network_class
"OrthoDiffusionUNet": stages = levels, features = C * mult, strides 2 on every axis, n_conv_per_stage = residual
blocks, attention_stages); ``from_spec`` reads them back. ``infer_hyper_parameters`` reads them from a state dict.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
import torch
from torch import nn

from orthodiff_auto.networks.orthodiffusion.blocks import (
    AttentionBlock,
    Downsample,
    GroupNorm32,
    ResBlock,
    TimestepSequential,
    Upsample,
    time_embed,
    timestep_embedding,
)
from orthodiff_auto.networks.spec import ArchitectureSpec

NETWORK_CLASS = "OrthoDiffusionUNet"
AUTHORS_CHANNEL_MULT = {512: (1, 2, 4, 8, 16), 256: (1, 1, 2, 2, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
AUTHORS_ATTENTION_RESOLUTION = 16  # "attention_resolutions" "16": at image_size // 16 downsampling


class HyperParameterError(ValueError):
    """A state dict that is not this architecture, or stated hyper-parameters it contradicts."""


@dataclass(frozen=True)
class OrthoDiffusionHyperParameters:
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (4,)
    num_heads: int = 1
    in_channels: int = 1
    out_channels: int = 1

    @classmethod
    def authors_defaults(cls, image_size: int = 256, model_channels: int = 64) -> "OrthoDiffusionHyperParameters":
        """What their ``create_model(image_size, num_channels, 1)`` builds."""
        if image_size not in AUTHORS_CHANNEL_MULT:
            raise HyperParameterError(f"no default channel_mult for image size {image_size}")
        level = int(math.log2(image_size // AUTHORS_ATTENTION_RESOLUTION))
        return cls(model_channels=model_channels, channel_mult=AUTHORS_CHANNEL_MULT[image_size], attention_levels=(level,))

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.model_channels * m for m in self.channel_mult)

    def to_spec(self) -> ArchitectureSpec:
        n = len(self.channel_mult)
        return ArchitectureSpec(
            n_stages=n, features_per_stage=self.widths, kernel_sizes=((3, 3, 3),) * n,
            strides=((1, 1, 1),) + ((2, 2, 2),) * (n - 1), n_conv_per_stage=(self.num_res_blocks,) * n,
            n_conv_per_stage_decoder=(self.num_res_blocks + 1,) * (n - 1), network_class=NETWORK_CLASS,
            conv_bias=True, norm="group", nonlin="silu", conv_dim=3,
            attention_stages=tuple(self.attention_levels), attention_heads=self.num_heads)

    @classmethod
    def from_spec(cls, spec: ArchitectureSpec, in_channels: int = 1, out_channels: int = 1
                  ) -> "OrthoDiffusionHyperParameters":
        c = spec.features_per_stage[0]
        if any(f % c for f in spec.features_per_stage) or len(set(spec.n_conv_per_stage)) != 1:
            raise HyperParameterError(f"{NETWORK_CLASS}: features {list(spec.features_per_stage)} must be multiples "
                                      f"of the first and every stage must have the same residual blocks")
        return cls(model_channels=c, channel_mult=tuple(f // c for f in spec.features_per_stage),
                   num_res_blocks=spec.n_conv_per_stage[0], attention_levels=tuple(spec.attention_stages),
                   num_heads=spec.attention_heads, in_channels=in_channels, out_channels=out_channels)


def _level_blocks(hp: OrthoDiffusionHyperParameters, level: int, ch: int, out: int, emb: int) -> list[nn.Module]:
    blocks: list[nn.Module] = [ResBlock(ch, emb, out)]
    if level in hp.attention_levels:
        blocks.append(AttentionBlock(out, hp.num_heads))
    return blocks


class OrthoDiffusionUNet(nn.Module):
    """``forward(x, t)`` -> the predicted noise (same shape as x); sizes must be multiples of 2**(levels - 1)."""

    def __init__(self, hp: OrthoDiffusionHyperParameters):
        super().__init__()
        self.hp = hp
        emb = 4 * hp.model_channels
        self.time_embed = time_embed(hp.model_channels)
        ch = hp.widths[0]
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv3d(hp.in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        for level, width in enumerate(hp.widths):
            for _ in range(hp.num_res_blocks):
                self.input_blocks.append(TimestepSequential(*_level_blocks(hp, level, ch, width, emb)))
                ch = width
                skip_channels.append(ch)
            if level < len(hp.widths) - 1:
                self.input_blocks.append(TimestepSequential(Downsample(ch)))
                skip_channels.append(ch)
        self.middle_block = TimestepSequential(ResBlock(ch, emb), AttentionBlock(ch, hp.num_heads), ResBlock(ch, emb))
        self.output_blocks = nn.ModuleList()
        for level, width in reversed(list(enumerate(hp.widths))):
            for i in range(hp.num_res_blocks + 1):
                layers = _level_blocks(hp, level, ch + skip_channels.pop(), width, emb)
                ch = width
                if level and i == hp.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv3d(ch, hp.out_channels, 3, padding=1))

    @property
    def spec(self) -> ArchitectureSpec:
        """Its architecture as the plans write it (what feature reading pads inputs to: ``shape_divisor``)."""
        return self.hp.to_spec()

    def embedding(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_embed(timestep_embedding(t, self.hp.model_channels))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(t)
        skips, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


_BLOCK_NAME = re.compile(r"^(in|mid|out)_(\d+)$")
_BLOCK_MODULE = {"in": "input_blocks", "mid": "middle_block", "out": "output_blocks"}


def block_module(name: str) -> str:
    """The module path of one of the authors' block names: ``mid_2`` -> ``middle_block.2``."""
    m = _BLOCK_NAME.match(name)
    if not m:
        raise HyperParameterError(f"block {name!r}: expected in_<i>, mid_<i> or out_<i>")
    return f"{_BLOCK_MODULE[m.group(1)]}.{m.group(2)}"


def block_names(model: OrthoDiffusionUNet) -> list[str]:
    """Every named block, in the order a forward pass reaches them."""
    return ([f"in_{i}" for i in range(len(model.input_blocks))] + [f"mid_{i}" for i in range(len(model.middle_block))]
            + [f"out_{i}" for i in range(len(model.output_blocks))])


__all__ = ["AUTHORS_CHANNEL_MULT", "HyperParameterError", "NETWORK_CLASS", "OrthoDiffusionHyperParameters",
           "OrthoDiffusionUNet", "block_module", "block_names"]
