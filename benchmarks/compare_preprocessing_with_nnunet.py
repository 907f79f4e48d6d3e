#!/usr/bin/env python
"""Our preprocessing against nnU-Net v2's, step by step, and where the Dice of the two parts with the same weights.

Usage::

    python benchmarks/compare_preprocessing_with_nnunet.py PREPROCESSED_DIR [CHECKPOINT] [--view sag] [--tta]

nnU-Net v2 (the optional ``bench`` extra) must be importable by this Python: its functions are called directly
(``crop_to_nonzero``, ``ZScoreNormalization``, ``resample_data_or_seg_to_shape``, ``compute_new_shape``,
``compute_gaussian``), on the scans of VIEW in our canonical orientation, which is what nnU-Net reads in
bench_predict_vs_nnunet.py.

Steps, each fed the same input on both sides (so a difference belongs to that step alone), with the plan's
resampling settings (nnU-Net's defaults: data order 3, seg order 1, order_z 0, ``force_separate_z=None``):

- crop box (``crop_to_nonzero`` vs ``nonzero_bbox``), z-score (``ZScoreNormalization``), new shape;
- image resampling (``resample_data_or_seg_to_shape(is_seg=False)`` vs ``resample_image``): max |difference|;
- label resampling (``is_seg=True``, order 1, on our cropped class indices) vs ``resample_labels``: voxels that
  differ;
- the whole chain end to end (max |difference| of the preprocessed arrays);
- the same resamplings on constructed arrays whose spacings take every branch of nnU-Net's separate-z rule
  (source anisotropic, target anisotropic, two coarse axes, isotropic, coarse axis 0, 1 or 2).

It exits 1 when an image differs by more than ``--tolerance`` or a label voxel differs. With a CHECKPOINT it also
prints the mean foreground Dice on the labelled test scans of every combination of

- preprocessing: ours (``preprocess_case``) or nnU-Net's;
- sliding window: ours (``predict_logits``) or nnU-Net's Gaussian (centred at p // 2, summed in half precision);
- export: what ``predict_folder`` runs (``segmentation.prediction.class_indices`` on the logits), the same on the
  softmax probabilities (what it ran before issue 17), or nnU-Net's own code (logits resampled linearly, then
  argmax, then pasted into the crop box),

so the column that moves the Dice names the step that costs it.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

import orthodiff_auto  # noqa: F401  (before torch: sets OMP_WAIT_POLICY=PASSIVE for a loaded machine)
import torch

from bench_trainer_vs_nnunet import raw_dataset_of, read_canonical


def nnunet_resample(array: np.ndarray, new_shape, spacing, target, plan, is_seg: bool) -> np.ndarray:
    """nnU-Net's resampling_fn_data / resampling_fn_seg with the plan's orders (force_separate_z=None)."""
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    return resample_data_or_seg_to_shape(array, new_shape, spacing, target, is_seg=is_seg,
                                         order=plan.label_order if is_seg else plan.image_order,
                                         order_z=plan.through_plane_order, force_separate_z=None,
                                         separate_z_anisotropy_threshold=plan.anisotropy_threshold)


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


class StepCheck:
    """Worst differences per step over all cases, and whether they are within tolerance."""

    def __init__(self, tolerance: float):
        self.tolerance = tolerance
        self.image_max = 0.0
        self.label_voxels = 0
        self.other: list[str] = []
        self.seconds = {"ours": 0.0, "nnunet": 0.0}

    def image(self, name: str, ours: np.ndarray, theirs: np.ndarray) -> str:
        if ours.shape != theirs.shape:
            self.other.append(f"{name}: shape {ours.shape} vs {theirs.shape}")
            return f"{name} shape differs"
        d = float(np.abs(ours.astype(np.float64) - theirs).max()) if ours.size else 0.0
        self.image_max = max(self.image_max, d)
        return f"{name} max|d| {d:.2e}"

    def labels(self, name: str, ours: np.ndarray, theirs: np.ndarray) -> str:
        if ours.shape != theirs.shape:
            self.other.append(f"{name}: shape {ours.shape} vs {theirs.shape}")
            return f"{name} shape differs"
        n = int((ours.astype(np.int64) != theirs).sum())
        self.label_voxels += n
        return f"{name} {n} of {ours.size} voxels differ"

    def same(self, name: str, ours, theirs) -> str:
        if ours != theirs:
            self.other.append(f"{name}: ours {ours} nnU-Net {theirs}")
        return f"{name} {'equal' if ours == theirs else 'DIFFERS'}"

    def passed(self) -> bool:
        return self.image_max <= self.tolerance and self.label_voxels == 0 and not self.other


def timed(check: StepCheck, side: str, fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    check.seconds[side] += time.perf_counter() - t
    return out


def compare_resampling(check: StepCheck, name: str, image: np.ndarray, label: np.ndarray | None, spacing, target,
                       plan) -> str:
    """Both resamplings of one normalised image (and label map) from ``spacing`` to ``target``."""
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape as nnunet_new_shape
    from orthodiff_auto.preprocessing.resampling import compute_new_shape, resample_image, resample_labels

    new_shape = compute_new_shape(image.shape, spacing, target)
    parts = [check.same("new shape", new_shape, tuple(int(v) for v in nnunet_new_shape(image.shape, spacing, target)))]
    ours = timed(check, "ours", resample_image, image[None], new_shape, spacing, target, plan)
    theirs = timed(check, "nnunet", nnunet_resample, image[None], new_shape, spacing, target, plan, False)
    parts.append(check.image("image", ours, theirs))
    if label is not None:
        ours = timed(check, "ours", resample_labels, label, new_shape, spacing, target, plan)
        theirs = timed(check, "nnunet", nnunet_resample, label[None], new_shape, spacing, target, plan, True)[0]
        parts.append(check.labels("labels", ours, theirs))
    return f"{name}: " + "; ".join(parts)


CONSTRUCTED = [  # (shape, spacing, target): every branch of determine_do_sep_z_and_axis
    ((20, 64, 60), (3.3, 0.45, 0.45), (2.8, 0.5, 0.5)),  # source anisotropic along axis 0
    ((64, 18, 60), (0.45, 3.3, 0.45), (0.5, 4.0, 0.5)),  # along axis 1
    ((50, 60, 15), (0.5, 0.5, 3.0), (0.37, 0.37, 2.6)),  # along axis 2
    ((40, 40, 40), (1.0, 1.0, 1.0), (3.5, 0.9, 0.9)),  # isotropic source, anisotropic target decides
    ((30, 70, 70), (0.24, 1.25, 1.25), (0.6, 0.8, 0.8)),  # two coarse axes: no separate axis
    ((40, 48, 44), (1.1, 0.9, 1.0), (0.8, 1.3, 0.7)),  # isotropic: 3D B-spline
]


def constructed_arrays(check: StepCheck, plan) -> None:
    rng = np.random.default_rng(0)
    for shape, spacing, target in CONSTRUCTED:
        grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
        radius = np.sqrt((grid ** 2).sum(0))
        label = (radius < 0.8).astype(np.uint8) + (radius < 0.4) + 3 * (np.abs(grid[1]) < 0.1)
        image = (label * 1.5 + rng.normal(size=shape)).astype(np.float32)
        print(compare_resampling(check, f"constructed {shape} {spacing} -> {target}", image, label, spacing, target,
                                 plan))


def compare_scan(check: StepCheck, s, view_plan, values) -> str:
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization
    from orthodiff_auto.data.cropping import crop, nonzero_bbox
    from orthodiff_auto.data.image_io import read_image
    from orthodiff_auto.data.label_values import to_class_indices
    from orthodiff_auto.data.orientation import canonical_orientation
    from orthodiff_auto.preprocessing.case import preprocess_case
    from orthodiff_auto.preprocessing.normalization import normalize_image

    image, geometry = read_image(s.image)
    orientation = canonical_orientation(geometry)
    spacing = orientation.spacing_to_canonical(geometry.spacing)
    target = tuple(view_plan.target_spacing)
    canonical = orientation.to_canonical(image).astype(np.float32)
    label = to_class_indices(read_canonical(s.label), values) if s.label is not None else None
    bbox = nonzero_bbox(canonical)
    cropped, theirs_seg, theirs_bbox = crop_to_nonzero(canonical[None].copy(), None)
    parts = [check.same("crop box", [list(map(int, b)) for b in bbox], [list(map(int, b)) for b in theirs_bbox])]
    ours_norm, _ = normalize_image(crop(canonical, bbox), view_plan.normalization)
    theirs_norm = ZScoreNormalization(use_mask_for_norm=view_plan.normalization.use_mask_for_norm,
                                      intensityproperties={}).run(cropped[0], theirs_seg[0])
    parts.append(check.image("z-score", ours_norm, theirs_norm))
    lab = np.ascontiguousarray(crop(label, bbox)).astype(np.uint8) if label is not None else None
    parts.append(compare_resampling(check, "resampling", ours_norm, lab, spacing, target, view_plan.resampling))
    data, _, _ = preprocess_case(image, geometry, view_plan)
    theirs = nnunet_preprocess(canonical, spacing, target, view_plan.normalization.use_mask_for_norm,
                               view_plan.resampling)
    parts.append(check.image("end to end", data, theirs["data"]))
    return f"{s.case_id}: spacing {tuple(round(x, 3) for x in spacing)}; " + "; ".join(parts)


def dice_table(args, raw, view_plan, values) -> None:
    """Mean foreground Dice of every (preprocessing, sliding window, export) combination on the test scans."""
    from orthodiff_auto.data.dataset import scan_raw_dataset
    from orthodiff_auto.data.image_io import read_image
    from orthodiff_auto.data.orientation import canonical_orientation
    from orthodiff_auto.inference.predictor import SegmentationEnsemble
    from orthodiff_auto.preprocessing.case import preprocess_case

    ensemble = SegmentationEnsemble.load(args.view, [args.checkpoint], torch.device("cpu"))
    plans, model, patch = ensemble.plans, ensemble.models[0], ensemble.patch_size
    target = tuple(view_plan.target_spacing)
    classes = list(range(1, len(values)))
    scans = [s for s in scan_raw_dataset(raw).select("test", args.view) if s.label is not None]
    scans = scans[:args.cases] if args.cases else scans
    windows = {"ours": our_sliding_window, "nnunet": nnunet_sliding_window}
    exports = ("ours", "probabilities", "nnunet")
    combos = list(itertools.product(("ours", "nnunet"), ("ours", "nnunet"), exports))
    dice = {c: [] for c in combos}
    for s in scans:
        image, geometry = read_image(s.image)
        orientation = canonical_orientation(geometry)
        spacing = orientation.spacing_to_canonical(geometry.spacing)
        reference = to_indices(read_canonical(s.label), values)
        data, _, props = preprocess_case(image, geometry, view_plan)
        theirs = nnunet_preprocess(orientation.to_canonical(image), spacing, target,
                                   view_plan.normalization.use_mask_for_norm, view_plan.resampling)
        same_shape = theirs["data"].shape == data.shape
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
    print(f"\nmean foreground Dice over {len(scans)} test cases (same weights), TTA {args.tta}")
    print(f"{'preprocessing':14} {'sliding window':15} {'export':14} Dice")
    for (pre, win, export), d in dice.items():
        print(f"{pre:14} {win:15} {export:14} {np.nanmean(d):.4f}")


def to_indices(label, values):
    from orthodiff_auto.data.label_values import to_class_indices

    return to_class_indices(label, values)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preprocessed_dir", type=Path)
    ap.add_argument("checkpoint", type=Path, nargs="?", help="a segmentation fold checkpoint of VIEW: the Dice table")
    ap.add_argument("--view", default="sag")
    ap.add_argument("--raw", type=Path)
    ap.add_argument("--tta", action="store_true", help="8 mirrorings in both sliding windows")
    ap.add_argument("--cases", type=int, default=0, help="at most this many scans per part (0: all)")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="largest |difference| of images that passes")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from orthodiff_auto.data.dataset import scan_raw_dataset
    from orthodiff_auto.data.label_values import label_values
    from orthodiff_auto.plans.schema import Plans

    raw = raw_dataset_of(args.preprocessed_dir, args.raw)
    plans = Plans.load(args.preprocessed_dir / "plans.json")
    view_plan = plans.view(args.view)
    values = label_values(plans.labels)
    check = StepCheck(args.tolerance)
    scans = sorted(scan_raw_dataset(raw).select("train", args.view), key=lambda s: s.case_id)
    scans += sorted(scan_raw_dataset(raw).select("test", args.view), key=lambda s: s.case_id)
    scans = scans[:args.cases] if args.cases else scans
    print(f"{len(scans)} {args.view} scans; target spacing {tuple(view_plan.target_spacing)}; "
          f"{view_plan.resampling}; tolerance {args.tolerance:g}")
    for s in scans:
        print(compare_scan(check, s, view_plan, values))
    constructed_arrays(check, view_plan.resampling)
    print(f"\nworst image |difference| {check.image_max:.2e} (tolerance {args.tolerance:g}); label voxels that "
          f"differ {check.label_voxels}; other differences {check.other or 'none'}")
    print(f"resampling time (the same calls, one thread each): ours {check.seconds['ours']:.2f} s, nnU-Net "
          f"{check.seconds['nnunet']:.2f} s ({check.seconds['nnunet'] / max(check.seconds['ours'], 1e-9):.1f}x)")
    print("PASS: every step equals nnU-Net's" if check.passed() else "FAIL: a step differs from nnU-Net's")
    if args.checkpoint:
        dice_table(args, raw, view_plan, values)
    return 0 if check.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
