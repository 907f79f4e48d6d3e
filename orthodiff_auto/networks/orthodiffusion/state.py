"""The authors' U-Net hyper-parameters read off a state dict: widths from weight shapes, levels, residual blocks
and attention from the key structure. What shapes cannot tell (the number of attention heads) is stated, and
every stated value is checked against what the weights say."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any, Mapping

from orthodiff_auto.networks.orthodiffusion.unet import HyperParameterError, OrthoDiffusionHyperParameters

_INPUT_BLOCK = re.compile(r"^input_blocks\.(\d+)\.")


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in state:
        raise HyperParameterError(f"not the OrthoDiffusion U-Net: no {key!r} in the weights")
    return tuple(state[key].shape)


def _input_block_kinds(state: Mapping[str, Any]) -> list[str]:
    """'res', 'res+attn' or 'down' for input_blocks 1, 2, ... in order."""
    count = 1 + max((int(m.group(1)) for k in state if (m := _INPUT_BLOCK.match(k))), default=0)
    kinds = []
    for i in range(1, count):
        if f"input_blocks.{i}.0.op.weight" in state:
            kinds.append("down")
        elif f"input_blocks.{i}.0.in_layers.2.weight" in state:
            kinds.append("res+attn" if f"input_blocks.{i}.1.qkv.weight" in state else "res")
        else:
            raise HyperParameterError(f"input_blocks.{i}: neither a residual block nor a strided-convolution "
                                      "downsampling (resblock_updown or pooling variants are not supported)")
    return kinds


def _levels(kinds: list[str]) -> list[list[str]]:
    levels: list[list[str]] = [[]]
    for kind in kinds:
        if kind == "down":
            levels.append([])
        else:
            levels[-1].append(kind)
    if any(not level for level in levels) or len({len(level) for level in levels}) != 1:
        raise HyperParameterError(f"levels with unequal residual blocks {[len(v) for v in levels]}")
    return levels


def infer_hyper_parameters(state: Mapping[str, Any], **stated: Any) -> OrthoDiffusionHyperParameters:
    """The hyper-parameters of the U-Net whose weights are ``state`` (keys without ``denoise_fn.``).

    ``stated`` may name any field (e.g. ``num_heads=1``, which shapes cannot reveal); a stated value the weights
    contradict raises ``HyperParameterError`` naming both."""
    unknown = set(stated) - {f.name for f in fields(OrthoDiffusionHyperParameters)}
    if unknown:
        raise HyperParameterError(f"unknown hyper-parameters {sorted(unknown)}")
    if "label_emb.weight" in state:
        raise HyperParameterError("a class-conditional model (label_emb); only unconditional models are supported")
    emb_out, model_channels = _shape(state, "time_embed.0.weight")
    if emb_out != 4 * model_channels:
        raise HyperParameterError(f"time_embed.0 maps {model_channels} to {emb_out}, expected {4 * model_channels}")
    levels = _levels(_input_block_kinds(state))
    widths, i = [], 1
    for level in levels:
        i += len(level)
        widths.append(_shape(state, f"input_blocks.{i - 1}.0.in_layers.2.weight")[0])
        i += 1  # the downsampling
    if any(w % model_channels for w in widths):
        raise HyperParameterError(f"level widths {widths} are not multiples of {model_channels}")
    if _shape(state, "middle_block.0.emb_layers.1.weight")[0] != widths[-1]:
        raise HyperParameterError("the timestep embedding scales and shifts (use_scale_shift_norm): not supported")
    inferred = OrthoDiffusionHyperParameters(
        model_channels=model_channels, channel_mult=tuple(w // model_channels for w in widths),
        num_res_blocks=len(levels[0]),
        attention_levels=tuple(n for n, level in enumerate(levels) if "res+attn" in level),
        num_heads=int(stated.get("num_heads", 1)),
        in_channels=_shape(state, "input_blocks.0.0.weight")[1], out_channels=_shape(state, "out.2.weight")[0])
    wrong = {k: (v, getattr(inferred, k)) for k, v in stated.items()
             if (tuple(v) if isinstance(v, (list, tuple)) else v) != getattr(inferred, k)}
    if wrong:
        raise HyperParameterError("stated hyper-parameters contradict the weights: " + "; ".join(
            f"{k} stated {v}, weights say {w}" for k, (v, w) in wrong.items()))
    return inferred


__all__ = ["infer_hyper_parameters"]
