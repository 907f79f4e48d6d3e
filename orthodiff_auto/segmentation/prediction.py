"""Segmentation of one preprocessed case: sliding window -> softmax probabilities on the preprocessed grid, and
from probabilities to the label map in the scan's original geometry (what validation and inference write)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from orthodiff_auto.data.label_values import label_values, to_label_values
from orthodiff_auto.plans.schema import ViewPlan
from orthodiff_auto.preprocessing.case import revert_to_original
from orthodiff_auto.preprocessing.properties import CaseProperties
from orthodiff_auto.training.device import autocast_for
from orthodiff_auto.training.sliding_window import sliding_window_predict


def predict_logits(
    model: nn.Module, data: np.ndarray | torch.Tensor, patch_size: Sequence[int], num_classes: int,
    device: torch.device, overlap: float = 0.5, mirror_axes: Sequence[int] | None = None, batch_size: int = 2,
    mixed_precision: bool = True,
) -> torch.Tensor:
    """Gaussian-weighted sliding-window logits (C, *spatial) for a (1, *spatial) preprocessed image."""
    image = torch.as_tensor(np.asarray(data, dtype=np.float32)) if not torch.is_tensor(data) else data.float()

    def predictor(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        return out.float()

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast_for(device, mixed_precision):
            logits = sliding_window_predict(predictor, image, patch_size, num_classes, overlap=overlap,
                                            batch_size=batch_size, mirror_axes=mirror_axes, device=device)
    finally:
        model.train(was_training)
    return logits


def predict_probabilities(model: nn.Module, data, patch_size, num_classes, device, **kw) -> np.ndarray:
    """Softmax probabilities (C, *spatial) as float32 numpy on the host."""
    logits = predict_logits(model, data, patch_size, num_classes, device, **kw)
    return torch.softmax(logits, 0).cpu().numpy()


def label_map_in_original_geometry(probabilities: np.ndarray, props: CaseProperties, view_plan: ViewPlan,
                                   labels: Mapping[str, int]) -> np.ndarray:
    """Probabilities (C, *preprocessed grid) back on the scan's original grid, then each voxel's most probable
    channel as its label value (channel i is the i-th smallest value of ``labels``): uint8, or uint16 when a
    label value reaches 256."""
    return label_map_from_probabilities(revert_to_original(probabilities, props, view_plan, kind="probabilities"),
                                        labels)


def label_map_from_probabilities(probabilities: np.ndarray, labels: Mapping[str, int]) -> np.ndarray:
    """Each voxel's most probable channel of (C, *grid) probabilities as its label value."""
    return to_label_values(np.argmax(probabilities, axis=0), label_values(labels))


__all__ = ["label_map_from_probabilities", "label_map_in_original_geometry", "predict_logits",
           "predict_probabilities"]
