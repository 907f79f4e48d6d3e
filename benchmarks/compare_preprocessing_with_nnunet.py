#!/usr/bin/env python
"""Where our Dice and nnU-Net's part with the same weights: each half of the pipeline swapped, in one process.

Usage::

    python benchmarks/compare_preprocessing_with_nnunet.py PREPROCESSED_DIR CHECKPOINT --view sag [--tta]

nnU-Net v2 (the optional ``bench`` extra) must be importable by this Python: its functions are called directly
(``crop_to_nonzero``, ``ZScoreNormalization``, ``resample_data_or_seg_to_shape``, ``compute_gaussian``), on the
test scans of VIEW in our canonical orientation, which is what nnU-Net reads in bench_predict_vs_nnunet.py.

Per case it prints how far nnU-Net's preprocessed array is from ours (crop box, shape, max and mean absolute
difference), then the mean foreground Dice of every combination of

- preprocessing: ours (``preprocess_case``) or nnU-Net's (crop to the filled non-zero mask, z-score, resample with
  ``resample_data_or_seg_to_shape``: skimage's B-spline for order 3, nearest along the coarse axis);
- sliding window: ours (``predict_logits``) or nnU-Net's Gaussian (centred at p // 2, summed in half precision);
- export: what ``predict_folder`` runs (``segmentation.prediction.class_indices`` on the logits), the same on the
  softmax probabilities (what it ran before issue 17), or nnU-Net's own code (logits resampled linearly, then
  argmax, then pasted into the crop box),

so the column that moves the Dice names the step that costs it. The network and its weights are the same
everywhere; only the arrays around it change.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

import orthodiff_auto  # noqa: F401  (before torch: sets OMP_WAIT_POLICY=PASSIVE for a loaded machine)
import torch

from bench_trainer_vs_nnunet import raw_dataset_of, read_canonical


def nnunet_preprocess(canonical: np.ndarray, spacing, target, use_mask_for_norm: bool, plan) -> dict:
    """nnU-Net's DefaultPreprocessor.run_case_npy on one channel in our canonical axis order."""
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape, resample_data_or_seg_to_shape

    data = canonical[None].astype(np.float32)
    shape_before = data.shape[1:]
    data, seg, bbox = crop_to_nonzero(data, None)
    shape_after_crop = data.shape[1:]
    data[0] = ZScoreNormalization(use_mask_for_norm=use_mask_for_norm, intensityproperties={}).run(data[0], seg[0])
    new_shape = compute_new_shape(shape_after_crop, spacing, target)
    data = resample_data_or_seg_to_shape(data, new_shape, spacing, target, is_seg=False, order=plan.image_order,
                                         order_z=plan.through_plane_order, force_separate_z=None,
                                         separate_z_anisotropy_threshold=plan.anisotropy_threshold)
    return {"data": data.astype(np.float32), "bbox": [list(b) for b in bbox], "shape_before": shape_before,
            "shape_after_crop": shape_after_crop}


def nnunet_export(logits: np.ndarray, case: dict, spacing, target, plan) -> np.ndarray:
    """nnU-Net's convert_predicted_logits_to_segmentation_with_correct_shape: class indices, canonical order."""
    from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    back = resample_data_or_seg_to_shape(logits, case["shape_after_crop"], target, spacing, is_seg=False,
                                         order=plan.probabilities_order, order_z=plan.through_plane_order,
                                         force_separate_z=None,
                                         separate_z_anisotropy_threshold=plan.anisotropy_threshold)
    seg = np.argmax(np.asarray(back), axis=0).astype(np.uint8)
    full = np.zeros(case["shape_before"], dtype=np.uint8)
    return insert_crop_into_image(full, seg, case["bbox"])


def nnunet_sliding_window(model, data: np.ndarray, patch, num_classes: int, mirror: bool) -> np.ndarray:
    """nnU-Net's predict_sliding_window_return_logits on the CPU (windows one at a time, half-precision sums)."""
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    image = torch.from_numpy(data)
    image, revert = pad_nd_image(image, patch, "constant", {"value": 0}, True, None)
    steps = compute_steps_for_sliding_window(image.shape[1:], patch, 0.5)
    gaussian = compute_gaussian(tuple(patch), sigma_scale=1. / 8, value_scaling_factor=10, device=torch.device("cpu"))
    logits = torch.zeros((num_classes, *image.shape[1:]), dtype=torch.half)
    weights = torch.zeros(image.shape[1:], dtype=torch.half)
    combos = [c for i in range(3) for c in itertools.combinations((2, 3, 4), i + 1)] if mirror else []
    with torch.no_grad():
        for corner in itertools.product(*steps):
            sl = tuple(slice(c, c + p) for c, p in zip(corner, patch))
            x = image[(slice(None), *sl)][None]
            pred = model(x)
            for axes in combos:
                pred += torch.flip(model(torch.flip(x, axes)), axes)
            pred = (pred / (len(combos) + 1))[0]
            logits[(slice(None), *sl)] += pred * gaussian
            weights[sl] += gaussian
        logits /= weights
    return logits[(slice(None), *revert[1:])].float().numpy()


def our_sliding_window(model, data: np.ndarray, patch, num_classes: int, mirror: bool) -> np.ndarray:
    from orthodiff_auto.segmentation.prediction import predict_logits

    return predict_logits(model, data, patch, num_classes, torch.device("cpu"),
                          mirror_axes=(0, 1, 2) if mirror else None).numpy()


def our_export(logits: np.ndarray, props, view_plan, probabilities: bool) -> np.ndarray:
    """What predict_folder writes (the logits resampled, ``probabilities`` False) or what it wrote before issue 17
    (the softmax resampled), as class indices in canonical order."""
    from orthodiff_auto.segmentation.prediction import class_indices

    scores = torch.softmax(torch.from_numpy(logits), 0) if probabilities else torch.from_numpy(logits)
    return props.orientation.to_canonical(class_indices(scores, props, view_plan)[0])


def mean_dice(pred: np.ndarray, ref: np.ndarray, classes) -> float:
    from orthodiff_auto.training.segmentation_metrics import dice_per_class

    values = [d for d in dice_per_class(pred, ref, classes).values() if d == d]
    return float(np.mean(values)) if values else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preprocessed_dir", type=Path)
    ap.add_argument("checkpoint", type=Path, help="a segmentation fold checkpoint of VIEW")
    ap.add_argument("--view", default="sag")
    ap.add_argument("--raw", type=Path)
    ap.add_argument("--tta", action="store_true", help="8 mirrorings in both sliding windows")
    ap.add_argument("--cases", type=int, default=0, help="at most this many test cases (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from orthodiff_auto.data.dataset import scan_raw_dataset
    from orthodiff_auto.data.image_io import read_image
    from orthodiff_auto.data.label_values import label_values, to_class_indices
    from orthodiff_auto.data.orientation import canonical_orientation
    from orthodiff_auto.inference.predictor import SegmentationEnsemble
    from orthodiff_auto.preprocessing.case import preprocess_case

    raw = raw_dataset_of(args.preprocessed_dir, args.raw)
    ensemble = SegmentationEnsemble.load(args.view, [args.checkpoint], torch.device("cpu"))
    plans, model, patch = ensemble.plans, ensemble.models[0], ensemble.patch_size
    view_plan = plans.view(args.view)
    target = tuple(view_plan.target_spacing)
    values = label_values(plans.labels)
    classes = list(range(1, len(values)))
    scans = [s for s in scan_raw_dataset(raw).select("test", args.view) if s.label is not None]
    scans = scans[:args.cases] if args.cases else scans
    windows = {"ours": our_sliding_window, "nnunet": nnunet_sliding_window}
    exports = ("ours", "probabilities", "nnunet")
    combos = list(itertools.product(("ours", "nnunet"), ("ours", "nnunet"), exports))  # preprocessing, window, export
    dice = {c: [] for c in combos}
    print(f"{len(scans)} {args.view} test scans; target spacing {target}; TTA {args.tta}; resampling {view_plan.resampling}")
    for s in scans:
        image, geometry = read_image(s.image)
        orientation = canonical_orientation(geometry)
        spacing = orientation.spacing_to_canonical(geometry.spacing)
        reference = to_class_indices(read_canonical(s.label), values)
        data, _, props = preprocess_case(image, geometry, view_plan)
        theirs = nnunet_preprocess(orientation.to_canonical(image), spacing, target,
                                   view_plan.normalization.use_mask_for_norm, view_plan.resampling)
        same_shape = theirs["data"].shape == data.shape
        diff = np.abs(theirs["data"] - data) if same_shape else None
        print(f"{s.case_id}: spacing {tuple(round(x, 3) for x in spacing)}, crop ours {props.crop_bbox} nnU-Net "
              f"{theirs['bbox']}; shape ours {data.shape[1:]} nnU-Net {theirs['data'].shape[1:]}"
              + (f"; |nnU-Net - ours| max {diff.max():.3f} mean {diff.mean():.4f}" if same_shape else ""))
        inputs = {"ours": data, "nnunet": theirs["data"]}
        for pre, win in itertools.product(("ours", "nnunet"), repeat=2):
            logits = windows[win](model, inputs[pre], patch, plans.num_classes, args.tta)
            for export in exports:
                if export != "nnunet" and pre == "nnunet" and not same_shape:
                    dice[(pre, win, export)].append(float("nan"))
                    continue
                if export != "nnunet":
                    pred = our_export(logits, props, view_plan, probabilities=export == "probabilities")
                else:
                    box = theirs if pre == "nnunet" else {"bbox": [list(b) for b in props.crop_bbox],
                                                          "shape_before": props.shape_before_cropping,
                                                          "shape_after_crop": props.shape_after_cropping}
                    pred = nnunet_export(logits, box, spacing, target, view_plan.resampling)
                dice[(pre, win, export)].append(mean_dice(pred, reference, classes))
    print(f"\nmean foreground Dice over {len(scans)} cases (same weights), TTA {args.tta}")
    print(f"{'preprocessing':14} {'sliding window':15} {'export':14} Dice")
    for (pre, win, export), d in dice.items():
        print(f"{pre:14} {win:15} {export:14} {np.nanmean(d):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
