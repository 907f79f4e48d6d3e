"""The network architecture as plain data: ``ArchitectureSpec``, what the builders need to make a network.

It is written into the plans (``plans.schema``) and into checkpoints (``to_dict``), and read back with
``from_dict``, which checks every field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from orthodiff_auto.utils.fields import FieldError, check_known_keys, ints, take


@dataclass(frozen=True)
class ArchitectureSpec:
    """Plain keyword arguments of dna's ``PlainConvUNet`` (conv/norm/nonlin as names): enough to rebuild the
    network with ``orthodiff_auto.networks.build_segmentation_network`` / ``build_encoder``.

    ``kernel_sizes[s]`` and ``strides[s]`` are per stage and per axis; ``strides[0]`` is all ones, and
    ``strides[s]`` is the downsampling entering stage ``s``.
    """

    n_stages: int
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    n_conv_per_stage: tuple[int, ...]
    n_conv_per_stage_decoder: tuple[int, ...]
    network_class: str = "PlainConvUNet"
    conv_bias: bool = True
    norm: str = "instance"
    nonlin: str = "leaky_relu"
    conv_dim: int = 3
    # Self-attention after the residual blocks of these stages, with this many heads (architectures that have
    # it, e.g. OrthoDiffusionUNet; written to JSON only when set, so other plans keep their fields).
    attention_stages: tuple[int, ...] = ()
    attention_heads: int = 1

    def __post_init__(self):
        n = self.n_stages
        if not isinstance(n, int) or n < 1:
            raise FieldError(f"architecture.n_stages must be a positive integer, got {n!r}")
        for name, length in (("features_per_stage", n), ("kernel_sizes", n), ("strides", n), ("n_conv_per_stage", n),
                             ("n_conv_per_stage_decoder", n - 1)):
            if len(getattr(self, name)) != length:
                raise FieldError(f"architecture.{name} must have {length} entries (n_stages={n}), "
                                f"got {len(getattr(self, name))}")
        for s, (k, st) in enumerate(zip(self.kernel_sizes, self.strides)):
            if len(k) != self.conv_dim or len(st) != self.conv_dim:
                raise FieldError(f"architecture stage {s}: kernel {k} / stride {st} must have {self.conv_dim} entries")
            if any(x < 1 or x % 2 == 0 for x in k):
                raise FieldError(f"architecture stage {s}: kernel sizes must be odd and >= 1, got {k}")
            if any(x < 1 for x in st):
                raise FieldError(f"architecture stage {s}: strides must be >= 1, got {st}")
        if any(f < 1 for f in self.features_per_stage):
            raise FieldError(f"architecture.features_per_stage must be positive, got {self.features_per_stage}")
        if any(not 0 <= s < n for s in self.attention_stages) or self.attention_heads < 1:
            raise FieldError(f"architecture.attention_stages must be stages in [0, {n}) and attention_heads >= 1, "
                             f"got {list(self.attention_stages)} and {self.attention_heads}")

    @property
    def pooling_per_axis(self) -> tuple[int, ...]:
        """How many times each axis is downsampled (by 2) through the encoder."""
        return tuple(sum(1 for st in self.strides if st[a] > 1) for a in range(self.conv_dim))

    @property
    def shape_divisor(self) -> tuple[int, ...]:
        """Every input size must be a multiple of this, per axis (product of the strides)."""
        return tuple(math.prod(st[a] for st in self.strides) for a in range(self.conv_dim))

    def to_dict(self) -> dict[str, Any]:
        attention = ({"attention_stages": list(self.attention_stages), "attention_heads": self.attention_heads}
                     if self.attention_stages else {})
        return {
            "network_class": self.network_class,
            "n_stages": self.n_stages,
            "features_per_stage": list(self.features_per_stage),
            "kernel_sizes": [list(k) for k in self.kernel_sizes],
            "strides": [list(s) for s in self.strides],
            "n_conv_per_stage": list(self.n_conv_per_stage),
            "n_conv_per_stage_decoder": list(self.n_conv_per_stage_decoder),
            "conv_bias": self.conv_bias,
            "norm": self.norm,
            "nonlin": self.nonlin,
            "conv_dim": self.conv_dim,
        } | attention

    @classmethod
    def from_dict(cls, d: dict, where: str = "architecture") -> "ArchitectureSpec":
        check_known_keys(d, cls, where)
        dim = int(d.get("conv_dim", 3))
        return cls(
            network_class=str(d.get("network_class", "PlainConvUNet")),
            n_stages=int(take(d, "n_stages", where)),
            features_per_stage=ints(take(d, "features_per_stage", where), f"{where}.features_per_stage", None),
            kernel_sizes=tuple(ints(k, f"{where}.kernel_sizes", dim) for k in take(d, "kernel_sizes", where)),
            strides=tuple(ints(s, f"{where}.strides", dim) for s in take(d, "strides", where)),
            n_conv_per_stage=ints(take(d, "n_conv_per_stage", where), f"{where}.n_conv_per_stage", None),
            n_conv_per_stage_decoder=ints(take(d, "n_conv_per_stage_decoder", where),
                                           f"{where}.n_conv_per_stage_decoder", None),
            conv_bias=bool(d.get("conv_bias", True)),
            norm=str(d.get("norm", "instance")),
            nonlin=str(d.get("nonlin", "leaky_relu")),
            conv_dim=dim,
            attention_stages=ints(d.get("attention_stages", []), f"{where}.attention_stages", None),
            attention_heads=int(d.get("attention_heads", 1)),
        )
