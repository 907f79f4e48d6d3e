"""train_fold cls VIEW / cls fused end to end on a tiny preprocessed dataset (see conftest.py)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from orthodiff_auto.classification.inference import FindingsEnsemble
from orthodiff_auto.inference.predictor import Predictor
from orthodiff_auto.classification.metrics_io import read_validation_predictions, subset_predictions_path
from orthodiff_auto.classification.run import train_classification_fold
from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.classification_metrics import evaluate_findings
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.training.config import make_config
from orthodiff_auto.training.fold import FoldRequest
from tests.classification.conftest import CASES, FINDINGS, NO_COR, case_findings

pytestmark = pytest.mark.slow  # trains folds or runs auto (pytest -m 'not slow' skips it)

SMOKE = ["--config", "smoke", "--set", "num_epochs=5", "--set", "iterations_per_epoch=8", "--set", "batch_size=4"]


@pytest.fixture(scope="module")
def results(cls_preprocessed, tmp_path_factory) -> Path:
    """One single-view (sag) fold trained once; the fused tests start from it."""
    out = tmp_path_factory.mktemp("cls_results")
    assert main(["train_fold", str(cls_preprocessed), "cls", "sag", "0", "--results", str(out), *SMOKE]) == 0
    return out


def test_single_view_lowers_loss_and_writes_outputs(results, cls_preprocessed):
    fold = results / "cls" / "sag" / "scratch" / "fold_0"
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    losses = ckpt["history"]["train_loss"]
    assert losses[-1] < losses[0]
    extras = ckpt["extras"]
    assert extras["findings"] == FINDINGS  # dataset.json's order, not the CSV's
    assert extras["view"] == "sag" and extras["kind"] == "view"
    assert extras["plans"]["views"]["sag"]["classification"]["input_size"] == extras["inputs"]["sag"]["input_size"]
    val, train = extras["split"]["val"], extras["split"]["train"]
    assert val and not set(val) & set(train)
    assert set(extras["thresholds"]) == set(FINDINGS)  # stored with the model
    splits = json.loads((cls_preprocessed / "splits.json").read_text())
    assert sorted(c for s in splits for c in s["val"]) == CASES

    summary = json.loads((fold / "summary.json").read_text())
    assert summary["findings"] == FINDINGS and summary["num_validation_cases"] == len(val)
    per = summary["metrics"]["per_finding"]
    assert list(per) == FINDINGS
    for name in FINDINGS:
        assert {"auroc", "ap", "sensitivity", "specificity", "f1", "threshold"} <= set(per[name])
        assert per[name]["threshold"] == pytest.approx(extras["thresholds"][name])
    assert "auroc" in summary["metrics"]["macro"]
    assert summary["threshold_method"] == "youden"
    assert summary["pretrained_from"] is None and summary["timing"]["seconds_per_iteration_median"] > 0
    assert (fold / "progress.png").is_file()

    # the per-case CSV: columns in dataset.json's order, references from the CSV by name, metrics reproducible
    table = pd.read_csv(fold / "validation_predictions.csv", dtype={"case_id": str})
    assert list(table.columns[1:7]) == ["zeta_probability", "zeta_predicted", "zeta_label",
                                        "alpha_probability", "alpha_predicted", "alpha_label"]
    assert "site" in table.columns
    cases, probs, labels = read_validation_predictions(fold / "validation_predictions.csv", FINDINGS)
    assert cases == sorted(val)
    for c, row in zip(cases, labels):
        flags = case_findings(CASES.index(c))
        assert list(row) == [flags[f] for f in FINDINGS]
    recomputed = evaluate_findings(labels, probs, FINDINGS, thresholds=[extras["thresholds"][f] for f in FINDINGS],
                                   groups=table["site"].tolist())
    for name in FINDINGS:
        for metric in ("auroc", "ap", "sensitivity", "specificity", "f1"):
            a, b = recomputed["per_finding"][name][metric], per[name][metric]
            assert (b is None and math.isnan(a)) or a == pytest.approx(b)
        predicted = (probs[:, FINDINGS.index(name)] >= extras["thresholds"][name]).astype(int)
        assert list(table[f"{name}_predicted"]) == list(predicted)
    assert set(summary["metrics"]["per_site"]) == set(table["site"])


def test_fused_gate_masks_missing_view_and_reports_weights(results, cls_preprocessed):
    assert main(["train_fold", str(cls_preprocessed), "cls", "fused", "0", "--results", str(results), "--config", "smoke",
                 "--set", "num_epochs=1", "--set", "iterations_per_epoch=3"]) == 0
    fold = results / "cls" / "fused" / "scratch_gate" / "fold_0"
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["fusion"] == "gate" and summary["views"] == ["sag", "cor"]
    assert summary["init_sources"] == {"sag": "single-view checkpoint", "cor": "scratch"}
    weights = summary["gate_weights"]
    assert list(weights) == FINDINGS
    for name in FINDINGS:
        assert set(weights[name]) == {"sag", "cor"}
        assert sum(weights[name].values()) == pytest.approx(1.0)
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    for name in FINDINGS:
        assert ckpt["extras"]["gate_weights"][name] == pytest.approx(weights[name])
    assert ckpt["extras"]["fusion"] == "gate" and set(ckpt["extras"]["thresholds"]) == set(FINDINGS)
    table = pd.read_csv(fold / "validation_predictions.csv", dtype={"case_id": str})
    all_cases = set(ckpt["extras"]["split"]["train"]) | set(ckpt["extras"]["split"]["val"])
    assert all_cases == set(CASES)  # the case without a coronal scan takes part with its sagittal one
    for case, views in zip(table["case_id"], table["views"]):
        assert views == ("sag" if case == NO_COR else "sag+cor")
    assert set(summary["branch_auroc"]) == {"sag", "cor"}
    # for model selection per view combination: the validation cases read with one view only (others masked)
    only_sag = pd.read_csv(subset_predictions_path(fold, ["sag"]), dtype={"case_id": str})
    only_cor = pd.read_csv(subset_predictions_path(fold, ["cor"]), dtype={"case_id": str})
    assert list(only_sag["case_id"]) == list(table["case_id"])
    assert list(only_cor["case_id"]) == [c for c in table["case_id"] if c != NO_COR]
    sag_rows = only_sag.set_index("case_id")
    if NO_COR in sag_rows.index:  # a case without cor is read the same way with or without the mask
        full = table.set_index("case_id")
        assert sag_rows.loc[NO_COR, f"{FINDINGS[0]}_probability"] == pytest.approx(
            full.loc[NO_COR, f"{FINDINGS[0]}_probability"], abs=1e-6)

    # inference from the raw scans reproduces the validation predictions, with or without the coronal scan
    ensemble = FindingsEnsemble.load([fold / "checkpoint_final.pt"])
    assert ensemble.findings == FINDINGS and ensemble.views == ["sag", "cor"]
    assert ensemble.thresholds_table() == pytest.approx({f: ckpt["extras"]["thresholds"][f] or 0.5 for f in FINDINGS})
    raw = cls_preprocessed.parent / "raw" / "imagesTr"
    for case in list(table["case_id"])[:2]:
        scans = {v: read_image(raw / f"{case}_{v}.nii.gz") for v in ("sag", "cor") if (raw / f"{case}_{v}.nii.gz").is_file()}
        # this dataset has no segmentation labels: the region is the field of view, centred as in validation
        assert all(spec.roi_source == "field_of_view" for spec in ensemble.models[0].inputs.values())
        found = ensemble.predict(scans)
        assert list(found) == FINDINGS
        row = table[table["case_id"] == case].iloc[0]
        for name in FINDINGS:
            assert found[name]["probability"] == pytest.approx(row[f"{name}_probability"], abs=1e-4)
            assert found[name]["spread"] == 0.0
        only_sag = ensemble.predict({"sag": scans["sag"]})
        assert set(only_sag) == set(FINDINGS)
    single = FindingsEnsemble.load([results / "cls" / "sag" / "scratch" / "fold_0" / "checkpoint_final.pt"] * 2)
    with pytest.raises(UserInputError, match="needs a scan of sag"):
        single.predict({"cor": read_image(raw / f"{CASES[0]}_cor.nii.gz")})
    # through the Predictor a case without the classifier's view still gets its segmentations, with a note
    predictor = Predictor.__new__(Predictor)
    predictor.segmenters, predictor.classifiers = {}, {"sag/scratch": single}
    predictor.classifier_by_views = {frozenset({"sag"}): "sag/scratch"}
    case = predictor.predict_case(CASES[0], {"cor": read_image(raw / f"{CASES[0]}_cor.nii.gz")})
    assert case.findings == {} and "read sag" in case.findings_note


def test_fused_gate_learns_where_each_finding_is_visible(cls_preprocessed, tmp_path):
    """zeta is drawn only in the sagittal scans, alpha only in the coronal ones (branches from scratch)."""
    assert main(["train_fold", str(cls_preprocessed), "cls", "fused", "0", "--results", str(tmp_path), *SMOKE]) == 0
    summary = json.loads((tmp_path / "cls" / "fused" / "scratch_gate" / "fold_0" / "summary.json").read_text())
    assert summary["init_sources"] == {"sag": "scratch", "cor": "scratch"}
    weights = summary["gate_weights"]
    assert weights["zeta"]["sag"] > 0.6 and weights["alpha"]["cor"] > 0.55


def test_cor_skips_case_without_cor_scan(cls_preprocessed, tmp_path):
    fold = 2  # every case is in a fold's training or validation cases
    assert main(["train_fold", str(cls_preprocessed), "cls", "cor", str(fold), "--results", str(tmp_path),
                 "--config", "smoke", "--set", "num_epochs=1", "--set", "iterations_per_epoch=1"]) == 0
    out = tmp_path / "cls" / "cor" / "scratch" / f"fold_{fold}"
    summary = json.loads((out / "summary.json").read_text())
    skipped = summary["skipped_without_view"]
    assert NO_COR in skipped["train"] + skipped["val"]
    ckpt = torch.load(out / "checkpoint_final.pt", weights_only=True)
    assert NO_COR not in ckpt["extras"]["split"]["train"] + ckpt["extras"]["split"]["val"]
    table = pd.read_csv(out / "validation_predictions.csv", dtype={"case_id": str})
    assert NO_COR not in set(table["case_id"])


def test_concat_fusion_and_target_sensitivity(cls_preprocessed, tmp_path):
    plans = Plans.load(cls_preprocessed / "plans.json")
    # the command line's --set fusion=concat --set target_sensitivity=1 reach the classification config
    config = make_config("smoke", ["num_epochs=1", "iterations_per_epoch=2", "fusion=concat", "target_sensitivity=1.0"])
    request = FoldRequest(cls_preprocessed, "cls", "fused", 1, config, results_dir=tmp_path)
    assert request.output_dir().parent.name == "scratch_concat"
    summary = train_classification_fold(request, plans, log=lambda *_: None)
    assert summary["fusion"] == "concat" and summary["gate_weights"] is None
    assert summary["threshold_method"] == "sensitivity"
    per_finding = summary["metrics"]["per_finding"]
    with_positives = [name for name in FINDINGS if per_finding[name]["n_positive"]]
    assert with_positives  # the check below runs on at least one finding
    for name in with_positives:
        assert per_finding[name]["sensitivity"] == 1.0
    ckpt = torch.load(request.output_dir() / "checkpoint_final.pt", weights_only=True)
    assert ckpt["extras"]["fusion"] == "concat"
    assert any(k.startswith("missing.") for k in ckpt["model"])


def test_cross_attention_fusion_trains_and_loads_for_inference(cls_preprocessed, tmp_path):
    """fusion=xattn through train_fold (two steps from scratch), then FindingsEnsemble reproduces the
    validation predictions from the raw scans, also for the case without a coronal scan when it validates."""
    plans = Plans.load(cls_preprocessed / "plans.json")
    config = make_config("smoke", ["num_epochs=1", "iterations_per_epoch=2", "fusion=xattn"])
    request = FoldRequest(cls_preprocessed, "cls", "fused", 4, config, results_dir=tmp_path)
    assert request.output_dir().parent.name == "scratch_xattn"
    summary = train_classification_fold(request, plans, log=lambda *_: None)
    assert summary["fusion"] == "xattn" and summary["gate_weights"] is None
    out = request.output_dir()
    ckpt = torch.load(out / "checkpoint_final.pt", weights_only=True)
    assert ckpt["extras"]["fusion"] == "xattn" and "queries" in ckpt["model"]
    table = pd.read_csv(out / "validation_predictions.csv", dtype={"case_id": str})
    ensemble = FindingsEnsemble.load([out / "checkpoint_final.pt"])
    raw = cls_preprocessed.parent / "raw" / "imagesTr"
    for case in list(table["case_id"])[:2]:
        scans = {v: read_image(raw / f"{case}_{v}.nii.gz") for v in ("sag", "cor")
                 if (raw / f"{case}_{v}.nii.gz").is_file()}
        found = ensemble.predict(scans)
        row = table[table["case_id"] == case].iloc[0]
        for name in FINDINGS:
            assert found[name]["probability"] == pytest.approx(row[f"{name}_probability"], abs=1e-4)


def _copy_preprocessed(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("splits.json"))
    return dst


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.assign(zeta=t["zeta"].replace(1, 2)), "must be 0 or 1"),
        (lambda t: t.drop(columns=["alpha"]), "missing finding columns ['alpha']"),
        (lambda t: t.iloc[1:], "no row for training cases"),
    ],
)
def test_bad_findings_csv_is_a_clear_error(cls_preprocessed, tmp_path, capsys, mutate, message):
    pp = _copy_preprocessed(cls_preprocessed, tmp_path / "pp")
    table = pd.read_csv(pp / "findings.csv", dtype=str)
    mutate(table.astype({"zeta": int})).to_csv(pp / "findings.csv", index=False)
    assert main(["train_fold", str(pp), "cls", "sag", "0", "--results", str(tmp_path / "r"), "--config", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "findings.csv" in err and message in err
    assert not (tmp_path / "r").exists()


def test_dataset_without_findings_is_a_clear_error(cls_preprocessed, tmp_path, capsys):
    pp = _copy_preprocessed(cls_preprocessed, tmp_path / "pp")
    (pp / "findings.csv").unlink()
    assert main(["train_fold", str(pp), "cls", "sag", "0", "--results", str(tmp_path / "r")]) == 2
    assert "findings.csv" in capsys.readouterr().err


def test_pretrained_encoders_load_for_view_and_fused(cls_preprocessed, tmp_path):
    from orthodiff_auto.diffusion.export import export_encoder
    from orthodiff_auto.networks.builder import build_segmentation_network

    plans = Plans.load(cls_preprocessed / "plans.json")
    exported = {}
    for view in ("sag", "cor"):
        torch.manual_seed(len(view))
        unet = build_segmentation_network(plans.view(view).segmentation.architecture, 1, 1, deep_supervision=False)
        # the layout `orthodiff pretrain` writes: pretrain/<view>/encoder_<view>.pt
        export_encoder(tmp_path / "pretrain" / view / f"encoder_{view}.pt", unet.state_dict(), plans.view(view),
                       iterations=1)
        exported[view] = {k[len("encoder."):]: v for k, v in unet.state_dict().items() if k.startswith("encoder.")}
    frozen = ["--config", "smoke", "--set", "num_epochs=1", "--set", "iterations_per_epoch=1", "--set", "initial_lr=0"]
    assert main(["train_fold", str(cls_preprocessed), "cls", "sag", "3", "--pretrained", str(tmp_path / "pretrain" / "sag" / "encoder_sag.pt"),
                 "--results", str(tmp_path / "a"), *frozen]) == 0
    fold = tmp_path / "a" / "cls" / "sag" / "pretrained" / "fold_3"
    model = torch.load(fold / "checkpoint_final.pt", weights_only=True)["model"]
    for k, v in exported["sag"].items():
        torch.testing.assert_close(model[f"encoder.{k}"], v)
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["pretrained_from"].endswith("encoder_sag.pt") and summary["variant"] == "pretrained"

    # fused: pretrain/<view>/encoder_<view>.pt next to the named file's folder serves each other view
    assert main(["train_fold", str(cls_preprocessed), "cls", "fused", "3", "--pretrained", str(tmp_path / "pretrain" / "sag" / "encoder_sag.pt"),
                 "--results", str(tmp_path / "b"), *frozen]) == 0
    fold = tmp_path / "b" / "cls" / "fused" / "pretrained_gate" / "fold_3"
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["init_sources"]["sag"].endswith("encoder_sag.pt") and summary["init_sources"]["cor"].endswith("encoder_cor.pt")
    model = torch.load(fold / "checkpoint_final.pt", weights_only=True)["model"]
    for view in ("sag", "cor"):
        for k, v in exported[view].items():
            torch.testing.assert_close(model[f"branches.{view}.encoder.{k}"], v)


def test_fused_refuses_single_view_model_trained_on_validation_cases(results, cls_preprocessed, tmp_path, capsys):
    ckpt = torch.load(results / "cls" / "sag" / "scratch" / "fold_0" / "checkpoint_final.pt", weights_only=True)
    ckpt["extras"]["split"]["train"].append(ckpt["extras"]["split"]["val"][0])  # as if the splits had changed
    target = tmp_path / "cls" / "sag" / "scratch" / "fold_0" / "checkpoint_final.pt"
    target.parent.mkdir(parents=True)
    torch.save(ckpt, target)
    assert main(["train_fold", str(cls_preprocessed), "cls", "fused", "0", "--results", str(tmp_path), "--config", "smoke"]) == 2
    assert "trained on validation cases" in capsys.readouterr().err
