"""A checkpoint in the OrthoDiffusion authors' layout (their ``Trainer.save``), for the import tests: ``step``,
``model`` and ``ema`` (state dicts of their ``GaussianDiffusion``: the U-Net under ``denoise_fn.`` beside the
schedule's buffers) and ``opt`` (an Adam state after one step). The schedule buffers are computed here in numpy
the way their code does, independently of ``diffusion.schedule``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from orthodiff_auto.networks.orthodiffusion.unet import OrthoDiffusionHyperParameters, OrthoDiffusionUNet

REDUCED = OrthoDiffusionHyperParameters(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                                        attention_levels=(2,))


def authors_schedule_buffers(timesteps: int = 1000, s: float = 0.008) -> dict[str, torch.Tensor]:
    steps = timesteps + 1
    x = np.linspace(0, steps, steps)
    ab = np.cos(((x / steps) + s) / (1 + s) * np.pi * 0.5) ** 2
    ab = ab / ab[0]
    betas = np.clip(1 - ab[1:] / ab[:-1], 0, 0.999)
    alphas_cumprod = np.cumprod(1.0 - betas)
    prev = np.append(1.0, alphas_cumprod[:-1])
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return {"betas": f32(betas), "alphas_cumprod": f32(alphas_cumprod), "alphas_cumprod_prev": f32(prev),
            "sqrt_alphas_cumprod": f32(np.sqrt(alphas_cumprod)),
            "sqrt_one_minus_alphas_cumprod": f32(np.sqrt(1 - alphas_cumprod)),
            "posterior_variance": f32(betas * (1 - prev) / (1 - alphas_cumprod))}


def write_authors_checkpoint(path: Path, hp: OrthoDiffusionHyperParameters = REDUCED, step: int = 21499,
                             prefix: str = "denoise_fn.", seed: int = 0, **extra) -> dict:
    torch.manual_seed(seed)
    model, ema = OrthoDiffusionUNet(hp), OrthoDiffusionUNet(hp)
    with torch.no_grad():
        for p, q in zip(model.parameters(), ema.parameters()):
            p.add_(torch.randn_like(p) * 0.02)  # the zero-initialised layers too
            q.copy_(p + torch.randn_like(p) * 0.01)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    model(torch.randn(1, 1, 8, 16, 16), torch.tensor([3])).square().mean().backward()
    opt.step()
    buffers = authors_schedule_buffers()
    payload = {"step": step, "opt": opt.state_dict(),
               "model": {**{prefix + k: v for k, v in model.state_dict().items()}, **buffers},
               "ema": {**{prefix + k: v for k, v in ema.state_dict().items()}, **buffers}, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return payload
