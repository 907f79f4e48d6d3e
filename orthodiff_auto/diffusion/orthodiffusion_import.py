"""``orthodiff install_pretrained CHECKPOINT.pt DEST --from orthodiffusion --view sag``: one of the OrthoDiffusion
authors' per-plane diffusion checkpoints as this project's pretrained bundle (``DEST/<view>/encoder_<view>.pt``).

Their checkpoint (``Trainer.save``) is a dict ``{"step", "model", "ema", "opt"}``; ``model`` and ``ema`` are state
dicts of their ``GaussianDiffusion``: the U-Net's weights under ``denoise_fn.`` (``denoise_fn.module.`` when saved
from a DDP wrapper) beside the schedule's buffers. The import

1. loads it with ``weights_only=True`` (a pickled object inside: refused, naming the file);
2. checks the schedule buffers (``betas``, ``alphas_cumprod`` and the q-sampling square roots) against the cosine
   schedule with T=1000 that features are read under;
3. reads the U-Net's hyper-parameters off the weights (``networks.orthodiffusion.state``) and loads them into
   ``networks.orthodiffusion.unet.OrthoDiffusionUNet`` strictly, so a layout we do not know is refused;
4. writes the encoder file: the encoder's weights (``time_embed``, ``input_blocks``, ``middle_block``) as
   ``state_dict``, the rest of the denoiser (``output_blocks``, ``out``) as ``decoder_state_dict`` (features of
   ``out_*`` blocks need it), the architecture, provenance (source file and sha256, step, weights, licence) and an
   adaptation plan: the authors' input grid (centre slices, in-plane size), min-max scaling to [-1, 1] and their
   default reading (t, block).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from orthodiff_auto.diffusion.schedule import cosine_alphas_cumprod
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.orthodiffusion.state import infer_hyper_parameters
from orthodiff_auto.networks.orthodiffusion.unet import HyperParameterError, OrthoDiffusionUNet
from orthodiff_auto.plans.schema import SCHEMA_VERSION
from orthodiff_auto.plans.subplans import NormalizationPlan, ResamplingPlan
from orthodiff_auto.training.checkpoint import save_checkpoint
from orthodiff_auto.training.pretrained import ENCODER_FORMAT
from orthodiff_auto.utils.archive import sha256_of

SOURCE = "OrthoDiffusion (github.com/lt-0123/OrthoDiffusion)"
LICENCE = "MIT (the OrthoDiffusion repository's LICENSE; keep its copyright notice with the weights)"
VIEWS = ("sag", "cor", "ax")
WEIGHTS = ("ema", "model")
TIMESTEPS = 1000
ENCODER_MODULES = ("time_embed.", "input_blocks.", "middle_block.")
PREFIXES = ("denoise_fn.module.", "denoise_fn.")
# the buffers their GaussianDiffusion registers that q-sampling (x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps) uses
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")
# the authors' preprocessing (train.py, dataset.py) and default feature reading (configs/config_linear.yaml)
INPUT_GRID = {"slices": 16, "in_plane": [256, 256]}
DEFAULT_READING = {"timestep": 100, "block": "mid_2"}
# the per-plane reading of their fusion example (linear_fusion.py)
FUSION_READING = {"sag": {"timestep": 200, "block": "mid_0"}, "cor": {"timestep": 150, "block": "mid_0"},
                  "ax": {"timestep": 50, "block": "mid_2"}}


def load_authors_checkpoint(path: Path) -> dict[str, Any]:
    """Their checkpoint dict, loaded without unpickling objects; UserInputError (exit 2) naming the file."""
    if not path.is_file():
        raise UserInputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserInputError(f"{path}: refused: the file holds more than tensors, numbers and the optimizer's "
                             f"state (a pickled object); an OrthoDiffusion checkpoint never does ({e})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise UserInputError(f"{path}: not a readable PyTorch checkpoint ({e})") from None
    if not isinstance(ckpt, dict) or not {"step", "model", "ema"} <= set(ckpt):
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserInputError(f"{path}: not an OrthoDiffusion checkpoint (expected the keys step, model, ema, opt "
                             f"that their Trainer.save writes; found {keys})")
    return ckpt


def split_diffusion_state(state: Mapping[str, Any], where: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(U-Net weights without the prefix, schedule buffers) of a ``GaussianDiffusion`` state dict."""
    network, buffers = {}, {}
    for key, value in state.items():
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            network[key[len(prefix):]] = value
        else:
            buffers[key] = value
    if not network:
        raise UserInputError(f"{where}: no 'denoise_fn.' weights (not a GaussianDiffusion state dict)")
    return network, buffers


def check_schedule(buffers: Mapping[str, Any], where: str) -> None:
    """The buffers must be the cosine schedule with T=1000 (float32 tolerance)."""
    ab = cosine_alphas_cumprod(TIMESTEPS)
    expected = {"alphas_cumprod": ab, "betas": 1 - ab / torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]]),
                "sqrt_alphas_cumprod": ab.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - ab).sqrt()}
    for name in SCHEDULE_BUFFERS:
        value = buffers.get(name)
        if not isinstance(value, torch.Tensor):
            raise UserInputError(f"{where}: the schedule buffer {name!r} is missing")
        if value.shape != (TIMESTEPS,):
            raise UserInputError(f"{where}: {name} has {list(value.shape)} entries; the cosine schedule it was "
                                 f"trained under has T={TIMESTEPS}")
        err = float((value.double() - expected[name]).abs().max())
        if err > 1e-5:
            raise UserInputError(f"{where}: {name} differs from the cosine schedule (T={TIMESTEPS}) by up to "
                                 f"{err:.3g}; features would be read at the wrong noise levels")


def load_network(network: Mapping[str, torch.Tensor], where: str, **stated: Any) -> OrthoDiffusionUNet:
    """The authors' U-Net with these weights, its hyper-parameters read off them (``stated`` checked)."""
    try:
        hp = infer_hyper_parameters(network, **stated)
        model = OrthoDiffusionUNet(hp)
    except HyperParameterError as e:
        raise UserInputError(f"{where}: {e}") from None
    missing, unexpected = model.load_state_dict(dict(network), strict=False)
    own = model.state_dict()
    wrong = [f"{k} {list(v.shape)} vs {list(own[k].shape)}" for k, v in network.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise UserInputError(f"{where}: the weights do not fit the OrthoDiffusion U-Net (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}, shapes {wrong[:3]})")
    return model.eval().requires_grad_(False)


def adaptation_plan(view: str) -> dict[str, Any]:
    """The plan another dataset adopts to feed these weights what they saw: the authors' grid and intensities."""
    normalization = NormalizationPlan("range", False, 0.0, 1.0, 0.0, 0.0)
    return {"input_grid": dict(INPUT_GRID), "normalization": normalization.to_dict(),
            "resampling": ResamplingPlan(image_order=1).to_dict(), "view": view}


def import_orthodiffusion(checkpoint: Path | str, dest: Path | str, view: str, weights: str = "ema",
                          **stated: Any) -> Path:
    """Write ``dest/<view>/encoder_<view>.pt`` from the authors' checkpoint; returns its path."""
    checkpoint, dest = Path(checkpoint), Path(dest)
    if view not in VIEWS or weights not in WEIGHTS:
        raise UserInputError(f"--view must be one of {list(VIEWS)} and --weights one of {list(WEIGHTS)}")
    ckpt = load_authors_checkpoint(checkpoint)
    where = f"{checkpoint} ({weights})"
    network, buffers = split_diffusion_state(ckpt[weights], where)
    check_schedule(buffers, where)
    model = load_network(network, where, **stated)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    encoder = {k: v for k, v in state.items() if k.startswith(ENCODER_MODULES)}
    plan = adaptation_plan(view)
    payload = {
        "format": ENCODER_FORMAT, "view": view, "architecture": model.hp.to_spec().to_dict(),
        "in_channels": model.hp.in_channels, "state_dict": encoder, "encoder_keys": list(encoder),
        "stem_keys": [k for k in encoder if k.startswith("input_blocks.0.")],
        "decoder_state_dict": {k: v for k, v in state.items() if k not in encoder},
        "pretrained_under": {"input_grid": plan["input_grid"], "normalization": plan["normalization"]},
        "diffusion": {"schedule": "cosine", "timesteps": TIMESTEPS, "prediction": "epsilon", "loss": "l2"},
        "iterations": int(ckpt["step"]),
        "reading": {**DEFAULT_READING, "fusion_example": FUSION_READING[view]},
        "provenance": {"source": SOURCE, "file": checkpoint.name, "sha256": sha256_of(checkpoint),
                       "step": int(ckpt["step"]), "weights": weights, "licence": LICENCE},
        "plans": {"schema_version": SCHEMA_VERSION, "dataset_name": "OrthoDiffusion pretraining", "modality": "MRI",
                  "labels": {}, "findings": [], "view_plan": plan},
    }
    out = dest / view / f"encoder_{view}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, payload)
    return out


__all__ = ["DEFAULT_READING", "FUSION_READING", "INPUT_GRID", "LICENCE", "check_schedule", "import_orthodiffusion",
           "load_authors_checkpoint", "load_network", "split_diffusion_state"]
