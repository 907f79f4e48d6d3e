"""A trained model folder for the inference tests, with label values that have a gap.

Two views (sag, cor) of a bright ball and a brighter box on noise; dataset.json declares background 0, ball 1 and
box 5 (a gap: the network's channels are 0, 1, 2). One segmentation fold per view is trained long enough to
find both structures (80 steps: mean validation Dice about 0.8 on this data), and one fused findings
classifier (smoke config); the model folder is assembled from their final checkpoints.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from orthodiff_auto.data.image_io import write_image
from orthodiff_auto.inference.model_dir import ModelDescription, TaskChoice
from orthodiff_auto.networks.builder import build_segmentation_network
from orthodiff_auto.pipeline.train_fold import train_fold
from orthodiff_auto.plans.schema import Budget
from orthodiff_auto.preprocessing.stages import run_fingerprint, run_plan, run_preprocess, validated_dataset
from orthodiff_auto.training.checkpoint import save_checkpoint
from orthodiff_auto.training.config import make_config
from orthodiff_auto.training.fold import FoldRequest
from tests.conftest import sphere_scan, view_geometry, write_sphere_dataset

LABELS = {"background": 0, "ball": 1, "box": 5}
VIEWS = ("sag", "cor")
FINDINGS = ("f1", "f2")
SHAPE = (6, 24, 24)
SPACING = (3.0, 1.0, 1.0)


def gapped_scan(view: str, seed: int, shape=SHAPE, spacing=SPACING, origin=(0.0, 0.0, 0.0)):
    """(image, label, geometry): sphere_scan's ball (1) and box (2 -> 5)."""
    g = view_geometry(view, shape=shape, spacing=spacing, origin=origin)
    image, label = sphere_scan(g.shape, np.random.default_rng(seed))
    label[label == 2] = LABELS["box"]
    return image, label, g


def _raw_dataset(root: Path, n_cases: int = 6) -> Path:
    findings = {FINDINGS[0]: lambda i: i % 2, FINDINGS[1]: lambda i: (i // 2) % 2}
    return write_sphere_dataset(root, [f"k{i:02d}" for i in range(n_cases)], VIEWS, LABELS, findings,
                                lambda i, view: gapped_scan(view, seed=10 * i + VIEWS.index(view)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model folder of two random-weight segmentation folds per view (sag, cor; labels 0, 1, 2), no classifier:
    fast, for what does not need a trained model."""
    base = tmp_path_factory.mktemp("model")
    raw = base / "raw"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    json.dump({"name": "T", "labels": {"background": 0, "a": 1, "b": 2}, "views": ["sag", "cor"]},
              open(raw / "dataset.json", "w"))
    rng = np.random.default_rng(0)
    for i in range(3):
        for view in ("sag", "cor"):
            g = view_geometry(view, shape=(6, 24, 24), spacing=(3.0, 1.0, 1.0))
            image, label = sphere_scan(g.shape, rng)
            write_image(raw / "imagesTr" / f"c{i}_{view}.nii.gz", image, g)
            write_image(raw / "labelsTr" / f"c{i}_{view}.nii.gz", label, g)
    run_fingerprint(validated_dataset(raw), base / "pp", num_workers=1, progress=False)
    plans, _ = run_plan(base / "pp", Budget("cpu", 0.25))
    model = base / "model"
    model.mkdir()
    shutil.copy(base / "pp" / "plans.json", model / "plans.json")
    choices = {}
    for view in ("sag", "cor"):
        paths = []
        for fold in (0, 1):
            torch.manual_seed(fold + (10 if view == "cor" else 0))
            net = build_segmentation_network(plans.view(view).segmentation.architecture, 1, plans.num_classes)
            rel = f"seg/{view}/fold_{fold}.pt"
            save_checkpoint(model / rel, {"task": "seg", "model": net.state_dict(),
                                          "extras": {"plans": plans.to_dict(), "view": view,
                                                     "patch_size": list(plans.view(view).segmentation.patch_size)}})
            paths.append(rel)
        choices[view] = TaskChoice(view, "scratch", tuple(paths), {"mean_dice": 0.5})
    ModelDescription({"name": "T", "labels": plans.labels, "findings": []}, choices, None).save(model)
    return model


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("trained_model")
    raw = _raw_dataset(base / "raw")
    pp, results, model = base / "pp", base / "results", base / "model"
    dataset = validated_dataset(raw, num_workers=1)
    run_fingerprint(dataset, pp, num_workers=1, progress=False)
    run_plan(pp, Budget("cpu", 0.25))
    run_preprocess(dataset, pp, num_workers=1, progress=False)
    seg_config = make_config("smoke", ["num_epochs=8", "iterations_per_epoch=10", "num_workers=0"])
    segmentation = {}
    for view in VIEWS:
        summary = train_fold(FoldRequest(pp, "seg", view, 0, seg_config, results_dir=results, device="cpu"),
                             log=lambda *_: None)
        rel = f"seg/{view}/fold_0.pt"
        (model / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(results / "seg" / view / "scratch" / "fold_0" / "checkpoint_final.pt", model / rel)
        segmentation[view] = TaskChoice(view, "scratch", (rel,), {"mean_dice": summary["mean"]["mean"]["dice"]["mean"]})
    train_fold(FoldRequest(pp, "cls", "fused", 0, make_config("smoke"), results_dir=results, device="cpu"),
               log=lambda *_: None)
    (model / "cls" / "fused").mkdir(parents=True)
    shutil.copy(results / "cls" / "fused" / "scratch_gate" / "fold_0" / "checkpoint_final.pt",
                model / "cls" / "fused" / "fold_0.pt")
    shutil.copy(pp / "plans.json", model / "plans.json")
    dataset_description = json.loads((pp / "dataset.json").read_text())
    fused = TaskChoice("fused", "scratch_gate", ("cls/fused/fold_0.pt",), {"views": list(VIEWS)})
    # the fused model masks a missing view, so it serves a case with either view alone too
    by_views = {"sag+cor": fused, "sag": fused, "cor": fused}
    ModelDescription(dataset_description, segmentation, fused, classification_by_views=by_views).save(model)
    return model
