"""`auto` end to end on tiny generated data with the smoke config, then predict_folder and evaluate: the model
folder reproduces training's own validation predictions, and the test scores clear a floor."""

import json
import shutil

import numpy as np
import pandas as pd

import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_image

pytestmark = pytest.mark.slow  # trains folds or runs auto (pytest -m 'not slow' skips it)


@pytest.mark.timeout(900)  # the whole pipeline: every classifier family competes (noised ones: tests/classification)
def test_auto_predict_evaluate_end_to_end(tmp_path, capsys):
    raw = tmp_path / "raw"
    assert main(["generate_synthetic", str(raw), "--cases", "6", "--test", "2", "--unlabeled", "2", "--size", "tiny",
                 "--seed", "3", "--complete"]) == 0
    work = tmp_path / "work"
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--config", "smoke", "--folds", "0",
                 "--set", "num_workers=0", "--pretrain-set", "num_workers=0", "-np", "1",
                 "--no-noised-classifiers", "--all-classifiers"]) == 0
    out = capsys.readouterr().out
    assert "Cross-validation report" in out
    model = json.loads((work / "model" / "model.json").read_text())
    assert set(model["segmentation"]) == {"sag", "cor", "ax"}
    assert model["classification"] is not None
    for view in ("sag", "cor", "ax"):
        assert (work / "results" / "pretrain" / view / f"encoder_{view}.pt").is_file()
        assert (work / "results" / "pretrain" / view / "probe.json").is_file()
        assert (work / "results" / "cls" / view / "diffusion" / "fold_0" / "summary.json").is_file()
    # every classifier family competed in model selection: fine-tuned per view and fused, frozen-feature fused
    assert (work / "results" / "cls" / "fused" / "scratch_gate" / "fold_0" / "summary.json").is_file()
    assert (work / "results" / "cls" / "fused" / "diffusion_gate" / "fold_0" / "summary.json").is_file()
    assert (work / "results" / "cls" / "fused" / "anatomy" / "fold_0" / "summary.json").is_file()
    assert not (work / "results" / "cls" / "sag" / "noised_t100").exists()  # --no-noised-classifiers
    # a classifier for every combination of views a case can arrive with
    assert set(model["classification_by_views"]) == {"sag+cor+ax", "sag+cor", "sag+ax", "cor+ax", "sag", "cor", "ax"}
    # a second run finds every stage done
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--config", "smoke", "--folds", "0",
                 "-np", "1", "--no-noised-classifiers", "--all-classifiers"]) == 0
    again = capsys.readouterr().out
    assert "done" in again and "== pretrain sag: done" in again
    # the cpu budget's segmentation configuration is 2d (benchmarks.md, "Segmentation configurations")
    assert "== seg sag fold 0 (2d_scratch): done" in again and "== cls fused fold 0 (scratch_gate): done" in again
    # predict_folder with the model folder reproduces, voxel for voxel, what the chosen fold predicted for its
    # validation scans during training (raw file -> preprocessing -> network -> original geometry, both ways)
    variant = model["segmentation"]["sag"]["variant"]
    validation = sorted((work / "results" / "seg" / "sag" / variant / "fold_0" / "validation").glob("*.nii.gz"))
    assert validation
    single = tmp_path / "validation_case"
    single.mkdir()
    shutil.copy(raw / "imagesTr" / validation[0].name, single / validation[0].name)
    assert main(["predict_folder", str(single), str(tmp_path / "again"), "--model", str(work / "model"),
                 "--folds", "0"]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "again" / validation[0].name, dtype=None)[0],
                                  read_image(validation[0], dtype=None)[0])
    preds = tmp_path / "preds"
    assert main(["predict_folder", str(raw / "imagesTs"), str(preds), "--model", str(work / "model")]) == 0
    assert len(list(preds.glob("*.nii.gz"))) == len(list((raw / "imagesTs").glob("*.nii.gz")))
    assert (preds / "findings.csv").is_file()
    assert main(["evaluate", str(preds), str(raw), "--bootstrap", "50"]) == 0
    summary = json.loads((preds / "evaluation" / "summary.json").read_text())
    assert summary["segmentation"]["n_scans"] == len(list((raw / "imagesTs").glob("*.nii.gz")))
    # a floor the smoke models clear (femur Dice 0.21 on these test scans when measured) and an empty,
    # misplaced or wrongly labelled output does not (about 0)
    assert summary["segmentation"]["overall"]["femur"]["dice"]["mean"] > 0.1
    fnd = summary["findings"]
    assert fnd["n_cases"] == fnd["n_reference"] == 2 and not fnd["not_assessed"]
    assert fnd["threshold_method"] == "thresholds.json"
    table = pd.read_csv(preds / "findings.csv")
    probabilities = table[json.loads((raw / "dataset.json").read_text())["findings"]].to_numpy()
    assert ((probabilities > 0) & (probabilities < 1)).all()
