"""The fine-tuned reader (``classifier_features=finetune``, the default): the plans' encoder trained end to end
on each view's region of interest (from scratch or a ``--pretrained`` encoder), and the fused model of a
fold's views: a trained gate, concatenation or cross-attention (``fusion``), or a gate or head fitted on the
single-view folds' out-of-fold predictions (``fusion=stacked``: ``stacked``; ``fusion=mpae``: ``mpae_fold``).

Run folders: ``results/cls/<view>/<scratch|pretrained>/fold_k``, ``results/cls/fused/<scratch|pretrained>_<fusion>/``.
Checkpoint kinds: ``view`` and ``fused``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from orthodiff_auto.classification.config import FUSED, FUSION_MODES, ClassificationConfig
from orthodiff_auto.classification.fold import ClassificationFold, pretrained_by_view, single_view_states
from orthodiff_auto.classification.fusion import FusedClassifier
from orthodiff_auto.classification.model import ViewClassifier
from orthodiff_auto.classification.mpae_fold import train_mpae_fold
from orthodiff_auto.classification.reader import FoldResult, Reader, register_reader
from orthodiff_auto.classification.region_models import MultiViewModel, RegionModel, ViewModel
from orthodiff_auto.classification.stacked import refuse_unfit_settings, train_stacked_fold
from orthodiff_auto.classification.task import FusedClassificationTask, ViewClassificationTask
from orthodiff_auto.classification.trained_fold import checked_fold, fit_and_validate, task_arguments
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.training.distributed import barrier
from orthodiff_auto.training.fold import FoldRequest
from orthodiff_auto.training.pretrained import read_encoder_checkpoint

#: fusions fitted on the single-view folds' out-of-fold predictions instead of trained
FITTED_FUSIONS = {"stacked": train_stacked_fold, "mpae": train_mpae_fold}


def finetune_variant(request: FoldRequest) -> str:
    return "pretrained" if request.pretrained else "scratch"


def train_finetune_fold(request: FoldRequest, plans: Plans, cls_config: ClassificationConfig, device: torch.device,
                        ctx, log) -> FoldResult:
    fold = checked_fold(request, plans)
    if request.view == FUSED and cls_config.fusion in FITTED_FUSIONS:  # nothing to train: fitted out of fold
        refuse_unfit_settings(cls_config)
        if not ctx.is_main:  # fitted on the main process only: nothing to distribute
            barrier(ctx)
            return {}
        return FITTED_FUSIONS[cls_config.fusion](request, plans, cls_config, device, ctx, log, fold)
    task = finetune_task(request, plans, cls_config, fold, log)
    return fit_and_validate(request, task, fold, cls_config, device, ctx, log)


def finetune_task(request: FoldRequest, plans: Plans, cls_config: ClassificationConfig, fold: ClassificationFold,
                  log):
    """One view, or the fused views (branches from this fold's single-view classifiers or pretrained encoders)."""
    pretrained = read_encoder_checkpoint(request.pretrained) if request.pretrained is not None else None
    common = task_arguments(request, cls_config, fold)
    if request.view == FUSED:
        # also on resume: which branches were warm-started decides the optimizer's parameter groups
        init_states = (single_view_states(request, fold.views, fold.findings, fold.val_ids, log)
                       if cls_config.fused_init == "auto" else {})
        by_view = pretrained_by_view(request, pretrained, [v for v in fold.views if v not in init_states], log)
        return FusedClassificationTask(plans, fold.views, present=fold.present, init_states=init_states,
                                       pretrained_by_view=by_view, pretrained=pretrained, **common)
    return ViewClassificationTask(plans, request.view, pretrained=pretrained, **common)


def load_finetuned(extras: Mapping[str, Any], state: Mapping[str, torch.Tensor], plans: Plans,
                   device: torch.device, where: str) -> RegionModel:
    findings = list(extras["findings"])
    if extras.get("kind") == FUSED:
        views = list(extras["views"])
        archs = {v: plans.view(v).classification.architecture for v in views}
        network = FusedClassifier(views, archs, len(findings), extras.get("fusion", "gate"),
                                  num_clinical=int((extras.get("mpae") or {}).get("num_clinical", 0)))
        network.load_state_dict(state)
        return MultiViewModel(network, extras, device)
    network = ViewClassifier(plans.view(extras["view"]).classification.architecture, len(findings))
    network.load_state_dict(state)
    return ViewModel(network, extras, device)


READER = register_reader(Reader("finetune", finetune_variant, train_finetune_fold, load_finetuned,
                                checkpoint_kinds=("view", FUSED), fusion_modes=FUSION_MODES))

__all__ = ["FITTED_FUSIONS", "READER", "finetune_task", "finetune_variant", "load_finetuned", "train_finetune_fold"]
