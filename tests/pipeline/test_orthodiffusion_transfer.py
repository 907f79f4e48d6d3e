"""As a user of both would: a checkpoint in the OrthoDiffusion authors' layout (reduced width) straight into
`install_pretrained --from orthodiffusion`, then `auto --pretrained-from` on a tiny dataset and `predict_folder`
from the model it selects. The dataset keeps the sagittal view only, so one fold per task keeps it short."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orthodiff_auto.cli import main
from tests.diffusion.orthodiffusion_checkpoint import write_authors_checkpoint


def _sagittal_only(raw: Path) -> Path:
    for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        for path in (raw / folder).glob("*.nii.gz"):
            if not path.name.endswith("_sag.nii.gz"):
                path.unlink()
    return raw


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 4-6 minutes on 2 busy cores: segmentation at the authors' 256-voxel grid
def test_authors_checkpoint_to_auto_and_predict_folder(tmp_path, capsys):
    ckpt = tmp_path / "sagittal_model.pt"
    write_authors_checkpoint(ckpt)
    bundle = tmp_path / "orthodiffusion"
    assert main(["install_pretrained", str(ckpt), str(bundle), "--from", "orthodiffusion", "--view", "sag"]) == 0
    raw = tmp_path / "raw"
    assert main(["generate_synthetic", str(raw), "--cases", "5", "--test", "2", "--size", "tiny", "--seed", "3"]) == 0
    _sagittal_only(raw)
    work = tmp_path / "work"
    assert main(["auto", str(raw), "--work", str(work), "--pretrained-from", str(bundle), "--budget", "cpu",
                 "--config", "smoke", "--folds", "0", "--no-scratch", "--set", "num_workers=0",
                 "--set", "num_epochs=1", "--set", "iterations_per_epoch=2", "-np", "1",
                 "--no-anatomy-features", "-c", "3d_fullres"]) == 0  # the anatomy reader is not what this test is about (170 s)
    plan = json.loads((work / "preprocessed" / "plans.json").read_text())["views"]["sag"]
    encoder = bundle / "sag" / "encoder_sag.pt"
    assert plan["adapted_from"]["encoder"] == str(encoder.resolve())
    assert plan["segmentation"]["architecture"]["network_class"] == "OrthoDiffusionUNet"
    assert plan["normalization"]["scheme"] == "range"
    # the authors' grid: in plane the median field of view over 256 voxels, through the plane the slices as acquired
    fingerprint = json.loads((work / "preprocessed" / "fingerprint.json").read_text())["views"]["sag"]
    assert plan["target_spacing"][0] == pytest.approx(fingerprint["median_spacing"][0], rel=1e-5)
    seg = json.loads((work / "results" / "seg" / "sag" / "pretrained" / "fold_0" / "summary.json").read_text())
    assert seg["pretrained_from"] == str(encoder.resolve())
    cls = json.loads((work / "results" / "cls" / "sag" / "pretrained" / "fold_0" / "summary.json").read_text())
    assert cls["pretrained"]["sag"]["num_loaded_tensors"] > 0 and cls["pretrained"]["sag"]["skipped_keys"] == []
    # frozen features of the bundle's denoiser: probed on this dataset (in its own results folder, the bundle
    # untouched), t and block chosen on the fold's training cases among the authors' blocks
    probe = json.loads((work / "results" / "pretrain" / "sag" / "probe.json").read_text())
    assert "middle_block.2" in probe["blocks"] and not (bundle / "sag" / "probe.json").exists()
    frozen = json.loads((work / "results" / "cls" / "sag" / "diffusion" / "fold_0" / "summary.json").read_text())
    assert frozen["fold"] in (0, "0")
    preds = tmp_path / "preds"
    assert main(["predict_folder", str(raw / "imagesTs"), str(preds), "--model", str(work / "model")]) == 0
    assert len(list(preds.glob("*.nii.gz"))) == len(list((raw / "imagesTs").glob("*.nii.gz"))) > 0
