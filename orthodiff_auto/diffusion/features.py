"""Features of the frozen (EMA) denoiser: a named block's output, globally average-pooled, for an input noised
at a fixed timestep with a fixed noise.

``orthodiff probe`` compares timesteps and blocks with these features; the frozen-feature classifier
(``classification.diffusion_reader``) uses the pair the probe chose. Both read the denoiser from the pretraining run's
``checkpoint_final.pt`` (the EMA weights in its extras: the exported encoder alone lacks the timestep
conditioning and the decoder).

Blocks are named by their module path in ``Denoiser``: ``encoder.stages.<i>`` and ``decoder.stages.<i>``. A
hook reads a stage's output before its FiLM conditioning; FiLM is a per-channel affine map that depends on t
only, so after pooling and per-feature standardisation (probe and classifier both standardise) the two are
the same features.

The noise is one fixed volume drawn from ``noise_seed`` on the CPU (identical on every device), the same for
every case and timestep, so a case's features are a deterministic function of its image: training, the
probe and inference on new cases compute the very same features.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from orthodiff_auto.diffusion.denoiser import Denoiser
from orthodiff_auto.diffusion.orthodiffusion_features import (
    authors_candidate_blocks,
    authors_denoiser,
    authors_required_prefixes,
    imported_denoiser,
    is_authors_architecture,
)
from orthodiff_auto.diffusion.schedule import make_alphas_cumprod, q_sample
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.orthodiffusion.unet import OrthoDiffusionUNet
from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.training.checkpoint import load_checkpoint
from orthodiff_auto.training.pretrained import read_encoder_checkpoint

DENOISER_CHECKPOINT = "checkpoint_final.pt"
DEFAULT_NOISE_SEED = 0


class _Stop(Exception):
    """Raised by a hook once every requested block has run: the rest of the forward pass is not needed."""


# ---------------------------------------------------------------- the frozen denoiser

@dataclass
class FrozenDenoiser:
    """The EMA denoiser of a pretraining run, frozen, with the schedule it was trained under."""

    model: Denoiser
    architecture: ArchitectureSpec
    schedule: str
    timesteps: int
    alphas_cumprod: torch.Tensor
    checkpoint: Path  # the pretraining checkpoint the weights come from
    encoder_checkpoint: Path  # the exported encoder of the same run
    encoder_sha256: str
    iterations: int


def candidate_blocks(model: Denoiser) -> list[str]:
    """Module paths of every encoder stage, then every decoder stage (shallow to deep, deep to shallow); for
    the OrthoDiffusion authors' U-Net every input, middle and output block."""
    if isinstance(model, OrthoDiffusionUNet):
        return authors_candidate_blocks(model)
    return ([f"encoder.stages.{i}" for i in range(len(model.encoder.stages))]
            + [f"decoder.stages.{i}" for i in range(len(model.decoder.stages))])


def required_prefixes(block: str) -> list[str]:
    """State-dict prefixes a forward pass up to ``block`` uses (what a classifier has to keep)."""
    authors = authors_required_prefixes(block)
    if authors is not None:
        return authors
    kind, _, index = block.rpartition(".")
    if kind not in ("encoder.stages", "decoder.stages") or not index.isdigit():
        raise UserInputError(f"block {block!r}: expected encoder.stages.<i> or decoder.stages.<i>")
    i = int(index)
    if kind == "encoder.stages":
        return ["time_mlp."] + [f"encoder.stages.{k}." for k in range(i + 1)] + [f"film_encoder.{k}." for k in range(i)]
    return (["time_mlp.", "encoder.", "film_encoder."]
            + [f"decoder.{part}.{k}." for k in range(i + 1) for part in ("transpconvs", "stages")]
            + [f"film_decoder.{k}." for k in range(i)])


def truncated_state(model: Denoiser, block: str) -> dict[str, torch.Tensor]:
    """The weights a forward pass up to ``block`` needs (CPU copies); ``denoiser_from_state`` rebuilds it."""
    prefixes = required_prefixes(block)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(tuple(prefixes))}


def denoiser_from_state(architecture: Mapping[str, Any], state: Mapping[str, torch.Tensor],
                        block: str | None = None, where: str = "checkpoint") -> Denoiser:
    """A frozen ``Denoiser`` with ``state`` loaded; with ``block``, ``state`` may hold only what reaching that
    block needs (the rest keeps its random initialisation and is never run: the forward stops at the block)."""
    try:
        spec = ArchitectureSpec.from_dict(dict(architecture))
    except (KeyError, TypeError, ValueError) as e:  # FieldError is a ValueError
        raise UserInputError(f"{where}: invalid denoiser architecture ({e})") from None
    if is_authors_architecture(spec):
        return authors_denoiser(spec, state, block, where)
    model = Denoiser(spec)
    missing, unexpected = model.load_state_dict(dict(state), strict=False)
    needed = tuple(required_prefixes(block)) if block else ("",)
    missing = [k for k in missing if k.startswith(needed)]
    if missing or unexpected:
        raise UserInputError(f"{where}: denoiser weights do not fit the architecture (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
    return model.eval().requires_grad_(False)


def load_frozen_denoiser(pretrain_dir: Path | str, view: str) -> FrozenDenoiser:
    """The EMA denoiser of ``orthodiff pretrain``'s run in ``pretrain_dir`` (or of an imported OrthoDiffusion
    bundle's view folder, whose encoder file carries the whole denoiser); UserInputError naming the file when
    the view was not pretrained or the files do not belong together."""
    pretrain_dir = Path(pretrain_dir)
    path, encoder_path = pretrain_dir / DENOISER_CHECKPOINT, pretrain_dir / f"encoder_{view}.pt"
    if not path.is_file() and encoder_path.is_file():
        imported = imported_denoiser(encoder_path)
        if imported is not None:
            model, encoder = imported
            schedule, timesteps = str(encoder["diffusion"]["schedule"]), int(encoder["diffusion"]["timesteps"])
            return FrozenDenoiser(model, model.spec, schedule, timesteps,
                                  make_alphas_cumprod(schedule, timesteps).float(), encoder_path, encoder_path,
                                  str(encoder["sha256"]), int(encoder.get("iterations", 0)))
    for p in (path, encoder_path):
        if not p.is_file():
            raise UserInputError(f"{p}: not found — view {view!r} was not pretrained; run `orthodiff pretrain "
                                 f"PREPROCESSED_DIR {view}` first")
    extras = load_checkpoint(path).get("extras") or {}
    ema = (extras.get("ema") or {}).get("model")
    if ema is None or "architecture" not in extras or "diffusion_plan" not in extras:
        raise UserInputError(f"{path}: not a diffusion pretraining checkpoint (no EMA weights or diffusion plan)")
    model = denoiser_from_state(extras["architecture"], ema, where=str(path))
    encoder = read_encoder_checkpoint(encoder_path)
    # the probe records the encoder's hash; it must describe these very weights
    if any(not torch.equal(v.cpu(), ema.get("encoder." + k, torch.empty(0))) for k, v in encoder["state_dict"].items()):
        raise UserInputError(f"{encoder_path}: does not hold the EMA encoder of {path} (exported from another run?); "
                             f"run `orthodiff pretrain ... {view} --continue` to export it again")
    plan = extras["diffusion_plan"]
    return FrozenDenoiser(model, model.spec, str(plan["schedule"]), int(plan["timesteps"]),
                          make_alphas_cumprod(plan["schedule"], int(plan["timesteps"])).float(), path, encoder_path,
                          str(encoder["sha256"]), int(encoder.get("iterations", 0)))


# ---------------------------------------------------------------- inputs

def fixed_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """Standard normal noise of ``shape`` from a CPU generator seeded with ``seed`` (same values everywhere)."""
    return torch.randn(tuple(int(s) for s in shape), generator=torch.Generator().manual_seed(int(seed)))


def pad_to_divisor(x: torch.Tensor, divisor: Sequence[int]) -> torch.Tensor:
    """(B, C, *spatial) centre-padded with 0 (the normalised background) to a multiple of ``divisor`` per axis:
    the U-Net's skips only line up on such sizes (classification inputs already are, under the planner)."""
    pad: list[int] = []
    for n, d in zip(reversed(x.shape[2:]), reversed(tuple(divisor))):
        extra = -n % d
        pad += [extra // 2, extra - extra // 2]
    return F.pad(x, pad) if any(pad) else x


def noised(x0: torch.Tensor, t: int, noise_seed: int, alphas_cumprod: torch.Tensor, divisor: Sequence[int]):
    """x_t of a batch of clean inputs (padded to ``divisor``) at timestep ``t`` with the fixed noise."""
    x0 = pad_to_divisor(x0, divisor)
    noise = fixed_noise(x0.shape[1:], noise_seed).to(x0.device, x0.dtype).expand_as(x0)
    tt = torch.full((x0.shape[0],), int(t), dtype=torch.long, device=x0.device)
    return q_sample(x0, tt, noise, alphas_cumprod.to(x0.device)), tt


# ---------------------------------------------------------------- pooled block outputs

@torch.no_grad()
def pooled_block_outputs(model: Denoiser, x_t: torch.Tensor, t: torch.Tensor,
                         blocks: Iterable[str], pool: bool = True) -> dict[str, torch.Tensor]:
    """{block: (B, C) float32}: each named module's output averaged over its spatial axes (``pool``; else the
    whole map (B, C, *spatial)), from one forward pass that stops as soon as the last of them has run."""
    wanted = list(dict.fromkeys(blocks))
    modules = dict(model.named_modules())
    unknown = [b for b in wanted if b not in modules]
    if unknown:
        raise UserInputError(f"unknown blocks {unknown}; choose from {candidate_blocks(model)}")
    pooled: dict[str, torch.Tensor] = {}

    def hook(name):
        def read(_module, _inputs, output):
            pooled[name] = output.float().mean(dim=tuple(range(2, output.ndim))) if pool else output.float()
            if len(pooled) == len(wanted):
                raise _Stop

        return read

    handles = [modules[b].register_forward_hook(hook(b)) for b in wanted]
    try:
        with contextlib.suppress(_Stop):
            model(x_t, t)
    finally:
        for h in handles:
            h.remove()
    silent = [b for b in wanted if b not in pooled]
    if silent:
        raise UserInputError(f"blocks {silent} take no part in the denoiser's forward pass; choose from "
                             f"{candidate_blocks(model)}")
    return {b: pooled[b] for b in wanted}


POOLINGS = ("attention", "mean")


class BlockFeatures(nn.Module):
    """x_0 (B, 1, *size) -> the frozen denoiser's ``block`` output at timestep ``timestep``: (B, C) averaged over
    space (``pooling`` "mean"), or the map (B, C, *spatial) for a head that pools it itself ("attention")."""

    def __init__(self, denoiser: Denoiser, alphas_cumprod: torch.Tensor, timestep: int, block: str, noise_seed: int,
                 pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise UserInputError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        self.denoiser = denoiser.eval().requires_grad_(False)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float().clone(), persistent=False)
        self.timestep, self.block, self.noise_seed = int(timestep), block, int(noise_seed)
        self.pooling = pooling

    def train(self, mode: bool = True) -> "BlockFeatures":
        return super().train(False)  # frozen: normalisation layers always in eval mode

    @torch.no_grad()
    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x_t, t = noised(x0, self.timestep, self.noise_seed, self.alphas_cumprod, self.denoiser.spec.shape_divisor)
        return pooled_block_outputs(self.denoiser, x_t, t, [self.block], pool=self.pooling == "mean")[self.block]


__all__ = [
    "BlockFeatures", "DEFAULT_NOISE_SEED", "POOLINGS", "DENOISER_CHECKPOINT", "FrozenDenoiser", "candidate_blocks",
    "denoiser_from_state", "fixed_noise", "load_frozen_denoiser", "noised", "pad_to_divisor", "pooled_block_outputs",
    "required_prefixes", "truncated_state",
]
