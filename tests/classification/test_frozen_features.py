"""``--set classifier_features=diffusion``: a light head on frozen denoiser features at the probe's choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from orthodiff_auto.classification.diffusion_head import FrozenFeatureHead
from orthodiff_auto.classification.diffusion_reader import FeatureBatches
from orthodiff_auto.classification.inference import FindingsEnsemble
from orthodiff_auto.classification.metrics_io import read_validation_predictions
from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.diffusion.probe import PROBE_FEATURES, fold_choice, read_probe_features
from orthodiff_auto.pipeline.model_selection import classification_candidates
from tests.classification.conftest import CASES, FINDINGS, NO_COR

FROZEN = ["--config", "smoke", "--set", "classifier_features=diffusion", "--set", "num_epochs=5",
          "--set", "iterations_per_epoch=8", "--set", "batch_size=8"]
PRETRAIN = ["--config", "smoke", "--set", "num_epochs=1", "--set", "iterations_per_epoch=2", "--set", "num_samples=0",
            "--device", "cpu"]


@pytest.fixture(scope="module")
def probed(cls_preprocessed, tmp_path_factory) -> Path:
    """A results folder whose sag and cor views are smoke-pretrained and probed."""
    out = tmp_path_factory.mktemp("frozen")
    for view in ("sag", "cor"):
        assert main(["pretrain", str(cls_preprocessed), view, "--results", str(out), *PRETRAIN]) == 0
        assert main(["probe", str(cls_preprocessed), view, "--results", str(out), "--timesteps", "10,200",
                     "--device", "cpu"]) == 0
    return out


def _case_scans(raw: Path, case: str, views=("sag", "cor")):
    return {v: read_image(raw / f"{case}_{v}.nii.gz") for v in views if (raw / f"{case}_{v}.nii.gz").is_file()}


@pytest.mark.slow
def test_single_view_lowers_loss_writes_outputs_and_predicts(probed, cls_preprocessed):
    assert main(["train_fold", str(cls_preprocessed), "cls", "sag", "0", "--results", str(probed), *FROZEN]) == 0
    fold = probed / "cls" / "sag" / "diffusion" / "fold_0"  # never the fine-tuned runs' folder
    for name in ("checkpoint_final.pt", "validation_predictions.csv", "summary.json", "progress.png"):
        assert (fold / name).is_file(), name
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    losses = ckpt["history"]["train_loss"]
    assert losses[-1] < losses[0]
    extras = ckpt["extras"]
    probe = json.loads((probed / "pretrain" / "sag" / "probe.json").read_text())
    spec = extras["diffusion_features"]["sag"]
    # the timestep and block were chosen on this fold's training cases alone (never on its validation labels)
    splits = json.loads((cls_preprocessed / "splits.json").read_text())
    choice, _ = fold_choice(probed / "pretrain" / "sag", extras["split"]["train"], splits, FINDINGS, probe["l2"])
    assert (spec["timestep"], spec["block"]) == (choice.timestep, choice.block)
    assert spec["chosen_on"].startswith("fold 0 training cases") and spec["pooling"] == "attention"
    assert len(spec["feature_shape"]) == 4 and spec["feature_shape"][0] == spec["channels"]  # a map, not a vector
    assert spec["encoder_sha256"] == probe["encoder_sha256"] and set(extras["thresholds"]) == set(FINDINGS)
    assert extras["denoiser_states"]["sag"]  # the final checkpoint carries what inference needs ...
    assert "denoiser_states" not in torch.load(fold / "checkpoint_latest.pt", weights_only=True)["extras"]  # ... only it
    assert all(not k.startswith("decoder.seg_layers") for k in extras["denoiser_states"]["sag"])
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["variant"] == "diffusion" and summary["classification_config"]["classifier_features"] == "diffusion"
    assert summary["diffusion_features"]["sag"]["block"] == spec["block"]
    assert list(summary["metrics"]["per_finding"]) == FINDINGS

    # predict_folder's path: raw scans in, the validation predictions reproduced
    cases, probs, _ = read_validation_predictions(fold / "validation_predictions.csv", FINDINGS)
    ensemble = FindingsEnsemble.load([fold / "checkpoint_final.pt"])
    raw = cls_preprocessed.parent / "raw" / "imagesTr"
    for case, row in list(zip(cases, probs))[:2]:
        found = ensemble.predict(_case_scans(raw, case, ("sag",)))
        assert [found[f]["probability"] for f in FINDINGS] == pytest.approx(list(row), abs=1e-4)

    # the variant competes in find_best_configuration like any other
    candidates = classification_candidates(probed, [0], FINDINGS)
    assert "diffusion" in candidates["sag"]


@pytest.mark.slow
def test_fused_gate_masks_missing_view(probed, cls_preprocessed):
    assert main(["train_fold", str(cls_preprocessed), "cls", "fused", "1", "--results", str(probed), *FROZEN]) == 0
    fold = probed / "cls" / "fused" / "diffusion_gate" / "fold_1"
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["views"] == ["sag", "cor"] and summary["fusion"] == "gate"
    for name in FINDINGS:
        assert sum(summary["gate_weights"][name].values()) == pytest.approx(1.0)
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ckpt["history"]["train_loss"][-1] < ckpt["history"]["train_loss"][0]
    assert set(ckpt["extras"]["split"]["train"]) | set(ckpt["extras"]["split"]["val"]) == set(CASES)
    table = pd.read_csv(fold / "validation_predictions.csv", dtype={"case_id": str})
    ensemble = FindingsEnsemble.load([fold / "checkpoint_final.pt"])
    raw = cls_preprocessed.parent / "raw" / "imagesTr"
    for case, views in zip(table["case_id"], table["views"]):
        assert views == ("sag" if case == NO_COR else "sag+cor")
    case = table["case_id"].iloc[0]
    found = ensemble.predict(_case_scans(raw, case))
    row = table.iloc[0]
    assert [found[f]["probability"] for f in FINDINGS] == pytest.approx([row[f"{f}_probability"] for f in FINDINGS],
                                                                        abs=1e-4)
    assert set(ensemble.predict(_case_scans(raw, case, ("cor",)))) == set(FINDINGS)  # a view may be missing


@pytest.mark.slow
def test_fold_choice_never_reads_the_fold_validation_labels(probed, cls_preprocessed, tmp_path):
    """Issue 12, defect 1: scrambling the held-out fold's labels in the probe's features changes nothing."""
    splits = json.loads((cls_preprocessed / "splits.json").read_text())
    train, val = splits[0]["train"], splits[0]["val"]
    cases, labels, features = read_probe_features(probed / "pretrain" / "sag" / PROBE_FEATURES)
    train = [c for c in train if c in cases]
    first, rows = fold_choice(probed / "pretrain" / "sag", train, splits, FINDINGS)
    scrambled = tmp_path / "pretrain" / "sag"
    scrambled.mkdir(parents=True)
    held = [cases.index(c) for c in val if c in cases]
    labels = labels.copy()
    labels[held] = 1 - labels[held]
    arrays = {f"t{t}|{b}": x for (t, b), x in features.items()}
    np.savez(scrambled / PROBE_FEATURES, case_ids=np.asarray(cases), labels=labels, **arrays)
    again, rows_again = fold_choice(scrambled, train, splits, FINDINGS)
    assert (again.timestep, again.block, again.macro_auroc) == (first.timestep, first.block, first.macro_auroc)
    assert [r.macro_auroc for r in rows_again] == [r.macro_auroc for r in rows]
    # ... whereas the training cases' labels are what it is scored on
    trained = [cases.index(c) for c in train]
    labels[trained] = labels[np.roll(trained, 3)]
    np.savez(scrambled / PROBE_FEATURES, case_ids=np.asarray(cases), labels=labels, **arrays)
    _, rows_flipped = fold_choice(scrambled, train, splits, FINDINGS)
    assert [r.macro_auroc for r in rows_flipped] != [r.macro_auroc for r in rows]


@pytest.mark.parametrize("fusion", ["gate", "concat"])
def test_head_ignores_absent_views_and_batches_are_seeded(fusion):
    torch.manual_seed(0)
    head = FrozenFeatureHead(["a", "b"], {"a": 3, "b": 2}, 2, fusion)
    for p in head.parameters():
        p.data.normal_()
    present = torch.tensor([[True, False], [True, True]])
    a, b = torch.randn(2, 3), torch.randn(2, 2)
    out = head({"a": a, "b": b}, present)
    b[0] += 100.0  # case 0 lacks view b: its placeholder never reaches the output
    assert torch.equal(head({"a": a, "b": b}, present)["logits"], out["logits"])
    assert out["view_logits"][0, :, 1].eq(0).all()
    if fusion == "gate":  # attention pooling of maps: the same masking
        att = FrozenFeatureHead(["a", "b"], {"a": 3, "b": 2}, 2, fusion, pooling="attention")
        maps_a, maps_b = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 2, 2, 4, 4)
        first = att({"a": maps_a, "b": maps_b}, present)["logits"]
        maps_b[0] += 100.0
        assert torch.equal(att({"a": maps_a, "b": maps_b}, present)["logits"], first)

    def batches():
        return FeatureBatches({"a": torch.randn(5, 3, generator=torch.Generator().manual_seed(1)).numpy(),
                               "b": torch.zeros(5, 2).numpy()}, torch.ones(5, 2, dtype=torch.bool).numpy(),
                              torch.zeros(5, 2).numpy(), 4, 0, 3, seed=1, view_dropout=0.5)

    first, again = batches()[2], batches()[2]
    assert len(batches()) == 3 and all(torch.equal(first[k], again[k]) for k in first)
    assert first["present"].any(1).all()  # view dropout keeps at least one view


@pytest.mark.slow
def test_refusals_name_the_file(probed, cls_preprocessed, tmp_path, capsys):
    pp = str(cls_preprocessed)
    # not pretrained
    assert main(["train_fold", pp, "cls", "sag", "2", "--results", str(tmp_path / "a"), *FROZEN]) == 2
    assert str(tmp_path / "a" / "pretrain" / "sag" / "checkpoint_final.pt") in capsys.readouterr().err
    # pretrained but not probed
    shutil.copytree(probed / "pretrain", tmp_path / "b" / "pretrain", ignore=shutil.ignore_patterns("probe.json"))
    assert main(["train_fold", pp, "cls", "sag", "2", "--results", str(tmp_path / "b"), *FROZEN]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "b" / "pretrain" / "sag" / "probe.json") in err and "orthodiff probe" in err
    # a probe made with other weights
    probe = json.loads((probed / "pretrain" / "sag" / "probe.json").read_text())
    (tmp_path / "b" / "pretrain" / "sag" / "probe.json").write_text(json.dumps({**probe, "encoder_sha256": "0" * 64}))
    assert main(["train_fold", pp, "cls", "sag", "2", "--results", str(tmp_path / "b"), *FROZEN]) == 2
    assert "other pretrained weights" in capsys.readouterr().err
    # --pretrained has no meaning here; unknown mode
    encoder = probed / "pretrain" / "sag" / "encoder_sag.pt"
    assert main(["train_fold", pp, "cls", "sag", "2", "--results", str(tmp_path / "c"), "--pretrained", str(encoder),
                 *FROZEN]) == 2
    assert str(encoder) in capsys.readouterr().err
    assert main(["train_fold", pp, "cls", "sag", "2", "--set", "classifier_features=frozen"]) == 2
    assert "classifier_features" in capsys.readouterr().err
