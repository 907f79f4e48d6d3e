"""Pretrained encoder checkpoints: the format, reading one, and loading it into a downstream network.

``diffusion.export`` writes them after pretraining; segmentation and classification fine-tune from them (so
the format lives here, in the stage below all three tasks). An encoder checkpoint (``encoder_<view>.pt``,
loadable with ``torch.load(weights_only=True)``) holds::

    format             "orthodiff_auto.encoder/1"
    view               the view it was pretrained on
    architecture       ArchitectureSpec.to_dict() of the encoder (the view's segmentation architecture)
    in_channels        input channels of its first convolution (1)
    state_dict         encoder weights (the EMA weights), keys exactly as build_encoder(spec).state_dict()
    encoder_keys       the keys of state_dict
    stem_keys          the keys that depend on the number of input channels (first convolution and its norm)
    pretrained_under   {"target_spacing", "patch_size", "normalization"} of the plan it was trained under
    diffusion          the diffusion plan (timesteps, schedule, prediction, ...) and the loss settings
    iterations         optimizer steps of pretraining
    plans              the plans it was pretrained under (``plans_excerpt``): dataset name, modality, budget,
                       labels, findings, schema version and the view's whole plan

``load_pretrained_encoder`` checks it against the architecture the downstream network was built from and
raises ``UserInputError`` naming the file and every mismatch before it touches any weight.

The encoders of one pretraining (a file per view, ``RESULTS/pretrain/<view>/encoder_<view>.pt``) make a
self-describing bundle: ``read_pretrained_bundle`` finds them in a folder (or takes one file) and returns, per
view, what another dataset's plans adopt to load them (``plans.adaptation.PretrainedPlan``).
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.plans.adaptation import PretrainedPlan
from orthodiff_auto.plans.schema import Plans, ViewPlan
from orthodiff_auto.plans.subplans import NormalizationPlan, ResamplingPlan
from orthodiff_auto.training.checkpoint import load_checkpoint, unwrap
from orthodiff_auto.utils.archive import sha256_of

ENCODER_FORMAT = "orthodiff_auto.encoder/1"
ENCODER_FILE_PATTERN = "encoder_*.pt"
# Architecture fields that decide the encoder's weights (the decoder's conv count does not).
ENCODER_FIELDS = ("network_class", "n_stages", "features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage",
                  "conv_bias", "norm", "nonlin", "conv_dim")


def stem_keys(encoder_keys: list[str]) -> list[str]:
    """Keys whose shape depends on the input channels: a ``stem`` if the encoder has one, else the first
    convolution of stage 0 with its normalisation (PlainConvEncoder: ``stages.0.0.convs.0.*``)."""
    stem = [k for k in encoder_keys if k.startswith("stem.")]
    if stem:
        return stem
    return [k for k in encoder_keys if k.startswith("stages.0.0.convs.0.")]


def input_channels(state: Mapping[str, torch.Tensor], conv_dim: int) -> int | None:
    for k, v in state.items():
        if k.endswith("weight") and v.ndim == conv_dim + 2:
            return int(v.shape[1])
    return None


def plan_summary(view_plan: ViewPlan) -> dict[str, Any]:
    """The plan fields a downstream user of the encoder should match (spacing, patch, normalisation)."""
    return {
        "target_spacing": list(view_plan.target_spacing),
        "patch_size": list(view_plan.diffusion.patch_size),
        "normalization": view_plan.normalization.to_dict(),
    }


def plans_excerpt(plans: Plans, view: str) -> dict[str, Any]:
    """The plans an encoder was pretrained under, as its checkpoint carries them (``plans``)."""
    return {
        "schema_version": plans.schema_version,
        "dataset_name": plans.dataset_name,
        "modality": plans.modality,
        "budget": plans.budget.to_dict(),
        "labels": dict(plans.labels),
        "findings": list(plans.findings),
        "view_plan": plans.view(view).to_dict(),
    }


@dataclass(frozen=True)
class PretrainedInfo:
    """What was loaded (for the downstream run's summary)."""

    path: str
    sha256: str
    view: str
    iterations: int
    architecture: dict[str, Any]
    pretrained_under: dict[str, Any]
    diffusion: dict[str, Any]
    loaded_keys: list[str] = field(default_factory=list)
    skipped_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "view": self.view, "iterations": self.iterations,
                "pretrained_under": self.pretrained_under, "diffusion": self.diffusion,
                "num_loaded_tensors": len(self.loaded_keys), "skipped_keys": list(self.skipped_keys)}

    def warn_about_differences(self, view_plan: ViewPlan) -> list[str]:
        """Warn (``UserWarning``, naming the file) about each of ``differences_from(view_plan)``; returns them."""
        found = self.differences_from(view_plan)
        for difference in found:
            warnings.warn(f"{self.path}: {difference}; the weights fit, but fine-tuning starts from features of "
                          "other inputs", UserWarning, stacklevel=2)
        return found

    def differences_from(self, view_plan: ViewPlan) -> list[str]:
        """Human-readable differences between the pretraining plan and ``view_plan`` (worth a warning, not an
        error: the weights still fit)."""
        out = []
        now = plan_summary(view_plan)
        if self.view != view_plan.view:
            out.append(f"pretrained on view {self.view!r}, used for view {view_plan.view!r}")
        for key in ("target_spacing", "normalization"):  # an input-grid encoder records no spacing
            if key in self.pretrained_under and self.pretrained_under[key] != now[key]:
                out.append(f"{key}: pretrained under {self.pretrained_under.get(key)}, now {now[key]}")
        return out


def _check_container(ckpt: Any, where: str) -> None:
    if not isinstance(ckpt, dict) or ckpt.get("format") != ENCODER_FORMAT:
        fmt = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        hint = " (a training checkpoint? pass the encoder_<view>.pt that `orthodiff pretrain` writes)" \
            if isinstance(ckpt, dict) and "model" in ckpt else ""
        raise UserInputError(f"{where}: not a pretrained encoder checkpoint (format {fmt!r}, expected "
                             f"{ENCODER_FORMAT!r}){hint}")
    for key in ("architecture", "state_dict", "in_channels"):
        if key not in ckpt:
            raise UserInputError(f"{where}: encoder checkpoint lacks {key!r}")


def read_encoder_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load and check the container (not yet against a network); UserInputError naming the file if invalid.

    The returned dict also holds ``source_path`` (absolute path) and ``sha256`` of the file, and can be passed
    to ``load_pretrained_encoder`` in place of the path."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    _check_container(ckpt, str(path))
    ckpt["source_path"] = str(path.resolve())
    ckpt["sha256"] = sha256_of(path)
    return ckpt


def pretrained_plan(ckpt: Mapping[str, Any]) -> PretrainedPlan:
    """What a checkpoint (as ``read_encoder_checkpoint`` returns it) says about the plan its encoder was
    pretrained under; UserInputError naming the file when it carries no plans or invalid ones."""
    path = str(ckpt.get("source_path", "encoder checkpoint"))
    excerpt = ckpt.get("plans")
    if not isinstance(excerpt, Mapping) or not isinstance(excerpt.get("view_plan"), Mapping):
        raise UserInputError(f"{path}: the encoder checkpoint carries no plans (written by an older `orthodiff "
                             "pretrain`); pretrain again to plan another dataset like it")
    view_plan = excerpt["view_plan"]
    try:
        grid = view_plan.get("input_grid")  # an encoder trained on a fixed grid (plans.adaptation)
        return PretrainedPlan(
            encoder=path, sha256=str(ckpt.get("sha256", "")), view=str(ckpt["view"]),
            dataset_name=str(excerpt["dataset_name"]), modality=str(excerpt.get("modality", "MRI")),
            in_channels=int(ckpt["in_channels"]),
            input_grid=(int(grid["slices"]), *(int(v) for v in grid["in_plane"])) if grid else None,
            target_spacing=() if grid else tuple(float(v) for v in view_plan["target_spacing"]),
            normalization=NormalizationPlan.from_dict(dict(view_plan["normalization"])),
            resampling=ResamplingPlan.from_dict(dict(view_plan.get("resampling", {}))),
            architecture=ArchitectureSpec.from_dict(dict(ckpt["architecture"])),
        )
    except (KeyError, TypeError, ValueError) as e:  # FieldError is a ValueError
        raise UserInputError(f"{path}: invalid plans in the encoder checkpoint: {e}") from None


def read_pretrained_bundle(path: Path | str) -> dict[str, PretrainedPlan]:
    """The pretrained encoders at ``path`` (one encoder file, or a folder searched for ``encoder_<view>.pt``, e.g.
    an ``orthodiff pretrain`` results folder RESULTS/pretrain) by view, each with the plan it was pretrained
    under. UserInputError when there is none, when two are of one view, or when one is not a valid encoder."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob(ENCODER_FILE_PATTERN))
    else:
        raise UserInputError(f"{path}: pretrained encoder bundle not found")
    if not files:
        raise UserInputError(f"{path}: no encoder_<view>.pt in this folder (`orthodiff pretrain` writes them to "
                             "RESULTS/pretrain/<view>/)")
    bundle: dict[str, PretrainedPlan] = {}
    for file in files:
        plan = pretrained_plan(read_encoder_checkpoint(file))
        if plan.view in bundle:
            raise UserInputError(f"{path}: two encoders of view {plan.view!r} ({bundle[plan.view].encoder} and "
                                 f"{plan.encoder}); pass the folder of one pretraining")
        bundle[plan.view] = plan
    return bundle


def _fmt(v: Any) -> str:
    return str(list(v) if isinstance(v, tuple) else v).replace("(", "[").replace(")", "]")


def architecture_mismatches(saved: ArchitectureSpec, expected: ArchitectureSpec) -> list[str]:
    saved_d, expected_d = saved.to_dict(), expected.to_dict()
    return [f"{k}: checkpoint {_fmt(saved_d[k])} vs network {_fmt(expected_d[k])}"
            for k in ENCODER_FIELDS if saved_d[k] != expected_d[k]]


def load_pretrained_encoder(network_encoder: nn.Module, ckpt: Path | str | Mapping[str, Any],
                            expected_arch: ArchitectureSpec, *, skip_stem: bool = False) -> PretrainedInfo:
    """Load a pretrained encoder checkpoint (a path, or the dict ``read_encoder_checkpoint`` returned) into
    ``network_encoder`` (a U-Net's ``.encoder``, a classifier's encoder; a whole U-Net is accepted too and its
    ``.encoder`` used).

    Refuses, with ``UserInputError`` naming the file and every mismatch, when the checkpoint's architecture
    differs from ``expected_arch`` (stages, features, kernels, strides, convs per stage, norm, ...), when the
    input channels differ (unless ``skip_stem``: then the input-dependent stem keeps its fresh initialisation
    and everything else loads), or when the tensors do not fit the network. Loads nothing unless all checks pass.
    """
    if isinstance(ckpt, (str, Path)):
        ckpt = read_encoder_checkpoint(ckpt)
    path = ckpt.get("source_path", "encoder checkpoint") if isinstance(ckpt, Mapping) else "encoder checkpoint"
    _check_container(dict(ckpt) if isinstance(ckpt, Mapping) else ckpt, path)
    try:
        saved = ArchitectureSpec.from_dict(dict(ckpt["architecture"]))
    except (KeyError, TypeError, ValueError) as e:  # FieldError is a ValueError
        raise UserInputError(f"{path}: invalid architecture in encoder checkpoint: {e}") from None
    problems = architecture_mismatches(saved, expected_arch)
    if problems:
        raise UserInputError(
            f"{path}: the pretrained encoder does not match this network's architecture: " + "; ".join(problems)
            + ". Pretrain again under the current plans (`orthodiff pretrain`) or train without --pretrained.")

    target = unwrap(network_encoder)
    if not hasattr(target, "stages") and hasattr(target, "encoder"):
        target = target.encoder
    own = target.state_dict()
    state: dict[str, torch.Tensor] = dict(ckpt["state_dict"])
    stem = set(ckpt.get("stem_keys") or stem_keys(list(state)))
    ckpt_in, net_in = int(ckpt["in_channels"]), input_channels(own, expected_arch.conv_dim)
    skipped: list[str] = []
    if net_in is not None and ckpt_in != net_in:
        if not skip_stem:
            raise UserInputError(f"{path}: the pretrained encoder has {ckpt_in} input channel(s), this network has "
                                 f"{net_in}; the first convolution cannot be loaded")
        skipped = sorted(k for k in state if k in stem)
        state = {k: v for k, v in state.items() if k not in stem}

    missing = sorted(set(own) - set(state) - set(skipped))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in state if k in own
             and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:5]}{' ...' if len(wrong) > 5 else ''}")
        raise UserInputError(f"{path}: encoder weights do not fit the network's encoder: " + "; ".join(parts))

    target.load_state_dict(state, strict=not skipped)
    return PretrainedInfo(
        path=str(path), sha256=str(ckpt.get("sha256", "")), view=str(ckpt.get("view", "")),
        iterations=int(ckpt.get("iterations", 0)), architecture=dict(ckpt["architecture"]),
        pretrained_under=dict(ckpt.get("pretrained_under", {})), diffusion=dict(ckpt.get("diffusion", {})),
        loaded_keys=sorted(state), skipped_keys=skipped,
    )


def encoder_parameter_names(model: nn.Module, encoder_attr: str = "encoder") -> list[str]:
    """Names (as in ``model.named_parameters()``) of the parameters of ``model.<encoder_attr>``: the group that
    warms up with a lower learning rate after loading a pretrained encoder."""
    model = unwrap(model)
    prefix = encoder_attr + "."
    names = [n for n, _ in model.named_parameters() if n.startswith(prefix)]
    if not names:
        raise ValueError(f"model has no parameters under {encoder_attr!r}")
    return names


def pretrained_parameter_groups(model: nn.Module, pretrained: bool = True,
                                encoder_attr: str = "encoder") -> list[dict[str, Any]]:
    """Optimizer groups of a task's model: one group from scratch; fine-tuning (``pretrained``) the encoder's
    parameters (``"warmup": True``: the loop starts them at ``lr * encoder_lr_factor``) and all the others."""
    model = unwrap(model)
    if not pretrained:
        return [{"params": list(model.parameters())}]
    encoder = {id(p) for p in getattr(model, encoder_attr).parameters()}
    return [
        {"params": [p for p in model.parameters() if id(p) in encoder], "warmup": True},
        {"params": [p for p in model.parameters() if id(p) not in encoder]},
    ]


__all__ = [
    "ENCODER_FIELDS",
    "ENCODER_FILE_PATTERN",
    "ENCODER_FORMAT",
    "PretrainedInfo",
    "architecture_mismatches",
    "encoder_parameter_names",
    "input_channels",
    "load_pretrained_encoder",
    "plan_summary",
    "plans_excerpt",
    "pretrained_parameter_groups",
    "pretrained_plan",
    "read_encoder_checkpoint",
    "read_pretrained_bundle",
    "stem_keys",
]
