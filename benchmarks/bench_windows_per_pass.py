"""Seconds of sliding-window inference of one preprocessed scan per number of windows stacked in a forward pass.

    python benchmarks/bench_windows_per_pass.py --fold FOLD_DIR --preprocessed PRE --view VIEW [--batches 2,8,16,33]

FOLD_DIR is a trained segmentation fold (its checkpoint_final.pt holds the plans and the configuration); the
first preprocessed case of VIEW in PRE is predicted with ``segmentation.prediction.predict_logits`` twice per
batch size (the second time is printed, the first warms the allocator), with the default of
``sliding_window.windows_per_pass`` last; the labels are compared with those of the first batch size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main(argv=None) -> int:
    from orthodiff_auto.networks.builder import build_segmentation_network
    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.preprocessing.storage import PreprocessedDataset
    from orthodiff_auto.segmentation.prediction import predict_logits
    from orthodiff_auto.training.checkpoint import load_checkpoint
    from orthodiff_auto.training.sliding_window import windows_per_pass

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fold", required=True)
    p.add_argument("--preprocessed", required=True)
    p.add_argument("--view", required=True)
    p.add_argument("--batches", default="2,8,16,33")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(f"{args.fold}/checkpoint_final.pt")
    plans = Plans.from_dict(ckpt["extras"]["plans"])
    view_plan = plans.view(args.view).for_configuration(ckpt["extras"].get("configuration", "3d_fullres"))
    net = build_segmentation_network(view_plan.segmentation.architecture, 1, plans.num_classes,
                                     deep_supervision=False, initialize=False)
    net.load_state_dict(ckpt["model"])
    net.eval()
    patch = tuple(ckpt["extras"].get("patch_size") or view_plan.segmentation.patch_size)
    source = PreprocessedDataset(args.preprocessed, args.view)
    case = sorted(source.case_ids())[0]
    data = np.asarray(source.load(case)[0][...], dtype=np.float32)
    print(f"{case} {tuple(data.shape)}, window {patch}, {torch.get_num_threads()} threads")
    reference = None
    for batch in [int(b) for b in args.batches.split(",")] + [None]:
        for _ in range(2):
            start = time.perf_counter()
            labels = predict_logits(net, data, patch, plans.num_classes, torch.device("cpu"), batch_size=batch).argmax(0)
            seconds = time.perf_counter() - start
        reference = labels if reference is None else reference
        name = f"{batch}" if batch is not None else f"default ({windows_per_pass(patch)})"
        print(f"windows per pass {name}: {seconds:.2f} s, labels as the first: {bool((labels == reference).all())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
