"""Segmentation of one preprocessed case: sliding window -> softmax probabilities on the preprocessed grid, and
from probabilities to the label map in the scan's original geometry (what validation and inference write)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from orthodiff_auto.data.label_values import label_values, to_label_values
from orthodiff_auto.plans.schema import ViewPlan
from orthodiff_auto.data.cropping import paste
from orthodiff_auto.preprocessing.case import place_in_original
from orthodiff_auto.preprocessing.resampling import resample_argmax, resample_image
from orthodiff_auto.preprocessing.resampling_torch import resample_tensor, supports
from orthodiff_auto.preprocessing.properties import CaseProperties
from orthodiff_auto.training.device import autocast_for
from orthodiff_auto.training.sliding_window import sliding_window_predict


def predict_logits(
    model: nn.Module, data: np.ndarray | torch.Tensor, patch_size: Sequence[int], num_classes: int,
    device: torch.device, overlap: float = 0.5, mirror_axes: Sequence[int] | None = None,
    batch_size: int | None = None, mixed_precision: bool = True,
) -> torch.Tensor:
    """Gaussian-weighted sliding-window logits (C, *spatial) for a (1, *spatial) preprocessed image."""
    image = torch.as_tensor(np.asarray(data, dtype=np.float32)) if not torch.is_tensor(data) else data.float()

    def predictor(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        return out.float()

    # model.eval() and model.train() walk every submodule (milliseconds a case): only for a model in training mode
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.no_grad(), autocast_for(device, mixed_precision):
            logits = sliding_window_predict(predictor, image, patch_size, num_classes, overlap=overlap,
                                            batch_size=batch_size, mirror_axes=mirror_axes, device=device)
    finally:
        if was_training:
            model.train()
    return logits


def class_indices(scores: np.ndarray | torch.Tensor, props: CaseProperties,
                  view_plan: ViewPlan) -> tuple[np.ndarray, np.ndarray]:
    """Class scores (C, *preprocessed grid: probabilities, logits or log-probabilities) -> (the most probable class
    of each voxel of the scan's original grid, the same on the preprocessed grid); the scores are resampled with
    ``probabilities_order`` before the argmax (nnU-Net's export).

    On a GPU the scores are resampled where they are (``resampling_torch``) and only class indices come to the
    host; on the CPU only the voxels whose interpolation taps disagree are interpolated (``resample_argmax``).
    Both give the argmax of the fully resampled scores. uint8 indices, uint16 beyond 256 classes."""
    plan = view_plan.resampling
    order = plan.probabilities_order
    shape, src, dst = props.shape_after_cropping, props.spacing_after_resampling, props.spacing
    wide = scores.shape[0] > 256
    if torch.is_tensor(scores) and scores.device.type != "cpu" and supports(plan, order):
        dtype = torch.int32 if wide else torch.uint8
        on_grid = scores.argmax(0).to(dtype).cpu().numpy()
        back = resample_tensor(scores.float(), shape, src, dst, plan, order)
        indices = back.argmax(0).to(dtype).cpu().numpy()
    else:
        array = scores.float().cpu().numpy() if torch.is_tensor(scores) else np.asarray(scores, dtype=np.float32)
        on_grid = np.argmax(array, axis=0).astype(np.uint16 if wide else np.uint8)  # numpy's is the fastest here
        if supports(plan, order):
            indices = resample_argmax(array, shape, src, dst, plan, order, source=on_grid)
        else:
            indices = np.argmax(resample_image(array, shape, src, dst, plan, order=order), axis=0)
    return place_in_original(indices, props), on_grid.astype(np.uint16 if wide else np.uint8, copy=False)


def probabilities_in_original_geometry(scores: np.ndarray | torch.Tensor, props: CaseProperties,
                                       view_plan: ViewPlan) -> np.ndarray:
    """The softmax of the scores resampled to the scan's original grid (C, *original shape), float32; background
    (1, 0, ...) outside the crop box. As nnU-Net's saved probabilities: the argmax of these is the label map of
    ``class_indices`` (up to ties)."""
    plan = view_plan.resampling
    array = scores.float().cpu().numpy() if torch.is_tensor(scores) else np.asarray(scores, dtype=np.float32)
    back = resample_image(array, props.shape_after_cropping, props.spacing_after_resampling, props.spacing, plan,
                          order=plan.probabilities_order)
    probs = torch.softmax(torch.from_numpy(np.ascontiguousarray(back)), 0).numpy()
    fill = np.zeros(probs.shape[0], dtype=probs.dtype)
    fill[0] = 1
    return np.ascontiguousarray(props.orientation.from_canonical(
        paste(probs, props.crop_bbox, props.shape_before_cropping, fill)))


def label_map_in_original_geometry(scores: np.ndarray | torch.Tensor, props: CaseProperties, view_plan: ViewPlan,
                                   labels: Mapping[str, int]) -> np.ndarray:
    """Class scores (C, *preprocessed grid) back on the scan's original grid, each voxel's most probable channel
    as its label value (channel i is the i-th smallest value of ``labels``): uint8, or uint16 when a label value
    reaches 256."""
    return to_label_values(class_indices(scores, props, view_plan)[0], label_values(labels))


__all__ = ["class_indices", "label_map_in_original_geometry", "predict_logits",
           "probabilities_in_original_geometry"]
