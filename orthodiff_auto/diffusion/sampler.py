"""DDIM sampling (Song et al. 2021), independent of the network: any ``model(x_t, t) -> output`` callable.

``ddim_timesteps`` picks the sub-sequence of training timesteps to visit (always starting at ``T - 1``, pure
noise, and ending at 0); ``ddim_step`` is one update; ``ddim_sample`` runs the whole chain from Gaussian noise
for data of any number of spatial dimensions and can hand back intermediate states for a figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from orthodiff_auto.diffusion.schedule import predict_x0_and_eps
from orthodiff_auto.utils.atomic import atomic_path


def ddim_timesteps(num_train_timesteps: int, num_steps: int, start: int | None = None) -> list[int]:
    """``num_steps`` distinct timesteps, evenly spaced from ``start`` (default T - 1, pure noise) down to 0."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    first = num_train_timesteps - 1 if start is None else int(start)
    if not 0 <= first < num_train_timesteps:
        raise ValueError(f"start must be in [0, {num_train_timesteps}), got {start}")
    n = min(num_steps, first + 1)
    if n == 1:
        return [first]
    return [round(first * (n - 1 - i) / (n - 1)) for i in range(n)]


def ddim_step(x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, ab_t: float, ab_prev: float, eta: float = 0.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """x_{t_prev} from the current state and the predicted (x_0, eps); ``eta`` 0 is deterministic DDIM, 1 is
    DDPM-like ancestral sampling. ``ab_prev`` 1 returns x_0."""
    sigma = eta * ((1 - ab_prev) / (1 - ab_t)) ** 0.5 * (1 - ab_t / ab_prev) ** 0.5 if eta > 0 else 0.0
    direction = max(1 - ab_prev - sigma**2, 0.0) ** 0.5
    out = ab_prev**0.5 * x0 + direction * eps
    if sigma > 0:
        noise = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device="cpu").to(x_t.device)
        out = out + sigma * noise
    return out


@dataclass
class SampleTrace:
    """Intermediate states of a sampling run (all on the CPU): ``x[i]`` is the noisy state x_t at timestep
    ``timesteps[i]`` (the input of that step) and ``x0[i]`` the x_0 the network predicted from it."""

    timesteps: list[int]
    x: list[torch.Tensor]
    x0: list[torch.Tensor]


@torch.no_grad()
def ddim_sample(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    shape: Sequence[int],
    alphas_cumprod: torch.Tensor,
    prediction: str = "epsilon",
    num_steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip_x0: float | tuple[float, float] | None = None,
    record_every: int = 0,
    x_T: torch.Tensor | None = None,
    start_timestep: int | None = None,
) -> tuple[torch.Tensor, SampleTrace]:
    """Generate a batch of ``shape`` = (B, C, *spatial) from noise with DDIM.

    With ``x_T`` and ``start_timestep`` the chain starts from that (partly) noisy input at that timestep instead
    of pure noise: e.g. ``q_sample(x0, t, noise)`` and ``t`` denoise a real patch back (a reconstruction).

    ``generator`` (a CPU generator) makes the noise reproducible. ``clip_x0`` clamps each x_0 prediction to
    [-clip_x0, clip_x0] or to a (low, high) range, and the noise estimate is made consistent with the clamped
    x_0 (as DDPM does for images in [-1, 1]). Near T the signal fraction is tiny (cosine: sqrt(ab) = 5e-5 at
    t = 999), so an epsilon model's x_0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) amplifies small errors by 1e4; without
    clamping to the data range an imperfect model's samples blow up. ``record_every`` > 0 keeps every n-th
    state plus the last in the returned trace. Computes in float32 on ``device``.
    """
    device = torch.device(device)
    ab = alphas_cumprod.double().cpu()
    steps = ddim_timesteps(len(ab), num_steps, start_timestep)
    if x_T is None:
        x = torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device)
    else:
        x = x_T.to(device=device, dtype=torch.float32)
    trace = SampleTrace([], [], [])
    for i, t in enumerate(steps):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=device)
        out = model(x, t_batch).float()
        x0, eps = predict_x0_and_eps(x, t_batch, out, ab, prediction)
        if clip_x0 is not None:
            lo, hi = (-clip_x0, clip_x0) if isinstance(clip_x0, (int, float)) else clip_x0
            x0 = x0.clamp(float(lo), float(hi))
            eps = (x - ab[t].sqrt().item() * x0) / (1 - ab[t]).sqrt().item()
        if record_every > 0 and (i % record_every == 0 or i == len(steps) - 1):
            trace.timesteps.append(t)
            trace.x.append(x.detach().cpu())
            trace.x0.append(x0.detach().cpu())
        ab_prev = float(ab[steps[i + 1]]) if i + 1 < len(steps) else 1.0
        x = ddim_step(x, x0, eps, float(ab[t]), ab_prev, eta, generator)
    return x, trace


def _middle_slice(volume: torch.Tensor, axis: int) -> "np.ndarray":
    """(C, *spatial) -> the first channel's middle slice across spatial ``axis`` (2-D data is returned as is)."""
    v = volume[0]
    if v.ndim == 3:
        v = v.select(axis, v.shape[axis] // 2)
    return v.float().numpy()


def save_sampling_figure(sections, path, axis: int = 0, reference: torch.Tensor | None = None,
                         title: str = "") -> None:
    """PNG of denoising chains. ``sections``: a ``SampleTrace`` or a list of (label, ``SampleTrace``); per sample
    of each trace one row of the noisy states x_t at the recorded steps and one row of the x_0 predicted (middle
    slice across spatial ``axis``). ``reference`` (C, *spatial), e.g. a real training patch, is shown in an extra
    first column for scale. Grey levels are shared (the reference's 1st-99th percentile). Written atomically."""
    import matplotlib  # only when a figure is drawn: importing matplotlib takes about half a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(sections, SampleTrace):
        sections = [("", sections)]
    sections = [(label, tr) for label, tr in sections if tr.x]
    if not sections:
        raise ValueError("no recorded states (sample with record_every > 0)")
    rows = [(label, tr, b) for label, tr in sections for b in range(tr.x[0].shape[0])]
    off = 1 if reference is not None else 0
    n_cols = max(len(tr.x) for _, tr in sections) + off
    fig, axes = plt.subplots(2 * len(rows), n_cols, figsize=(1.6 * n_cols, 1.75 * 2 * len(rows)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    ref = _middle_slice(reference, axis) if reference is not None else None
    lo, hi = (np.percentile(ref, [1, 99]) if ref is not None else (-2.0, 2.0))
    if ref is not None:
        axes[0, 0].imshow(ref, cmap="gray", vmin=lo, vmax=hi)
        axes[0, 0].set_title("training patch", fontsize=7)
    for r, (label, tr, b) in enumerate(rows):
        for j, (t, x, x0) in enumerate(zip(tr.timesteps, tr.x, tr.x0)):
            top, bottom = axes[2 * r, j + off], axes[2 * r + 1, j + off]
            top.imshow(_middle_slice(x[b], axis), cmap="gray", vmin=lo, vmax=hi)
            bottom.imshow(_middle_slice(x0[b], axis), cmap="gray", vmin=lo, vmax=hi)
            top.set_title(f"{label + ': ' if label and j == 0 else ''}x_t, t={t}", fontsize=6)
            bottom.set_title(f"predicted x_0 (t={t})", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


__all__ = ["SampleTrace", "ddim_sample", "ddim_step", "ddim_timesteps", "save_sampling_figure"]
