"""fusion=stacked: the gate fitted on out-of-fold single-view predictions (classification/stacked.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from orthodiff_auto.classification.fusion import FusedClassifier
from orthodiff_auto.classification.inference import FindingsEnsemble
from orthodiff_auto.classification.stacked import STACKED_JSON, StackedGateFit, fit_stacked_gate, fused_logits
from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.plans.schema import ArchitectureSpec
from tests.classification.conftest import FINDINGS, NO_COR

TINY = ["--config", "smoke", "--set", "num_epochs=1", "--set", "iterations_per_epoch=1"]
VIEWS = ["sag", "cor"]


def _made_up_oof(n: int = 240, seed: int = 0):
    """Finding 0 is visible in view 0 only, finding 1 in view 1 only; view 2 is noise; ~20% views missing."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 2))
    x = rng.normal(0.0, 2.0, (n, 2, 3))
    x[:, 0, 0] += 2.5 * (2 * y[:, 0] - 1)
    x[:, 1, 1] += 2.5 * (2 * y[:, 1] - 1)
    present = rng.random((n, 3)) > 0.2
    present[~present.any(1), 2] = True
    return x, present, y


def test_fit_recovers_the_informative_view_per_finding():
    x, present, y = _made_up_oof()
    params = fit_stacked_gate(x, present, y, pos_weight=[1.0, 1.0], l2=0.5)
    w = params.weights()
    assert w.shape == (2, 3)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    assert w[0].argmax() == 0 and w[0, 0] > 0.6
    assert w[1].argmax() == 1 and w[1, 1] > 0.6

    # absent views are masked: whatever their logits, the fit is the same
    poisoned = x.copy()
    poisoned[~present[:, None, :].repeat(2, 1)] = 1e3
    again = fit_stacked_gate(poisoned, present, y, pos_weight=[1.0, 1.0], l2=0.5)
    np.testing.assert_allclose(again.weights(), w, atol=1e-6)
    # per case, the weights renormalise over the present views
    xt, mt = torch.from_numpy(poisoned), torch.from_numpy(present)
    g = torch.from_numpy(params.gate_logits)
    gate = torch.softmax(g[None].expand(len(x), -1, -1).masked_fill(~mt[:, None, :], float("-inf")), -1)
    torch.testing.assert_close(gate.sum(-1), torch.ones(len(x), 2, dtype=torch.float64))
    assert float(gate[~mt[:, None, :].expand_as(gate)].abs().max()) == 0.0
    z = fused_logits(xt, mt, g)
    assert torch.isfinite(z).all()
    # a case with one view gets exactly that view's logits
    one = mt.sum(1) == 1
    torch.testing.assert_close(z[one], (xt * mt[:, None, :])[one].sum(-1))

    # the pull towards equal weights: a huge l2 keeps them nearly uniform
    flat = fit_stacked_gate(x, present, y, l2=1e6).weights()
    np.testing.assert_allclose(flat, 1 / 3, atol=1e-3)


def test_fused_classifier_stacked_mode_matches_the_fit():
    arch = ArchitectureSpec(n_stages=2, features_per_stage=(4, 8), kernel_sizes=((3, 3, 3), (3, 3, 3)),
                            strides=((1, 1, 1), (2, 2, 2)), n_conv_per_stage=(1, 1), n_conv_per_stage_decoder=(1,))
    views = ["sag", "cor", "ax"]
    torch.manual_seed(0)
    model = FusedClassifier(views, {v: arch for v in views}, 2, "stacked").eval()
    assert model.gate_scale == 1.0
    with torch.no_grad():
        model.gate_logits.copy_(torch.randn(2, 3))
    x = {v: torch.randn(3, 1, 4, 8, 8) for v in views}
    present = torch.tensor([[True, True, True], [True, False, True], [False, True, False]])
    with torch.no_grad():
        out = model(x, present)
        other = model({**x, "cor": torch.randn(3, 1, 4, 8, 8) * 100}, present)
    torch.testing.assert_close(out["weights"].sum(-1), torch.ones(3, 2))
    expected = fused_logits(out["view_logits"].double(), present, model.gate_logits.double())
    torch.testing.assert_close(out["logits"].double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(other["logits"][1], out["logits"][1])  # case 1 has no coronal scan
    torch.testing.assert_close(model.gate_weights(), torch.softmax(model.gate_logits.detach(), -1))


@pytest.fixture(scope="module")
def single_view_folds(cls_preprocessed, tmp_path_factory) -> Path:
    """Single-view sag and cor classifiers of all five folds (one step each: their predictions are OOF)."""
    out = tmp_path_factory.mktemp("stacked_results")
    for fold in range(5):
        for view in VIEWS:
            assert main(["train_fold", str(cls_preprocessed), "cls", view, str(fold), "--results", str(out), *TINY]) == 0
    return out


@pytest.mark.slow
def test_stacked_fold_end_to_end(single_view_folds, cls_preprocessed):
    results = single_view_folds
    assert main(["train_fold", str(cls_preprocessed), "cls", "fused", "0", "--results", str(results), *TINY,
                 "--set", "fusion=stacked"]) == 0
    fold = results / "cls" / "fused" / "scratch_stacked" / "fold_0"
    splits = json.loads((cls_preprocessed / "splits.json").read_text())
    train, val = set(splits[0]["train"]), set(splits[0]["val"])

    # the gate was fitted on fold 0's training cases only, each predicted by the fold that held it out
    assert (fold / STACKED_JSON).is_file() and not (fold / "checkpoint_latest.pt").exists()
    fit = StackedGateFit.from_dict(json.loads((fold / STACKED_JSON).read_text()))
    assert set(fit.fitting_cases) == train and not set(fit.fitting_cases) & val
    assert fit.views == VIEWS and fit.findings == FINDINGS
    for view, by_fold in fit.source_folds.items():
        assert "0" not in by_fold
        for j, cases in by_fold.items():
            assert set(cases) <= set(splits[int(j)]["val"])
        used = {c for cases in by_fold.values() for c in cases}
        assert used == (train - {NO_COR} if view == "cor" else train)  # a case without a view has no OOF row

    summary = json.loads((fold / "summary.json").read_text())
    assert summary["fusion"] == "stacked" and summary["views"] == VIEWS
    assert summary["init_sources"] == {v: "single-view checkpoint" for v in VIEWS}
    assert summary["stacked_gate"]["num_fitting_cases"] == len(train)
    for name in FINDINGS:
        assert sum(summary["gate_weights"][name].values()) == pytest.approx(1.0)
        assert summary["gate_weights"][name] == pytest.approx(fit.weights[name])
    assert set(summary["metrics"]["per_finding"]) == set(FINDINGS)

    # the branches are this fold's single-view classifiers, unchanged
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ckpt["extras"]["fusion"] == "stacked" and set(ckpt["extras"]["thresholds"]) == set(FINDINGS)
    for name in FINDINGS:
        assert ckpt["extras"]["stacked_gate"]["weights"][name] == pytest.approx(fit.weights[name])
    for view in VIEWS:
        branch = torch.load(results / "cls" / view / "scratch" / "fold_0" / "checkpoint_final.pt", weights_only=True)
        for k, v in branch["model"].items():
            torch.testing.assert_close(ckpt["model"][f"branches.{view}.{k}"], v)

    # inference loads it and reproduces the validation predictions from the raw scans
    table = pd.read_csv(fold / "validation_predictions.csv", dtype={"case_id": str})
    assert set(table["case_id"]) == val
    ensemble = FindingsEnsemble.load([fold / "checkpoint_final.pt"])
    assert ensemble.views == VIEWS and ensemble.findings == FINDINGS
    raw = cls_preprocessed.parent / "raw" / "imagesTr"
    for case in list(table["case_id"])[:2]:
        scans = {v: read_image(raw / f"{case}_{v}.nii.gz") for v in VIEWS if (raw / f"{case}_{v}.nii.gz").is_file()}
        found = ensemble.predict(scans)
        row = table[table["case_id"] == case].iloc[0]
        for name in FINDINGS:
            assert found[name]["probability"] == pytest.approx(row[f"{name}_probability"], abs=1e-4)

    # model selection sees it as one more fused configuration
    from orthodiff_auto.pipeline.model_selection import classification_candidates

    candidates = classification_candidates(results, [0], FINDINGS)
    assert "scratch_stacked" in candidates["fused"]


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["stacked", "mpae"])
def test_stacked_names_the_missing_folds(single_view_folds, cls_preprocessed, tmp_path, capsys, fusion):
    for view in VIEWS:  # only fold 0's single-view classifiers, and no coronal fold 3
        for fold in (0, 3) if view == "sag" else (0,):
            src = single_view_folds / "cls" / view / "scratch" / f"fold_{fold}"
            shutil.copytree(src, tmp_path / "cls" / view / "scratch" / f"fold_{fold}")
    assert main(["train_fold", str(cls_preprocessed), "cls", "fused", "0", "--results", str(tmp_path), *TINY,
                 "--set", f"fusion={fusion}"]) == 2
    err = capsys.readouterr().err
    assert f"fusion={fusion} fits fold 0's" in err
    assert "sag folds 1, 2, 4" in err and "cor folds 1, 2, 3, 4" in err
    assert f"cls cor 3 --results {tmp_path}" in err
    assert not (tmp_path / "cls" / "fused").exists()


@pytest.mark.slow
def test_stacked_refuses_a_source_fold_trained_on_its_cases(single_view_folds, cls_preprocessed, tmp_path, capsys):
    for view in VIEWS:
        shutil.copytree(single_view_folds / "cls" / view, tmp_path / "cls" / view)
    path = tmp_path / "cls" / "sag" / "scratch" / "fold_2" / "checkpoint_final.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["extras"]["split"]["train"].append(ckpt["extras"]["split"]["val"][0])  # as if the splits had changed
    torch.save(ckpt, path)
    assert main(["train_fold", str(cls_preprocessed), "cls", "fused", "0", "--results", str(tmp_path), *TINY,
                 "--set", "fusion=stacked"]) == 2
    assert "trained on cases it should predict out of fold" in capsys.readouterr().err
    assert not (tmp_path / "cls" / "fused").exists()


@pytest.mark.slow
def test_mpae_fold_chooses_and_fits_a_head_inside_the_fold_and_reads_clinical_data(single_view_folds,
                                                                                  cls_preprocessed, tmp_path):
    """fusion=mpae: the head kind is chosen on fold 0's training cases only; with a clinical column that
    carries both findings, a clinical head wins; inference reproduces the validation predictions from the raw
    scans and the case's clinical value, and still predicts without it."""
    from orthodiff_auto.classification.mpae_fold import MPAE_JSON

    pp = tmp_path / "pp"
    shutil.copytree(cls_preprocessed, pp)
    desc = json.loads((pp / "dataset.json").read_text())
    desc["clinical"] = [{"name": "age", "type": "numeric"}]
    (pp / "dataset.json").write_text(json.dumps(desc))
    table = pd.read_csv(pp / "findings.csv", dtype=str, keep_default_na=False)
    table["age"] = [str(20 + 30 * int(a) + 15 * int(z)) for a, z in zip(table["alpha"], table["zeta"])]
    table.to_csv(pp / "findings.csv", index=False)
    results = tmp_path / "results"
    for view in VIEWS:
        shutil.copytree(single_view_folds / "cls" / view, results / "cls" / view)
    assert main(["train_fold", str(pp), "cls", "fused", "0", "--results", str(results), *TINY,
                 "--set", "fusion=mpae"]) == 0
    fold = results / "cls" / "fused" / "scratch_mpae" / "fold_0"
    splits = json.loads((pp / "splits.json").read_text())
    train, val = set(splits[0]["train"]), set(splits[0]["val"])
    fit = json.loads((fold / MPAE_JSON).read_text())
    assert set(fit["fitting_cases"]) == train and not set(fit["fitting_cases"]) & val
    assert set(fit["inner_macro_auroc"]) == {"stacked", "mpae", "stacked+clinical", "mpae+clinical"}
    assert fit["head_kind"].endswith("+clinical") and fit["num_clinical"] == 2  # age, age_missing
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["fusion"] == "mpae" and summary["mpae"]["head_kind"] == fit["head_kind"]

    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    for view in VIEWS:  # the branches are this fold's single-view classifiers, unchanged
        branch = torch.load(results / "cls" / view / "scratch" / "fold_0" / "checkpoint_final.pt", weights_only=True)
        for k, v in branch["model"].items():
            torch.testing.assert_close(ckpt["model"][f"branches.{view}.{k}"], v)

    predictions = pd.read_csv(fold / "validation_predictions.csv", dtype={"case_id": str})
    ensemble = FindingsEnsemble.load([fold / "checkpoint_final.pt"])
    assert ensemble.clinical_variables == ["age"]
    raw = cls_preprocessed.parent / "raw" / "imagesTr"
    ages = dict(zip(table["case_id"], table["age"]))
    for case in list(predictions["case_id"])[:2]:
        scans = {v: read_image(raw / f"{case}_{v}.nii.gz") for v in VIEWS if (raw / f"{case}_{v}.nii.gz").is_file()}
        found = ensemble.predict(scans, clinical={"age": ages[case]})
        row = predictions[predictions["case_id"] == case].iloc[0]
        for name in FINDINGS:
            assert found[name]["probability"] == pytest.approx(row[f"{name}_probability"], abs=1e-4)
        without = ensemble.predict(scans)  # no clinical data: the encoding of a missing value
        older = ensemble.predict(scans, clinical={"age": "95"})
        assert all(np.isfinite(without[f]["probability"]) for f in FINDINGS)
        assert any(abs(older[f]["probability"] - found[f]["probability"]) > 1e-3 for f in FINDINGS)

    # model selection sees it as one more fused configuration
    from orthodiff_auto.pipeline.model_selection import classification_candidates

    assert "scratch_mpae" in classification_candidates(results, [0], FINDINGS)["fused"]
