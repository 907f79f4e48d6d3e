"""Fine-tuning on one joint from an encoder pretrained on another: a knee-pretrained bundle (tiny, smoke) planned
like and fine-tuned on a tiny ankle dataset through `auto`; an incompatible bundle refused, naming what differs.

Both datasets keep the sagittal view only, so that one pretraining and one fold per task keep the test short."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from orthodiff_auto.cli import main

pytestmark = pytest.mark.slow  # trains folds or runs auto (pytest -m 'not slow' skips it)


def _sagittal_only(raw: Path) -> Path:
    for folder in ("imagesTr", "labelsTr"):
        for path in (raw / folder).glob("*.nii.gz"):
            if not path.name.endswith("_sag.nii.gz"):
                path.unlink()
    return raw


@pytest.fixture(scope="module")
def knee_bundle(tmp_path_factory) -> Path:
    """A knee's pretraining results folder (RESULTS/pretrain) with its sagittal encoder."""
    base = tmp_path_factory.mktemp("knee")
    raw = base / "raw"
    assert main(["generate_synthetic", str(raw), "--cases", "5", "--size", "tiny", "--seed", "1"]) == 0
    _sagittal_only(raw)
    assert main(["plan_and_preprocess", str(raw), "--out", str(base / "preprocessed"), "--budget", "cpu",
                 "-np", "1", "--no-progress"]) == 0
    assert main(["pretrain", str(base / "preprocessed"), "sag", "--config", "smoke", "--set", "num_workers=0",
                 "--set", "num_epochs=1", "--set", "iterations_per_epoch=2", "--set", "num_samples=0"]) == 0
    return base / "results" / "pretrain"


@pytest.fixture(scope="module")
def ankle_raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("ankle") / "raw"
    assert main(["generate_synthetic", str(raw), "--joint", "ankle", "--cases", "5", "--size", "tiny",
                 "--seed", "2"]) == 0
    return _sagittal_only(raw)


def test_knee_pretrained_bundle_fine_tunes_on_an_ankle_through_auto(knee_bundle, ankle_raw, tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["auto", str(ankle_raw), "--work", str(work), "--pretrained-from", str(knee_bundle), "--budget",
                 "cpu", "--config", "smoke", "--folds", "0", "--no-scratch", "--set", "num_workers=0",
                 "--set", "num_epochs=1", "--set", "iterations_per_epoch=2", "-np", "1", "--all-classifiers",
                 "-c", "3d_fullres"]) == 0  # the configuration the knee encoder fits
    out = capsys.readouterr().out
    encoder = knee_bundle / "sag" / "encoder_sag.pt"
    knee_plan = torch.load(encoder, weights_only=True)["plans"]["view_plan"]
    plan = json.loads((work / "preprocessed" / "plans.json").read_text())["views"]["sag"]
    # adopted from the knee: the encoder's architecture, normalisation and spacing
    assert plan["adapted_from"]["encoder"] == str(encoder.resolve())
    assert plan["adapted_from"]["dataset_name"] == "SyntheticKnee"
    for key in ("target_spacing", "normalization"):
        assert plan[key] == knee_plan[key]
    assert plan["segmentation"]["architecture"] == knee_plan["segmentation"]["architecture"]
    # planned for the ankle: its own labels and findings
    assert plan["segmentation"]["num_classes"] == 6 and plan["classification"]["num_findings"] == 4
    assert not (work / "results" / "pretrain").exists()  # nothing pretrained here
    seg = json.loads((work / "results" / "seg" / "sag" / "pretrained" / "fold_0" / "summary.json").read_text())
    assert seg["pretrained_from"] == str(encoder.resolve())
    cls = json.loads((work / "results" / "cls" / "sag" / "pretrained" / "fold_0" / "summary.json").read_text())
    assert cls["pretrained"]["sag"]["num_loaded_tensors"] > 0 and cls["pretrained"]["sag"]["skipped_keys"] == []
    assert "frozen-feature classifiers: skipped" in out and (work / "model" / "model.json").is_file()
    # the work folder's plans adopted this bundle: continuing without it is refused, naming the difference
    assert main(["auto", str(ankle_raw), "--work", str(work), "--config", "smoke", "--folds", "0", "-np", "1"]) == 2
    assert "sag planned like" in capsys.readouterr().err


def test_plan_and_preprocess_like_writes_adapted_plans(knee_bundle, ankle_raw, tmp_path, capsys):
    out = tmp_path / "pp"
    assert main(["plan_and_preprocess", str(ankle_raw), "--out", str(out), "--like", str(knee_bundle / "sag"),
                 "--budget", "cpu", "-np", "1", "--no-progress"]) == 0
    assert "architecture, normalisation and spacing adopted from" in capsys.readouterr().out
    assert json.loads((out / "plans.json").read_text())["views"]["sag"]["adapted_from"]["view"] == "sag"
    assert len(list((out / "sag").glob("*.b2nd"))) >= 5


def test_an_incompatible_bundle_is_refused_naming_what_differs(knee_bundle, ankle_raw, tmp_path, capsys):
    """An encoder taking two input channels (the ankle's scans have one), or pretrained on CT: exit 2 before
    anything is written, the message naming what differs; the same through auto."""
    ckpt = torch.load(knee_bundle / "sag" / "encoder_sag.pt", weights_only=True)
    two = dict(ckpt, in_channels=2)
    for key in ckpt["stem_keys"]:
        if key.endswith("conv.weight"):
            two["state_dict"] = {**two["state_dict"], key: ckpt["state_dict"][key].repeat(1, 2, 1, 1, 1)}
    ct = dict(ckpt, plans={**ckpt["plans"], "modality": "CT"})
    for name, payload, message in (
        ("two_channels", two, "sag: input channels: the encoder takes 2, the dataset's scans have 1"),
        ("ct", ct, "sag: modality: the encoder was pretrained on CT (zscore normalisation), the dataset is MRI"),
    ):
        bad = tmp_path / name / "encoder_sag.pt"
        bad.parent.mkdir()
        torch.save(payload, bad)
        out = tmp_path / f"pp_{name}"
        assert main(["plan_and_preprocess", str(ankle_raw), "--out", str(out), "--like", str(bad), "--budget", "cpu",
                     "-np", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{bad}: cannot plan {ankle_raw} like this pretrained encoder" in err and message in err
        assert not out.exists()
    work = tmp_path / "work"
    assert main(["auto", str(ankle_raw), "--work", str(work), "--pretrained-from", str(tmp_path / "two_channels"),
                 "--budget", "cpu", "--config", "smoke", "-np", "1"]) == 2
    assert "input channels: the encoder takes 2" in capsys.readouterr().err and not work.exists()
