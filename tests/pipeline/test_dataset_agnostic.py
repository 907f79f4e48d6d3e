"""The pipeline assumes nothing of the synthetic knee: `auto` (smoke) and `predict_folder` on datasets with
other label values and names, other findings, another view, orientation and spacing, and no segmentation
labels at all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import ImageGeometry, read_image, write_image

pytestmark = pytest.mark.slow  # trains folds or runs auto (pytest -m 'not slow' skips it)

SMOKE = ["--config", "smoke", "--set", "num_workers=0", "--set", "num_epochs=1", "--set", "iterations_per_epoch=2"]
# Axial scans stored with their slice axis last in the array (ITK's i axis), the in-plane axes flipped, at
# 0.6 x 0.9 mm in plane and 4 mm between slices: unlike the knee's sagittal-first, 2 mm in-plane layout.
SHAPE = (22, 18, 5)
SPACING = (0.9, 0.6, 4.0)  # per array axis
# ITK row-major, columns = the directions of ITK's i, j, k axes (array axes 2, 1, 0): i runs along +z (the slice
# normal of "ax"), j along -y, k along -x.
DIRECTION = (0.0, 0.0, -1.0,
             0.0, -1.0, 0.0,
             1.0, 0.0, 0.0)
LABELS = {"background": 0, "cyst": 4, "wall": 9}
FINDINGS = ["opacity", "septation", "fluid_level"]


def _scan(rng: np.random.Generator, flags: dict[str, int], with_labels: bool, shape=SHAPE):
    image = rng.normal(50.0, 4.0, size=shape).astype(np.float32)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    centre = np.array(shape) / 2 + rng.uniform(-1.5, 1.5, 3) * (1, 1, 0)
    r = np.sqrt(((ii - centre[0]) / 6.0) ** 2 + ((jj - centre[1]) / 5.0) ** 2 + ((kk - centre[2]) / 2.0) ** 2)
    label = np.zeros(shape, dtype=np.uint8)
    label[r < 1.3] = LABELS["wall"]
    label[r < 1.0] = LABELS["cyst"]
    image[label == LABELS["wall"]] += 60
    image[label == LABELS["cyst"]] += 150 + 120 * flags["opacity"]
    if flags["septation"]:
        image[(label == LABELS["cyst"]) & (np.abs(jj - centre[1]) < 0.8)] -= 100
    if flags["fluid_level"]:
        image[(label == LABELS["cyst"]) & (ii > centre[0])] += 80
    return image, (label if with_labels else None)


def write_dataset(root: Path, n_train: int, n_test: int, with_labels: bool, seed: int, shape=SHAPE) -> Path:
    rng = np.random.default_rng(seed)
    g = ImageGeometry(shape, SPACING, (10.0, -20.0, 5.0), DIRECTION)
    for folder in ("imagesTr", "imagesTs") + (("labelsTr",) if with_labels else ()):
        (root / folder).mkdir(parents=True)
    json.dump({"name": "Cysts", "modality": "MR", "views": ["ax"], "findings": FINDINGS,
               "labels": LABELS if with_labels else {"background": 0}},
              open(root / "dataset.json", "w"))
    rows = []
    for i in range(n_train + n_test):
        flags = {f: int(b) for f, b in zip(FINDINGS, ((i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1))}
        image, label = _scan(rng, flags, with_labels, shape)
        case, folder = (f"p{i:03d}", "imagesTr") if i < n_train else (f"t{i:03d}", "imagesTs")
        write_image(root / folder / f"{case}_ax.nii.gz", image, g)
        if label is not None and i < n_train:
            write_image(root / "labelsTr" / f"{case}_ax.nii.gz", label, g)
        if i < n_train:
            rows.append({"case_id": case, **flags})
    pd.DataFrame(rows).to_csv(root / "findings.csv", index=False)
    return root


@pytest.mark.parametrize("with_labels", [True, False], ids=["other-labels", "no-segmentation-labels"])
def test_auto_and_predict_folder_on_an_unknown_dataset(tmp_path, capsys, with_labels):
    raw = write_dataset(tmp_path / "raw", n_train=10, n_test=2, with_labels=with_labels, seed=3)
    work = tmp_path / "work"
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--folds", "0", "--no-scratch",
                 "--no-noised-classifiers", "--no-frozen-features", "-np", "1", *SMOKE,
                 "--pretrain-set", "num_epochs=1", "--pretrain-set", "iterations_per_epoch=2",
                 "--pretrain-set", "num_samples=0"]) == 0, capsys.readouterr().err
    plans = json.loads((work / "preprocessed" / "plans.json").read_text())
    view = plans["views"]["ax"]
    assert set(plans["views"]) == {"ax"} and plans["findings"] == FINDINGS
    # the through-plane axis comes first whatever the file's layout; its spacing is the file's 4 mm
    assert view["target_spacing"][0] == pytest.approx(4.0)
    assert view["classification"]["num_findings"] == 3
    assert view["classification"]["roi_source"] == ("labels" if with_labels else "field_of_view")

    out = tmp_path / "pred"
    assert main(["predict_folder", str(raw / "imagesTs"), str(out), "--model", str(work / "model")]) == 0
    table = pd.read_csv(out / "findings.csv")
    assert sorted(table["case_id"]) == ["t010", "t011"]
    for name in FINDINGS:
        assert table[name].between(0, 1).all() and table[f"{name}_call"].isin([0, 1]).all()
    for case in ("t010", "t011"):
        segmentation = out / f"{case}_ax.nii.gz"
        if not with_labels:
            assert not segmentation.exists()
            continue
        _, geometry = read_image(raw / "imagesTs" / f"{case}_ax.nii.gz")
        predicted, predicted_geometry = read_image(segmentation)
        # the file's own geometry and label values come back, not class indices or the canonical layout
        assert predicted_geometry.shape == geometry.shape == SHAPE
        assert np.allclose(predicted_geometry.direction, DIRECTION)
        assert np.allclose(predicted_geometry.spacing, SPACING)
        assert set(np.unique(predicted)) <= set(LABELS.values())


# A field of view large enough that the cpu plan's 3d_fullres patch covers under a quarter of the image: nnU-Net's
# rule then plans 3d_lowres and the cascade.
WIDE_SHAPE = (240, 200, 5)


def test_configurations_and_the_cascade_on_an_unknown_dataset(tmp_path, capsys):
    import torch

    from orthodiff_auto.inference.predictor import SegmentationEnsemble

    raw = write_dataset(tmp_path / "raw", n_train=10, n_test=2, with_labels=True, seed=5, shape=WIDE_SHAPE)
    work = tmp_path / "work"
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--folds", "0", "--no-pretrain",
                 "-c", "2d", "3d_cascade_fullres", "-np", "1", *SMOKE]) == 0, capsys.readouterr().err
    view = json.loads((work / "preprocessed" / "plans.json").read_text())["views"]["ax"]
    assert set(view["configurations"]) == {"2d", "3d_lowres", "3d_cascade_fullres"}
    lowres = view["configurations"]["3d_lowres"]
    assert lowres["data_identifier"] == "ax_3d_lowres" and lowres["target_spacing"][1] > view["target_spacing"][1]
    assert view["configurations"]["3d_cascade_fullres"]["previous_stage"] == "3d_lowres"

    seg = work / "results" / "seg" / "ax"
    # 3d_fullres was not asked for; the cascade's first stage trained on every fold and predicted every case once
    assert sorted(p.name for p in seg.iterdir()) == ["2d_scratch", "3d_cascade_fullres_scratch", "3d_lowres_scratch"]
    assert len(list((seg / "3d_lowres_scratch").glob("fold_*/summary.json"))) == 5
    assert len(list((seg / "3d_lowres_scratch" / "predicted_next_stage").glob("*.npz"))) == 10
    # without 3d_fullres the anatomy reader reads the 2d segmentation of its fold
    anatomy = json.loads((work / "results" / "cls" / "ax" / "anatomy" / "fold_0" / "summary.json").read_text())
    assert Path(anatomy["segmentation_read"]["ax"]) == seg / "2d_scratch" / "fold_0"
    # several runs of the view: auto kept their validation probabilities and model selection scored every pair
    pairs = json.loads((work / "model" / "model.json").read_text())["candidates"]["segmentation_ensembles"]["ax"]
    assert set(pairs) == {"2d_scratch+3d_cascade_fullres_scratch", "2d_scratch+3d_lowres_scratch",
                          "3d_cascade_fullres_scratch+3d_lowres_scratch"}
    assert {p["n_cases"] for p in pairs.values()} == {len(list((seg / "2d_scratch" / "fold_0" / "validation").iterdir()))}

    image, geometry = read_image(raw / "imagesTs" / "t010_ax.nii.gz")
    first = SegmentationEnsemble.load("ax", sorted((seg / "3d_lowres_scratch").glob("fold_*/checkpoint_final.pt")),
                                      torch.device("cpu"))
    for ensemble in (first, SegmentationEnsemble.load("ax", [seg / "3d_cascade_fullres_scratch" / "fold_0" /
                                                             "checkpoint_final.pt"], torch.device("cpu"), previous=first)):
        labels = ensemble.segment(image, geometry, torch.device("cpu"))
        assert labels.shape == image.shape and set(np.unique(labels)) <= set(LABELS.values())

    # model folders whose segmentation is 2d, then (2d set aside) 3d_lowres or the cascade with its first stage
    shutil.move(seg / "2d_scratch", tmp_path / "2d_scratch")
    assert main(["find_best_configuration", str(work / "preprocessed"), "--out", str(work / "model_3d"),
                 "--folds", "0"]) == 0
    chosen = json.loads((work / "model_3d" / "model.json").read_text())["segmentation"]["ax"]
    assert chosen["configuration"] in ("3d_lowres", "3d_cascade_fullres")
    assert (chosen.get("previous_stage") or {}).get("configuration") == (
        "3d_lowres" if chosen["configuration"] == "3d_cascade_fullres" else None)
    for model in ("model", "model_3d"):
        out = tmp_path / f"pred_{model}"
        assert main(["predict_folder", str(raw / "imagesTs"), str(out), "--model", str(work / model)]) == 0
        for case in ("t010", "t011"):
            predicted, predicted_geometry = read_image(out / f"{case}_ax.nii.gz")
            assert predicted_geometry.shape == WIDE_SHAPE and np.allclose(predicted_geometry.spacing, SPACING)
            assert set(np.unique(predicted)) <= set(LABELS.values())
