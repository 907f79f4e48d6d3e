"""DDPM noise schedules and the forward process as small pure functions (any number of spatial dimensions).

Conventions (as in DDPM / diffusers): timesteps are integers ``t`` in ``[0, T)``; ``alphas_cumprod[t]``
(alpha-bar) is the signal fraction after ``t + 1`` noising steps, so it falls from ~1 at ``t = 0`` to ~0 at
``t = T - 1``. ``x_t = sqrt(ab_t) * x_0 + sqrt(1 - ab_t) * eps``. Schedules are computed in float64 and
returned as 1-D tensors; the functions taking data broadcast ``ab[t]`` over every axis after the batch axis,
so they serve 2-D, 3-D (or any) data alike.

Prediction targets: ``"epsilon"`` (the noise), ``"v"`` (``sqrt(ab) * eps - sqrt(1 - ab) * x_0``, Salimans &
Ho 2022), ``"x0"`` (the clean data). ``min_snr_weights`` gives Min-SNR-gamma loss weights (Hang et al. 2023)
for each of them.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("epsilon", "v", "x0")
MAX_BETA = 0.999  # Nichol & Dhariwal clip the cosine schedule's betas here (avoids a singularity at t = T)


def cosine_alphas_cumprod(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Improved-DDPM cosine schedule: ab(t) = f(t) / f(0), f(t) = cos(((t / T) + s) / (1 + s) * pi / 2) ** 2,
    realised through betas clipped at ``MAX_BETA`` (so ab stays strictly decreasing and positive)."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(min=0.0, max=MAX_BETA)
    return torch.cumprod(1 - betas, dim=0)


def linear_alphas_cumprod(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear betas, rescaled so any ``timesteps`` covers the same noise range as T = 1000."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    scale = 1000.0 / timesteps
    betas = torch.linspace(beta_start * scale, min(beta_end * scale, MAX_BETA), timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def make_alphas_cumprod(schedule: str, timesteps: int) -> torch.Tensor:
    if schedule == "cosine":
        return cosine_alphas_cumprod(timesteps)
    if schedule == "linear":
        return linear_alphas_cumprod(timesteps)
    raise ValueError(f"unknown noise schedule {schedule!r}; known: {list(SCHEDULES)}")


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ab / (1 - ab) per timestep."""
    return alphas_cumprod / (1 - alphas_cumprod)


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, ..., 1) to broadcast against ``like`` (B, C, *spatial), in like's dtype."""
    v = values.to(like.device)[t.to(like.device).long()]
    return v.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The forward process: x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps."""
    ab = _at(alphas_cumprod, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def training_target(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                    prediction: str) -> torch.Tensor:
    """What the network is trained to output for ``prediction`` ("epsilon", "v" or "x0")."""
    if prediction == "epsilon":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        ab = _at(alphas_cumprod, t, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0
    raise ValueError(f"unknown prediction {prediction!r}; known: {list(PREDICTIONS)}")


def predict_x0_and_eps(x_t: torch.Tensor, t: torch.Tensor, model_output: torch.Tensor,
                       alphas_cumprod: torch.Tensor, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0, eps) implied by a network output of kind ``prediction`` at noisy input ``x_t``."""
    ab = _at(alphas_cumprod, t, x_t)
    a, s = ab.sqrt(), (1 - ab).sqrt()
    out = model_output.to(x_t.dtype)
    if prediction == "epsilon":
        return (x_t - s * out) / a, out
    if prediction == "v":
        return a * x_t - s * out, s * x_t + a * out
    if prediction == "x0":
        return out, (x_t - a * out) / s
    raise ValueError(f"unknown prediction {prediction!r}; known: {list(PREDICTIONS)}")


def min_snr_weights(snr_t: torch.Tensor, prediction: str, gamma: float | None) -> torch.Tensor:
    """Per-sample loss weights that make the MSE on ``prediction`` equal Min-SNR-gamma weighted x_0 MSE.

    ``gamma`` None (or <= 0) gives uniform weights (plain DDPM loss)."""
    if gamma is None or gamma <= 0:
        return torch.ones_like(snr_t)
    clipped = snr_t.clamp(max=gamma)
    if prediction == "epsilon":
        return clipped / snr_t
    if prediction == "v":
        return clipped / (snr_t + 1)
    if prediction == "x0":
        return clipped
    raise ValueError(f"unknown prediction {prediction!r}; known: {list(PREDICTIONS)}")


def diffusion_loss(model_output: torch.Tensor, target: torch.Tensor, t: torch.Tensor,
                   alphas_cumprod: torch.Tensor, prediction: str, min_snr_gamma: float | None = None) -> torch.Tensor:
    """Mean over the batch of (optionally Min-SNR weighted) per-sample MSE, computed in float32."""
    per_sample = (model_output.float() - target.float()).pow(2).flatten(1).mean(1)
    weights = min_snr_weights(snr(alphas_cumprod).to(per_sample.device)[t.long()], prediction, min_snr_gamma)
    return (weights.to(per_sample.dtype) * per_sample).mean()


__all__ = [
    "PREDICTIONS",
    "SCHEDULES",
    "cosine_alphas_cumprod",
    "diffusion_loss",
    "linear_alphas_cumprod",
    "make_alphas_cumprod",
    "min_snr_weights",
    "predict_x0_and_eps",
    "q_sample",
    "snr",
    "training_target",
]
