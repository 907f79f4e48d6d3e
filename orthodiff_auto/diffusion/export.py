"""Export of the pretrained encoder after diffusion pretraining (``encoder_<view>.pt``).

The checkpoint format, and reading and loading it into downstream networks, are in ``training.pretrained``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from orthodiff_auto.plans.schema import Plans, ViewPlan
from orthodiff_auto.training.checkpoint import save_checkpoint
from orthodiff_auto.training.pretrained import ENCODER_FORMAT, input_channels, plan_summary, plans_excerpt, stem_keys

ENCODER_PREFIX = "encoder."


def encoder_state_from_model_state(state: Mapping[str, torch.Tensor],
                                   prefix: str = ENCODER_PREFIX) -> dict[str, torch.Tensor]:
    """The ``encoder.*`` entries of a U-Net / denoiser state dict, prefix removed (detached CPU copies)."""
    out = {k[len(prefix):]: v.detach().cpu().clone() for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"no '{prefix}*' keys in the state dict")
    return out


def export_encoder(path: Path | str, model_state: Mapping[str, torch.Tensor], view_plan: ViewPlan,
                   iterations: int, diffusion: Mapping[str, Any] | None = None,
                   patch_size: list[int] | None = None, plans: Plans | None = None) -> dict[str, Any]:
    """Write the encoder checkpoint (atomically) from a denoiser (or U-Net) state dict; returns the payload.
    With ``plans`` (the plans ``view_plan`` belongs to) it carries their excerpt: a self-describing bundle that
    another dataset can be planned like (``plan_and_preprocess --like``)."""
    spec = view_plan.segmentation.architecture
    state = encoder_state_from_model_state(model_state)
    keys = list(state)
    under = plan_summary(view_plan)
    if patch_size is not None:
        under["patch_size"] = [int(p) for p in patch_size]
    payload = {
        "format": ENCODER_FORMAT,
        "view": view_plan.view,
        "architecture": spec.to_dict(),
        "in_channels": input_channels(state, spec.conv_dim) or 1,
        "state_dict": state,
        "encoder_keys": keys,
        "stem_keys": stem_keys(keys),
        "pretrained_under": under,
        "diffusion": dict(diffusion or view_plan.diffusion.to_dict()),
        "iterations": int(iterations),
    }
    if plans is not None:
        payload["plans"] = plans_excerpt(plans, view_plan.view)
    save_checkpoint(path, payload)
    return payload


__all__ = ["ENCODER_PREFIX", "encoder_state_from_model_state", "export_encoder"]
