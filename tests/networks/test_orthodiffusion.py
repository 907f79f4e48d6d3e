"""The OrthoDiffusion authors' U-Net: every parameter name and shape of their checkpoints at full width, the
hyper-parameters read back off a state dict, and known answers that catch a wrong wiring."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from orthodiff_auto.networks.builder import build_encoder, build_segmentation_network
from orthodiff_auto.networks.orthodiffusion.blocks import AttentionBlock, ResBlock, timestep_embedding
from orthodiff_auto.networks.orthodiffusion.state import infer_hyper_parameters
from orthodiff_auto.networks.orthodiffusion.unet import (
    HyperParameterError,
    OrthoDiffusionHyperParameters,
    OrthoDiffusionUNet,
    block_module,
    block_names,
)
from orthodiff_auto.networks.spec import ArchitectureSpec

SMALL = OrthoDiffusionHyperParameters(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                                      attention_levels=(2,))


def _res(prefix: str, cin: int, cout: int, emb: int) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.in_layers.0.weight": (cin,), f"{prefix}.in_layers.0.bias": (cin,),
            f"{prefix}.in_layers.2.weight": (cout, cin, 3, 3, 3), f"{prefix}.in_layers.2.bias": (cout,),
            f"{prefix}.emb_layers.1.weight": (cout, emb), f"{prefix}.emb_layers.1.bias": (cout,),
            f"{prefix}.out_layers.0.weight": (cout,), f"{prefix}.out_layers.0.bias": (cout,),
            f"{prefix}.out_layers.3.weight": (cout, cout, 3, 3, 3), f"{prefix}.out_layers.3.bias": (cout,)}
    if cin != cout:
        keys |= {f"{prefix}.skip_connection.weight": (cout, cin, 1, 1, 1), f"{prefix}.skip_connection.bias": (cout,)}
    return keys


def _attn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.norm.weight": (c,), f"{prefix}.norm.bias": (c,), f"{prefix}.qkv.weight": (3 * c, c, 1),
            f"{prefix}.qkv.bias": (3 * c,), f"{prefix}.proj_out.weight": (c, c, 1), f"{prefix}.proj_out.bias": (c,)}


def authors_keys_at_full_width() -> dict[str, tuple[int, ...]]:
    """The network keys of the authors' create_model(256, 64, 1) (their checkpoints, ``denoise_fn.`` removed),
    written out level by level from their module tree: widths 64, 64, 128, 128, 256, attention at level 4."""
    widths, emb = [64, 64, 128, 128, 256], 256
    keys = {"time_embed.0.weight": (emb, 64), "time_embed.0.bias": (emb,), "time_embed.2.weight": (emb, emb),
            "time_embed.2.bias": (emb,), "input_blocks.0.0.weight": (64, 1, 3, 3, 3), "input_blocks.0.0.bias": (64,)}
    # input blocks: 1 res(+attn) per level, then a downsampling: indices 1, 2 | 3, 4 | 5, 6 | 7, 8 | 9
    ch, skips = 64, [64]
    for level, w in enumerate(widths):
        i = 1 + 2 * level
        keys |= _res(f"input_blocks.{i}.0", ch, w, emb) | (_attn(f"input_blocks.{i}.1", w) if level == 4 else {})
        ch = w
        skips.append(w)
        if level < 4:
            keys |= {f"input_blocks.{i + 1}.0.op.weight": (w, w, 3, 3, 3), f"input_blocks.{i + 1}.0.op.bias": (w,)}
            skips.append(w)
    keys |= _res("middle_block.0", 256, 256, emb) | _attn("middle_block.1", 256) | _res("middle_block.2", 256, 256, emb)
    k = 0
    for level in reversed(range(5)):
        for i in range(2):
            w = widths[level]
            keys |= _res(f"output_blocks.{k}.0", ch + skips.pop(), w, emb)
            ch = w
            n = 1
            if level == 4:
                keys |= _attn(f"output_blocks.{k}.1", w)
                n = 2
            if level and i == 1:
                keys |= {f"output_blocks.{k}.{n}.conv.weight": (w, w, 3, 3, 3), f"output_blocks.{k}.{n}.conv.bias": (w,)}
            k += 1
    keys |= {"out.0.weight": (64,), "out.0.bias": (64,), "out.2.weight": (1, 64, 3, 3, 3), "out.2.bias": (1,)}
    return keys


def test_full_width_network_has_every_key_and_shape_of_the_authors_checkpoints():
    hp = OrthoDiffusionHyperParameters.authors_defaults(256)
    assert hp.widths == (64, 64, 128, 128, 256) and hp.attention_levels == (4,)
    with torch.device("meta"):
        net = OrthoDiffusionUNet(hp)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == authors_keys_at_full_width()
    assert sum(p.numel() for p in net.parameters()) == 34_524_545  # 34.5 M, as their 4 copies per file suggest
    assert infer_hyper_parameters(net.state_dict()) == hp


def test_hyper_parameters_are_read_off_the_weights_and_stated_ones_checked():
    state = OrthoDiffusionUNet(SMALL).state_dict()
    assert infer_hyper_parameters(state) == SMALL
    assert infer_hyper_parameters(state, model_channels=32, channel_mult=[1, 2, 2]) == SMALL
    with pytest.raises(HyperParameterError, match="model_channels stated 64, weights say 32"):
        infer_hyper_parameters(state, model_channels=64)
    with pytest.raises(HyperParameterError, match="time_embed.0.weight"):
        infer_hyper_parameters({k: v for k, v in state.items() if not k.startswith("time_embed")})
    assert OrthoDiffusionHyperParameters.from_spec(ArchitectureSpec.from_dict(SMALL.to_spec().to_dict())) == SMALL


def test_timestep_embedding_uses_max_period_1000():
    t = torch.tensor([7.0])
    expected = torch.tensor([[math.cos(7), math.cos(7 / 1000 ** 0.5), math.sin(7), math.sin(7 / 1000 ** 0.5)]])
    assert torch.allclose(timestep_embedding(t, 4), expected, atol=1e-6)


def test_attention_block_on_constructed_weights():
    """q = k = 0 makes attention uniform; v = the normalised input and proj_out = identity give
    x + (spatial mean of the group-normalised x). Two heads, qkv rows in their legacy order (per head q | k | v):
    another order would read zeros or keys as values."""
    block = AttentionBlock(64, num_heads=2)
    with torch.no_grad():
        block.qkv.weight.zero_()
        block.qkv.bias.zero_()
        block.qkv.weight[64:96, :32, 0] = torch.eye(32)  # head 0: rows 0-31 q, 32-63 k, 64-95 v
        block.qkv.weight[160:192, 32:, 0] = torch.eye(32)  # head 1: rows 96-127 q, 128-159 k, 160-191 v
        block.proj_out.weight[:, :, 0] = torch.eye(64)
        block.proj_out.bias.zero_()
    x = torch.randn(2, 64, 2, 3, 4) + torch.arange(64.0).reshape(1, 64, 1, 1, 1)  # groups of 2 channels
    shift = F.group_norm(x, 32, eps=1e-5).mean(dim=(2, 3, 4), keepdim=True)
    assert shift.abs().max() > 0.5
    assert torch.allclose(block(x), x + shift, atol=1e-5)


def test_res_block_adds_the_timestep_embedding_before_the_second_half():
    """Constant first conv (bias only) + the embedding's bias, normalised to 0 by the second norm: the output is
    the 1x1x1 skip of x plus the last conv's bias, whatever the first half computes; a non-constant first half
    (a changed embedding per voxel) would not vanish."""
    block = ResBlock(32, 8, 64)
    with torch.no_grad():
        block.in_layers[2].weight.zero_()
        block.out_layers[3].weight.zero_()
    x = torch.randn(1, 32, 2, 2, 2)
    expected = block.skip_connection(x) + block.out_layers[3].bias.reshape(1, -1, 1, 1, 1)
    assert torch.allclose(block(x, torch.randn(1, 8)), expected, atol=1e-5)


def test_named_blocks_and_the_encoder_read_the_full_network():
    torch.manual_seed(0)
    full = OrthoDiffusionUNet(SMALL).eval()
    assert block_module("mid_2") == "middle_block.2" and block_module("in_3") == "input_blocks.3"
    assert block_names(full)[:2] == ["in_0", "in_1"] and "out_5" in block_names(full)
    enc = build_encoder(SMALL.to_spec(), 1, return_skips=True).eval()
    assert enc.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith(("output", "out."))})
    x, t = torch.randn(1, 1, 8, 16, 16), torch.tensor([0])
    acts = {}
    for name in ("in_1", "in_3", "mid_2"):
        dict(full.named_modules())[block_module(name)].register_forward_hook(
            lambda m, i, o, name=name: acts.__setitem__(name, o))
    with torch.no_grad():
        full(x, t)
        skips = enc(x)
    # a level's output is its last residual block; the deepest level's is the middle block's (mid_2)
    assert [s.shape[1] for s in skips] == [32, 64, 64]
    for skip, name in zip(skips, ("in_1", "in_3", "mid_2")):
        assert torch.equal(skip, acts[name])


def test_segmentation_network_from_the_registry_outputs_every_level():
    seg = build_segmentation_network(SMALL.to_spec(), 1, 3, deep_supervision=True)
    outputs = seg(torch.randn(1, 1, 8, 16, 16))
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 8, 16, 16), (1, 3, 4, 8, 8)]
    assert seg.compute_conv_feature_map_size([8, 16, 16]) > 0
    assert set(seg.encoder.state_dict()) <= set(OrthoDiffusionUNet(SMALL).state_dict())


def test_attention_block_is_scaled_dot_product_attention_per_head():
    """q = k = v = the normalised input (per head, legacy row order): torch's own scaled dot-product attention
    over the voxels, heads taking consecutive channel groups, is the reference."""
    block = AttentionBlock(64, num_heads=2)
    with torch.no_grad():
        block.qkv.weight.zero_()
        block.qkv.bias.zero_()
        for head in range(2):
            for part in range(3):  # q, k, v of this head read its 32 channels
                rows = slice(96 * head + 32 * part, 96 * head + 32 * (part + 1))
                block.qkv.weight[rows, 32 * head:32 * (head + 1), 0] = torch.eye(32)
        block.proj_out.weight[:, :, 0] = torch.eye(64)
        block.proj_out.bias.zero_()
    x = torch.randn(1, 64, 2, 3, 4)
    tokens = F.group_norm(x, 32, eps=1e-5).reshape(1, 2, 32, -1).transpose(2, 3)  # (B, heads, N, ch)
    attended = F.scaled_dot_product_attention(tokens, tokens, tokens).transpose(2, 3).reshape(x.shape)
    assert torch.allclose(block(x), x + attended, atol=1e-5)
