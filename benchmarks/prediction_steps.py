#!/usr/bin/env python
"""What ``predict_folder`` spends per case besides the forward passes: each step timed on its own, in sequence in
one process (no background threads), medians over every scan of a folder.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/prediction_steps.py MODEL_DIR INPUT_DIR [--view sag] [--repeats 2]

MODEL_DIR is a model folder that segments VIEW (``find_best_configuration``'s, or ``bench_predict_vs_nnunet.py
--work W``'s ``W/model_ours``), INPUT_DIR a folder of ``*.nii.gz`` scans of VIEW (``W/input_ours``). Steps: reading,
preprocessing (``Predictor.prepare_case``), the sliding window (``SegmentationEnsemble.scores``, no TTA), the same
number of forward passes alone (random windows, in batches of 2, the predictor's default), the export
(``class_indices``: argmax on the grid and resampled back), the label values and writing. "scores" minus "forward
passes alone" is the sliding window's own work. ``benchmarks/profile_prediction.py`` profiles one scan under cProfile.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orthodiff_auto  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch is imported)
from orthodiff_auto.data.image_io import read_image, write_image
from orthodiff_auto.data.label_values import label_values, to_label_values
from orthodiff_auto.inference.predictor import Predictor
from orthodiff_auto.segmentation.prediction import class_indices
from orthodiff_auto.training.sliding_window import compute_window_starts

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("inputs", type=Path)
    ap.add_argument("--view", default="sag")
    ap.add_argument("--repeats", type=int, default=2, help="times every scan is timed (default 2)")
    args = ap.parse_args(argv)
    predictor = Predictor(args.model, device="cpu")
    segmenter = predictor.segmenters[args.view]
    model, device, patch = segmenter.models[0], predictor.device, segmenter.patch_size
    files = sorted(args.inputs.glob("*.nii.gz"))
    out = Path(tempfile.mkdtemp(prefix="prediction_steps_"))
    seconds = {k: [] for k in ("read", "preprocess", "scores", "forward passes alone", "export (class_indices)",
                               "label values", "write")}

    def timed(name, fn):
        t0 = time.perf_counter()
        result = fn()
        seconds[name].append(time.perf_counter() - t0)
        return result

    def forward_passes(n_windows):
        with torch.no_grad():
            for first in range(0, n_windows, 2):
                model(torch.randn(min(2, n_windows - first), 1, *patch))

    warm = predictor.prepare_case({args.view: read_image(files[0])})[args.view]  # the first passes are slower
    segmenter.scores(warm.data, device, predictor.overlap, None)
    for _ in range(args.repeats):
        for f in files:
            image, geometry = timed("read", lambda: read_image(f))
            scan = timed("preprocess", lambda: predictor.prepare_case({args.view: (image, geometry)}))[args.view]
            scores = timed("scores", lambda: segmenter.scores(scan.data, device, predictor.overlap, None))
            shape = [max(n, p) for n, p in zip(scan.data.shape[1:], patch)]
            n_windows = int(np.prod([len(a) for a in compute_window_starts(shape, patch, predictor.overlap)]))
            timed("forward passes alone", lambda: forward_passes(n_windows))
            indices, _ = timed("export (class_indices)",
                               lambda: class_indices(scores, scan.properties, segmenter.plans.view(args.view)))
            labels = timed("label values", lambda: to_label_values(indices, label_values(segmenter.plans.labels)))
            timed("write", lambda: write_image(out / f.name, labels, geometry))
    print(f"{len(files)} scans x {args.repeats}; {torch.get_num_threads()} torch threads; ms per case:")
    for name, values in seconds.items():
        print(f"  {name:24} median {statistics.median(values) * 1000:8.1f}  mean {statistics.mean(values) * 1000:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
