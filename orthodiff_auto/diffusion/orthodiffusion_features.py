"""Reading features of the OrthoDiffusion authors' denoiser as ``diffusion.features`` reads our own: an imported
bundle's encoder file (``diffusion.orthodiffusion_import``) carries the whole network (``state_dict`` +
``decoder_state_dict``), so its view folder serves as the pretraining folder of the frozen-feature classifiers
and the probe.

Blocks are module paths here too: ``input_blocks.<i>``, ``middle_block.<i>``, ``output_blocks.<i>`` (the authors'
``in_<i>``, ``mid_<i>``, ``out_<i>``; ``networks.orthodiffusion.unet.block_module`` maps their names).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import torch

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.orthodiffusion.unet import (
    NETWORK_CLASS,
    HyperParameterError,
    OrthoDiffusionHyperParameters,
    OrthoDiffusionUNet,
    block_module,
    block_names,
)
from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.training.pretrained import read_encoder_checkpoint
from orthodiff_auto.utils.archive import sha256_of
from orthodiff_auto.utils.atomic import atomic_path

BLOCK_KINDS = ("input_blocks", "middle_block", "output_blocks")


def is_authors_architecture(spec: ArchitectureSpec) -> bool:
    return spec.network_class == NETWORK_CLASS


def authors_candidate_blocks(model: OrthoDiffusionUNet) -> list[str]:
    return [block_module(name) for name in block_names(model)]


def authors_required_prefixes(block: str) -> list[str] | None:
    """State-dict prefixes a forward pass up to ``block`` uses; None when ``block`` is not one of theirs."""
    kind, _, index = block.rpartition(".")
    if kind not in BLOCK_KINDS or not index.isdigit():
        return None
    i = int(index)
    if kind == "input_blocks":
        return ["time_embed."] + [f"input_blocks.{k}." for k in range(i + 1)]
    if kind == "middle_block":
        return ["time_embed.", "input_blocks.", "middle_block."]
    return ["time_embed.", "input_blocks.", "middle_block."] + [f"output_blocks.{k}." for k in range(i + 1)]


def authors_denoiser(spec: ArchitectureSpec, state: Mapping[str, torch.Tensor], block: str | None,
                     where: str) -> OrthoDiffusionUNet:
    """Their U-Net with ``state`` loaded (with ``block``: only what reaching it needs), frozen."""
    try:
        model = OrthoDiffusionUNet(OrthoDiffusionHyperParameters.from_spec(spec))
    except HyperParameterError as e:
        raise UserInputError(f"{where}: {e}") from None
    missing, unexpected = model.load_state_dict(dict(state), strict=False)
    needed = tuple((authors_required_prefixes(block) or [""]) if block else [""])
    missing = [k for k in missing if k.startswith(needed)]
    if missing or unexpected:
        raise UserInputError(f"{where}: denoiser weights do not fit the architecture (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
    return model.eval().requires_grad_(False)


def imported_denoiser(encoder_path: Path) -> tuple[OrthoDiffusionUNet, dict[str, Any]] | None:
    """(their whole U-Net, the encoder file as read) from an imported bundle's encoder file; None when the file
    does not carry a whole denoiser (an encoder exported by our own pretraining)."""
    ckpt = read_encoder_checkpoint(encoder_path)
    if "decoder_state_dict" not in ckpt:
        return None
    spec = ArchitectureSpec.from_dict(dict(ckpt["architecture"]))
    state = {**ckpt["state_dict"], **ckpt["decoder_state_dict"]}
    return authors_denoiser(spec, state, None, str(encoder_path)), ckpt


def carries_denoiser(encoder_path: Path) -> bool:
    """Whether an encoder file carries its whole denoiser (an imported OrthoDiffusion bundle's does)."""
    return "decoder_state_dict" in read_encoder_checkpoint(encoder_path)


def stage_imported_denoiser(encoder_path: Path, pretrain_dir: Path) -> bool:
    """Copy an imported bundle's encoder file (with its whole denoiser) into this dataset's pretraining folder
    (RESULTS/pretrain/VIEW), where the probe and the frozen-feature classifiers read a denoiser and write what
    they choose for this dataset; the bundle itself stays untouched. False (nothing copied) for a file without
    a denoiser. A copy with the same bytes is kept (its time too, so what was trained from it stays current)."""
    if not carries_denoiser(encoder_path):
        return False
    target = pretrain_dir / encoder_path.name
    if target.is_file() and sha256_of(target) == sha256_of(encoder_path):
        return True
    pretrain_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copy2(encoder_path, tmp)
    return True


def default_reading(encoder_path: Path) -> tuple[int, str]:
    """(timestep, block module path) the authors read features at by default, as the imported file records."""
    reading = read_encoder_checkpoint(encoder_path).get("reading") or {}
    if "timestep" not in reading or "block" not in reading:
        raise UserInputError(f"{encoder_path}: records no default reading (not imported from OrthoDiffusion)")
    return int(reading["timestep"]), block_module(str(reading["block"]))


__all__ = ["BLOCK_KINDS", "authors_candidate_blocks", "authors_denoiser", "authors_required_prefixes",
           "carries_denoiser", "default_reading", "imported_denoiser", "is_authors_architecture",
           "stage_imported_denoiser"]
