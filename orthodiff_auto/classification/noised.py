"""Fine-tuning on noised inputs (``classifier_features=noised``): the pretrained encoder read the way it was
pretrained.

Diffusion pretraining trains the encoder on inputs noised at a timestep t, with t given to every stage
through its FiLM conditioning (``diffusion.denoiser``). Fine-tuning it on clean images without t
(``finetune``) asks the pretrained weights to work on inputs they never saw. This mode keeps the denoiser's
reading: the classifier is the denoiser's encoder with its timestep embedding and FiLM layers, its input is
``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps`` at the fixed timestep ``noise_timestep`` (the schedule of the
pretraining run), followed by per-finding attention pooling and a head, all trained:

- training: a fresh noise per case and step, drawn by the batch's seeded generator (a resumed run replays it);
- validation and prediction: the mean of the logits over ``noise_draws`` fixed noises (seeds 0..K-1 on the
  CPU, identical on every device), so a case's prediction is a deterministic function of its image.

The weights come from the view's pretraining run (``RESULTS/pretrain/<view>/checkpoint_final.pt``: the EMA
encoder, timestep embedding and encoder FiLM layers); without one (``--no-pretrain``) the same network starts
from scratch (FiLM at identity) and the mode is a noise augmentation. The checkpoint records the timestep, the
draws and the schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from orthodiff_auto.classification.config import FUSED
from orthodiff_auto.classification.data import ViewBatches
from orthodiff_auto.classification.model import AttentionPoolingHead
from orthodiff_auto.classification.reader import FoldResult, Reader, register_reader
from orthodiff_auto.classification.region_models import RegionModel
from orthodiff_auto.classification.task import ViewClassificationTask
from orthodiff_auto.classification.trained_fold import checked_fold, fit_and_validate, task_arguments
from orthodiff_auto.diffusion.denoiser import FiLM, TimestepEmbedding
from orthodiff_auto.diffusion.features import fixed_noise
from orthodiff_auto.diffusion.run import output_dir_for
from orthodiff_auto.diffusion.schedule import make_alphas_cumprod
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks.builder import build_encoder
from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.training.checkpoint import load_checkpoint, unwrap
from orthodiff_auto.training.distributed import per_rank_batch_size

NOISED_KIND = "noised"
PRETRAINED_PREFIXES = ("encoder.", "time_mlp.", "film_encoder.")


class NoisedViewClassifier(nn.Module):
    """``forward(x0, noise)`` -> logits (B, F): x0 noised at ``timestep``, the conditioned encoder, attention."""

    def __init__(self, arch: ArchitectureSpec, num_findings: int, timestep: int, schedule: str = "cosine",
                 timesteps: int = 1000):
        super().__init__()
        if not 0 <= timestep < timesteps:
            raise UserInputError(f"noise_timestep must be in [0, {timesteps}), got {timestep}")
        self.encoder = build_encoder(arch, 1, return_skips=True)
        embed_dim = max(32, 4 * arch.features_per_stage[0])  # as the denoiser (diffusion.denoiser)
        self.time_mlp = TimestepEmbedding(max(16, arch.features_per_stage[0]), embed_dim)
        self.film_encoder = nn.ModuleList(FiLM(embed_dim, c) for c in arch.features_per_stage)
        self.head = AttentionPoolingHead(int(arch.features_per_stage[-1]), num_findings)
        self.timestep, self.schedule, self.timesteps = int(timestep), schedule, int(timesteps)
        ab = make_alphas_cumprod(schedule, timesteps).float()[self.timestep]
        self.register_buffer("signal", ab.sqrt().reshape(()), persistent=False)
        self.register_buffer("noise_scale", (1 - ab).sqrt().reshape(()), persistent=False)

    def forward(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        h = self.signal.to(x0.dtype) * x0 + self.noise_scale.to(x0.dtype) * noise
        emb = self.time_mlp(torch.full((x0.shape[0],), self.timestep, device=x0.device, dtype=torch.long))
        for stage, film in zip(self.encoder.stages, self.film_encoder):
            h = film(stage(h), emb)
        return self.head(h)[1]

    def predict(self, x0: torch.Tensor, draws: int) -> torch.Tensor:
        """Mean logits over ``draws`` fixed noises (seeds 0..draws-1, drawn on the CPU)."""
        total = None
        for k in range(max(1, draws)):
            noise = fixed_noise(x0.shape[1:], k).to(x0.device, x0.dtype).expand_as(x0)
            logits = self(x0, noise).float()
            total = logits if total is None else total + logits
        return total / max(1, draws)


def pretrained_denoiser_state(request, view: str) -> tuple[dict[str, torch.Tensor], Path, str, int] | None:
    """(the EMA weights this classifier starts from: encoder, timestep embedding, encoder FiLM; the file; the
    schedule and number of timesteps it was pretrained with), from ``--pretrained``'s folder or
    ``RESULTS/pretrain/<view>``; None when the view was not pretrained."""
    folders = [Path(request.pretrained).parent] if request.pretrained else []
    folders.append(output_dir_for(request.preprocessed_dir, view, request.results_dir))
    for folder in folders:
        path = folder / "checkpoint_final.pt"
        if path.is_file():
            extras = load_checkpoint(path).get("extras") or {}
            ema = (extras.get("ema") or {}).get("model")
            plan = extras.get("diffusion_plan")
            if ema is None or plan is None:
                raise UserInputError(f"{path}: not a diffusion pretraining checkpoint (no EMA weights)")
            state = {k: v for k, v in ema.items() if k.startswith(PRETRAINED_PREFIXES)}
            return state, path, str(plan["schedule"]), int(plan["timesteps"])
    if request.pretrained:
        raise UserInputError(f"{request.pretrained}: classifier_features=noised needs the pretraining run's "
                             f"checkpoint_final.pt beside it (the timestep conditioning is not in the encoder file)")
    return None


class NoisedClassificationTask(ViewClassificationTask):
    """One view, fine-tuned on inputs noised at ``config.noise_timestep`` with the time conditioning kept."""

    def __init__(self, *args, denoiser_state: Mapping[str, torch.Tensor] | None = None,
                 denoiser_source: Path | None = None, schedule: str = "cosine", timesteps: int = 1000, **kw):
        super().__init__(*args, **kw)
        self.denoiser_state = dict(denoiser_state or {})
        self.denoiser_source = denoiser_source
        self.schedule, self.timesteps = schedule, int(timesteps)
        self.noise_timestep = int(self.config.noise_timestep)
        self.noise_draws = int(self.config.noise_draws)

    def build_model(self) -> nn.Module:
        model = NoisedViewClassifier(self.cls_plan.architecture, len(self.findings), self.noise_timestep,
                                     self.schedule, self.timesteps)
        if self.denoiser_state:
            missing, unexpected = model.load_state_dict(self.denoiser_state, strict=False)
            loaded = set(self.denoiser_state) - set(unexpected)
            if unexpected or any(k.startswith(PRETRAINED_PREFIXES) for k in missing):
                raise UserInputError(f"{self.denoiser_source}: the pretrained denoiser does not fit this view's "
                                     f"classifier (unexpected {sorted(unexpected)[:3]}, missing "
                                     f"{[k for k in missing if k.startswith(PRETRAINED_PREFIXES)][:3]}); pretrain again "
                                     "under the current plans")
            self.pretrained_info[self.view] = {"path": str(self.denoiser_source), "tensors_loaded": len(loaded)}
        self._model = model
        return model

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        model = unwrap(model)
        if not self.denoiser_state:
            return [{"params": list(model.parameters())}]
        warm = {id(p) for n, p in model.named_parameters() if n.startswith(PRETRAINED_PREFIXES)}
        return [{"params": [p for p in model.parameters() if id(p) in warm], "warmup": True},
                {"params": [p for p in model.parameters() if id(p) not in warm]}]

    def batch_dataset(self, start: int, total: int, ctx) -> ViewBatches:
        return ViewBatches(self.loader(), self.view, self.train_cases, self.label_matrix(self.train_cases),
                           per_rank_batch_size(self.batch_size, ctx), self._transforms(self.view), start, total,
                           seed=self.config.seed, rank=ctx.rank, weights=self.sample_weights,
                           shift_regions=self.config.augment, with_noise=True)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.bce(model(batch["data"], batch["noise"]), batch["target"])

    def batch_logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return unwrap(model).predict(x, self.noise_draws)  # the mean over the fixed noise draws

    def checkpoint_extras(self) -> dict[str, Any]:
        return {**super().checkpoint_extras(), "kind": NOISED_KIND,
                "noised": {"timestep": self.noise_timestep, "draws": self.noise_draws, "schedule": self.schedule,
                           "timesteps": self.timesteps,
                           "pretrained_from": str(self.denoiser_source) if self.denoiser_source else None}}


def noised_variant(request) -> str:
    return f"noised_t{request.config.noise_timestep}"  # the pretraining run's weights when there is one


def train_noised_fold(request, plans, cls_config, device: torch.device, ctx, log) -> FoldResult:
    fold = checked_fold(request, plans)
    if request.view == FUSED:
        raise UserInputError("classifier_features=noised trains single views (fuse them with the fused model "
                             "of the finetune mode or compare views in model selection)")
    found = pretrained_denoiser_state(request, request.view)
    state, source, schedule, timesteps = found if found else ({}, None, "cosine", 1000)
    log(f"noised inputs at t={request.config.noise_timestep}: " + (f"weights of {source}" if source else
                                                                     "no pretraining run, from scratch"))
    task = NoisedClassificationTask(plans, request.view, denoiser_state=state, denoiser_source=source,
                                    schedule=schedule, timesteps=timesteps,
                                    **task_arguments(request, cls_config, fold))
    return fit_and_validate(request, task, fold, cls_config, device, ctx, log)


def noised_fold_inputs(request, views) -> list[Path]:
    """The pretraining runs' final checkpoints: their weights with the timestep conditioning."""
    return [output_dir_for(request.preprocessed_dir, v, request.results_dir) / "checkpoint_final.pt" for v in views]


class NoisedModel(RegionModel):
    """Prediction: the mean of the logits over the checkpoint's fixed noise draws."""

    def __init__(self, network: NoisedViewClassifier, extras: Mapping[str, Any], device: torch.device):
        super().__init__(network, extras, device)
        self.draws = int(extras["noised"].get("draws", 1))

    def logits(self, inputs, present, clinical):
        return self.network.predict(self.tensor(inputs[self.views[0]]), self.draws)


def load_noised(extras: Mapping[str, Any], state: Mapping[str, torch.Tensor], plans, device: torch.device,
                where: str) -> NoisedModel:
    info = extras["noised"]
    network = NoisedViewClassifier(plans.view(extras["view"]).classification.architecture, len(extras["findings"]),
                                   int(info["timestep"]), str(info["schedule"]), int(info["timesteps"]))
    network.load_state_dict(state)
    return NoisedModel(network, extras, device)


READER = register_reader(Reader(NOISED_KIND, noised_variant, train_noised_fold, load_noised,
                                fold_inputs=noised_fold_inputs))

__all__ = ["NOISED_KIND", "NoisedClassificationTask", "NoisedModel", "NoisedViewClassifier", "READER", "load_noised",
           "noised_variant", "pretrained_denoiser_state", "train_noised_fold"]
