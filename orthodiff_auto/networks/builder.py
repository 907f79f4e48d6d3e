"""Build dynamic-network-architectures networks from an ``ArchitectureSpec`` (plans alone suffice).

- ``build_segmentation_network`` gives dna's ``PlainConvUNet`` exactly as nnU-Net builds it
  (instance norm with affine, LeakyReLU, He init with neg. slope 1e-2).
- ``build_encoder`` gives the ``PlainConvEncoder`` that ``PlainConvUNet(...).encoder`` would be, with the same
  constructor arguments, so its ``state_dict`` keys and shapes are identical to ``unet.encoder.state_dict()``:
  weights trained by diffusion pretraining (on the encoder) load one-to-one into the segmentation U-Net's
  encoder and into the classifier's encoder.

Input sizes: every spatial size fed to these networks must be a multiple of ``spec.shape_divisor``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.registry import get_network_class
from orthodiff_auto.networks.spec import ArchitectureSpec

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

NORMS = ("instance", "batch", "none")
NONLINS = ("leaky_relu", "relu", "gelu")


def _ops(spec: "ArchitectureSpec") -> dict[str, Any]:
    """The torch-typed keyword arguments shared by the U-Net and its encoder."""
    from torch import nn  # only when a network is built: importing this package does not import torch

    if spec.conv_dim not in (2, 3):
        raise UserInputError(f"architecture conv_dim must be 2 or 3, got {spec.conv_dim}")
    conv_op = nn.Conv3d if spec.conv_dim == 3 else nn.Conv2d
    if spec.norm == "instance":
        norm_op = nn.InstanceNorm3d if spec.conv_dim == 3 else nn.InstanceNorm2d
        norm_kwargs = {"eps": 1e-5, "affine": True}
    elif spec.norm == "batch":
        norm_op = nn.BatchNorm3d if spec.conv_dim == 3 else nn.BatchNorm2d
        norm_kwargs = {"eps": 1e-5, "affine": True}
    elif spec.norm == "none":
        norm_op, norm_kwargs = None, None
    else:
        raise UserInputError(f"unknown norm {spec.norm!r}; known: {list(NORMS)}")
    if spec.nonlin == "leaky_relu":
        nonlin, nonlin_kwargs = nn.LeakyReLU, {"inplace": True}
    elif spec.nonlin == "relu":
        nonlin, nonlin_kwargs = nn.ReLU, {"inplace": True}
    elif spec.nonlin == "gelu":
        nonlin, nonlin_kwargs = nn.GELU, {}
    else:
        raise UserInputError(f"unknown nonlin {spec.nonlin!r}; known: {list(NONLINS)}")
    return dict(
        conv_op=conv_op,
        norm_op=norm_op,
        norm_op_kwargs=norm_kwargs,
        dropout_op=None,
        dropout_op_kwargs=None,
        nonlin=nonlin,
        nonlin_kwargs=nonlin_kwargs,
    )


def _he_init(module: "nn.Module") -> None:
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He  # imports torch: see _ops

    module.apply(InitWeights_He(1e-2))


def build_segmentation_network(
    arch_spec: "ArchitectureSpec",
    num_input_channels: int,
    num_classes: int,
    deep_supervision: bool = True,
    initialize: bool = True,
) -> "nn.Module":
    """The U-Net described by ``arch_spec`` with ``num_classes`` output channels (logits, background included).

    With ``deep_supervision`` the forward pass returns a list of logits, full resolution first, one per decoder
    stage; otherwise a single tensor. The deep-supervision heads exist either way, so weights load in both modes.
    ``initialize=False`` skips weight init (e.g. when building on the meta device or before loading weights).
    """
    cls = get_network_class(arch_spec.network_class)
    if hasattr(cls, "from_spec"):  # a registered class that reads the spec itself (not dna's kwargs)
        return cls.from_spec(arch_spec, int(num_input_channels), int(num_classes), deep_supervision)
    net = cls(
        input_channels=int(num_input_channels),
        n_stages=arch_spec.n_stages,
        features_per_stage=list(arch_spec.features_per_stage),
        kernel_sizes=[list(k) for k in arch_spec.kernel_sizes],
        strides=[list(s) for s in arch_spec.strides],
        n_conv_per_stage=list(arch_spec.n_conv_per_stage),
        num_classes=int(num_classes),
        n_conv_per_stage_decoder=list(arch_spec.n_conv_per_stage_decoder),
        conv_bias=arch_spec.conv_bias,
        deep_supervision=deep_supervision,
        **_ops(arch_spec),
    )
    if initialize:
        _he_init(net)
    return net


def build_encoder(
    arch_spec: "ArchitectureSpec",
    num_input_channels: int,
    return_skips: bool = True,
    initialize: bool = True,
) -> "nn.Module":
    """The encoder of the U-Net described by ``arch_spec``: same class, arguments and parameter names as
    ``build_segmentation_network(arch_spec, ...).encoder``.

    ``return_skips=True`` (as inside the U-Net): forward returns the list of every stage's output, bottleneck
    last; ``False``: only the bottleneck feature map (what a classifier head pools). The flag changes no weights.
    Its ``output_channels`` lists the features per stage.
    """
    cls = get_network_class(arch_spec.network_class)
    if hasattr(cls, "encoder_from_spec"):  # a registered class that builds its own encoder
        return cls.encoder_from_spec(arch_spec, int(num_input_channels), return_skips)
    if arch_spec.network_class != "PlainConvUNet":
        encoder = build_segmentation_network(arch_spec, num_input_channels, 2, False, initialize).encoder
        encoder.return_skips = return_skips
        return encoder
    from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder  # see _ops

    ops = _ops(arch_spec)
    encoder = PlainConvEncoder(
        int(num_input_channels),
        arch_spec.n_stages,
        list(arch_spec.features_per_stage),
        ops["conv_op"],
        [list(k) for k in arch_spec.kernel_sizes],
        [list(s) for s in arch_spec.strides],
        list(arch_spec.n_conv_per_stage),
        arch_spec.conv_bias,
        ops["norm_op"],
        ops["norm_op_kwargs"],
        ops["dropout_op"],
        ops["dropout_op_kwargs"],
        ops["nonlin"],
        ops["nonlin_kwargs"],
        return_skips=return_skips,
        nonlin_first=False,
    )
    if initialize:
        _he_init(encoder)
    return encoder
