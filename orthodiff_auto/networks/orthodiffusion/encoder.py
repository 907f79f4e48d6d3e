"""The encoder of the authors' diffusion U-Net (``time_embed``, ``input_blocks``, ``middle_block``: the same
names, so the diffusion checkpoint's weights load one to one) and a segmentation network on it.

``OrthoDiffusionEncoder`` is what the registry's ``build_encoder`` gives for network_class "OrthoDiffusionUNet":
``forward(x)`` returns every level's output (the last residual block of each level; the deepest level's is the
middle block's output, ``mid_2``) or, with ``return_skips=False``, only that bottleneck. The timestep its
residual blocks are conditioned on is ``timestep`` (0: the clean input, as segmentation and fine-tuned
classifiers see it), or the ``t`` passed to ``forward``.

``OrthoDiffusionSegmentationNet`` adds a fresh decoder: per level, deepest first, an upsampling (trilinear x2
and a convolution, as the authors' ``Upsample``), concatenation with the encoder's level output, two
norm-SiLU-conv layers, and a 1x1x1 segmentation head per level for deep supervision (full resolution first).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from orthodiff_auto.networks.orthodiffusion.blocks import GroupNorm32, Upsample, timestep_embedding
from orthodiff_auto.networks.orthodiffusion.unet import OrthoDiffusionHyperParameters, OrthoDiffusionUNet
from orthodiff_auto.networks.spec import ArchitectureSpec


class OrthoDiffusionEncoder(nn.Module):
    def __init__(self, hp: OrthoDiffusionHyperParameters, return_skips: bool = True, timestep: int = 0):
        super().__init__()
        full = OrthoDiffusionUNet(hp)
        self.hp = hp
        self.time_embed = full.time_embed
        self.input_blocks = full.input_blocks
        self.middle_block = full.middle_block
        self.return_skips = return_skips
        self.timestep = int(timestep)
        self.output_channels = list(hp.widths)
        # index of the last residual block of each level in input_blocks (the level's output)
        per_level = hp.num_res_blocks + 1
        self.level_outputs = [hp.num_res_blocks + level * per_level for level in range(len(hp.widths))]

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None):
        if t is None:
            t = torch.full((x.shape[0],), self.timestep, dtype=torch.long, device=x.device)
        emb = self.time_embed(timestep_embedding(t, self.hp.model_channels))
        skips, h = [], x
        for i, block in enumerate(self.input_blocks):
            h = block(h, emb)
            if i in self.level_outputs[:-1]:
                skips.append(h)
        h = self.middle_block(h, emb)
        return skips + [h] if self.return_skips else h

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Voxels x channels of every convolution's output for one sample (the planner's memory estimate)."""
        total, size = 0, [int(s) for s in input_size]
        for width in self.hp.widths:
            # the stem or the downsampling into this level, then two convolutions per residual block
            total += math.prod(size) * width * (1 + 2 * self.hp.num_res_blocks)
            size = [s // 2 for s in size]
        deepest = [s * 2 for s in size]
        return total + math.prod(deepest) * self.hp.widths[-1] * 4  # the middle block's two residual blocks


class _DecoderLevel(nn.Module):
    def __init__(self, deep: int, skip: int, num_classes: int):
        super().__init__()
        self.up = Upsample(deep, skip)
        self.convs = nn.Sequential(GroupNorm32(2 * skip), nn.SiLU(), nn.Conv3d(2 * skip, skip, 3, padding=1),
                                   GroupNorm32(skip), nn.SiLU(), nn.Conv3d(skip, skip, 3, padding=1))
        self.seg = nn.Conv3d(skip, num_classes, 1)

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(h), skip], dim=1))


class OrthoDiffusionDecoder(nn.Module):
    def __init__(self, widths: Sequence[int], num_classes: int, deep_supervision: bool):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.levels = nn.ModuleList(_DecoderLevel(widths[i + 1], widths[i], num_classes)
                                    for i in reversed(range(len(widths) - 1)))

    def forward(self, skips: list[torch.Tensor]):
        h, outputs = skips[-1], []
        for level, skip in zip(self.levels, reversed(skips[:-1])):
            h = level(h, skip)
            outputs.append(level.seg(h))
        outputs.reverse()  # full resolution first
        return outputs if self.deep_supervision else outputs[0]


class OrthoDiffusionSegmentationNet(nn.Module):
    """The registry's class for network_class "OrthoDiffusionUNet" (built through ``from_spec``)."""

    def __init__(self, hp: OrthoDiffusionHyperParameters, num_classes: int, deep_supervision: bool = True):
        super().__init__()
        self.encoder = OrthoDiffusionEncoder(hp, return_skips=True)
        self.decoder = OrthoDiffusionDecoder(hp.widths, num_classes, deep_supervision)

    def forward(self, x: torch.Tensor):
        return self.decoder(self.encoder(x))

    @classmethod
    def from_spec(cls, spec: ArchitectureSpec, num_input_channels: int, num_classes: int,
                  deep_supervision: bool = True) -> "OrthoDiffusionSegmentationNet":
        return cls(OrthoDiffusionHyperParameters.from_spec(spec, num_input_channels), num_classes, deep_supervision)

    @staticmethod
    def encoder_from_spec(spec: ArchitectureSpec, num_input_channels: int, return_skips: bool = True
                          ) -> OrthoDiffusionEncoder:
        return OrthoDiffusionEncoder(OrthoDiffusionHyperParameters.from_spec(spec, num_input_channels), return_skips)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        total = self.encoder.compute_conv_feature_map_size(input_size)
        size = [int(s) for s in input_size]
        for width in self.encoder.hp.widths[:-1]:
            total += math.prod(size) * width * 4  # upsampling, two convolutions, concatenation
            size = [s // 2 for s in size]
        return total


__all__ = ["OrthoDiffusionDecoder", "OrthoDiffusionEncoder", "OrthoDiffusionSegmentationNet"]
