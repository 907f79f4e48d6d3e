#!/usr/bin/env python
"""Where the prediction time of one scan goes: the wall time of each step, then cProfile's top entries.

Usage::

    python benchmarks/profile_prediction.py MODEL_DIR SCAN --view sag [--tta] [--repeats 3] [--top 20]

MODEL_DIR is a model folder (``auto``'s WORK/model or ``find_best_configuration``'s), SCAN any image file of VIEW
(for instance a ``generate_synthetic --size clinical`` scan). Steps, each timed on its own (median of
``--repeats``): reading the file, preprocessing (reorient, crop, normalise, resample), the sliding window (the
network, with the softmax over folds), the export (resampling back and argmax) and writing the label map; then one
whole ``Predictor.predict_files`` plus the write under cProfile, sorted by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path


def timed(fn, repeats: int):
    seconds, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("scan", type=Path)
    ap.add_argument("--view", default="sag")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args(argv)

    from orthodiff_auto.data.image_io import read_image, write_image  # first: sets OMP_WAIT_POLICY before torch
    from orthodiff_auto.inference.predictor import Predictor
    from orthodiff_auto.segmentation.prediction import label_map_in_original_geometry
    import torch

    predictor = Predictor(args.model_dir, device=args.device, tta=args.tta)
    segmenter = predictor.segmenters[args.view]
    device = predictor.device
    out = Path(tempfile.mkdtemp(prefix="profile_prediction_")) / "label.nii.gz"
    steps = {}
    steps["read"], (image, geometry) = timed(lambda: read_image(args.scan), args.repeats)
    steps["preprocess"], prepared = timed(lambda: predictor.prepare_case({args.view: (image, geometry)}), args.repeats)
    scan = prepared[args.view]
    mirror = (0, 1, 2) if args.tta else None

    def network():
        scores = segmenter.scores(scan.data, device, predictor.overlap, mirror)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return scores

    steps["sliding window (network)"], scores = timed(network, args.repeats)
    view_plan = segmenter.plans.view(args.view)
    steps["export (resample back, argmax)"], labels = timed(
        lambda: label_map_in_original_geometry(scores, scan.properties, view_plan, segmenter.plans.labels),
        args.repeats)
    steps["write"], _ = timed(lambda: write_image(out, labels, geometry), args.repeats)
    print(f"scan {args.scan.name}: shape {geometry.shape}, spacing {tuple(round(s, 3) for s in geometry.spacing)}; "
          f"preprocessed {tuple(scan.data.shape[1:])}; device {device}; TTA {args.tta}; "
          f"{torch.get_num_threads()} torch threads")
    total = sum(steps.values())
    for name, seconds in steps.items():
        print(f"  {name:34} {seconds:8.3f} s  {seconds / total:6.1%}")
    print(f"  {'sum':34} {total:8.3f} s")

    profile = cProfile.Profile()
    profile.enable()
    prediction = predictor.predict_files("case", {args.view: args.scan})
    write_image(out, prediction.segmentations[args.view], geometry)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(args.top)
    print(text.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
