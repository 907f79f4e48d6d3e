"""The per-view classifier: the plans' encoder, attention pooling per finding, a multi-label head.

``encoder`` is ``build_encoder(arch, 1, return_skips=False)``, parameter for parameter the segmentation
U-Net's encoder, so diffusion-pretrained weights load one to one. On its bottleneck feature map (B, C, *s):

- attention: a 1x1x1 convolution (a linear map of each voxel's C features) gives one attention logit per
  finding and voxel; a softmax over the voxels turns them into per-finding attention weights (randomly
  initialised: starting from uniform weights, i.e. global average pooling, learns far slower, because after
  instance normalisation the average of a feature map says little about a small local finding);
- pooling: each finding gets its own pooled feature vector, the attention-weighted mean of the voxels'
  features (B, F, C);
- head: one linear map per finding from its pooled features to its logit (B, F).
"""

from __future__ import annotations

import torch
from torch import nn

from orthodiff_auto.networks.builder import build_encoder


class AttentionPoolingHead(nn.Module):
    def __init__(self, channels: int, num_findings: int):
        super().__init__()
        self.attention = nn.Linear(channels, num_findings)
        nn.init.normal_(self.attention.weight, std=channels ** -0.5)
        nn.init.zeros_(self.attention.bias)
        # unit-variance logits at the start (a much smaller init learns markedly slower)
        self.weight = nn.Parameter(torch.randn(num_findings, channels) / channels ** 0.5)
        self.bias = nn.Parameter(torch.zeros(num_findings))

    def attention_weights(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F, N) softmax over the N voxels of the feature map."""
        flat = features.flatten(2).transpose(1, 2)  # (B, N, C)
        return torch.softmax(self.attention(flat).transpose(1, 2).float(), dim=-1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (B, F, C) and logits (B, F), both float32."""
        attn = self.attention_weights(features)
        pooled = torch.einsum("bfn,bcn->bfc", attn, features.flatten(2).float())
        logits = (pooled * self.weight.float()).sum(-1) + self.bias.float()
        return pooled, logits


class ViewClassifier(nn.Module):
    """One view's multi-label classifier; ``forward(x)`` -> logits (B, F)."""

    def __init__(self, arch, num_findings: int):
        super().__init__()
        self.encoder = build_encoder(arch, 1, return_skips=False)
        self.channels = int(arch.features_per_stage[-1])
        self.head = AttentionPoolingHead(self.channels, num_findings)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's bottleneck (B, C, *s)."""
        features = self.encoder(x)
        return features[-1] if isinstance(features, (list, tuple)) else features

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.feature_map(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


__all__ = ["AttentionPoolingHead", "ViewClassifier"]
