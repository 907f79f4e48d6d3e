"""``evaluate`` against a plain folder of reference labels, and predictions named the nnU-Net way."""

import json
import shutil

import numpy as np
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import write_image
from orthodiff_auto.evaluation.references import load_references
from tests.conftest import view_geometry
from tests.evaluation.test_evaluate_folder import _dataset

FINDINGS_PRED = ("case_id,views,tear,tear_call,tear_spread,fluid,fluid_call,fluid_spread\n"
                 "t0,ax,0.1,0,0,0.9,1,0\nt1,ax,0.4,0,0,0.2,0,0\nt2,ax,0.35,0,0,0.8,1,0\nt3,ax,0.8,1,0,0.3,0,0\n")


def _predictions(pred_dir, refs, g, name="{case}_ax.nii.gz"):
    for case, ref in refs.items():
        pred = ref.copy()
        pred[:, 2:6, 5] = 0  # structure a (value 1): Dice 6/7, as in test_evaluate_folder
        write_image(pred_dir / name.format(case=case), pred, g)
    (pred_dir / "findings.csv").write_text(FINDINGS_PRED)


def _evaluate(pred_dir, reference, *options):
    assert main(["evaluate", str(pred_dir), str(reference), "--bootstrap", "0", *options]) == 0
    return json.loads((pred_dir / "evaluation" / "summary.json").read_text())


def test_nnunet_named_predictions_match_the_raw_dataset_references(tmp_path):
    g, refs = _dataset(tmp_path / "raw")
    _predictions(tmp_path / "ours", refs, g)
    _predictions(tmp_path / "nnunet", refs, g, name="{case}.nii.gz")  # from inputs named t0_0000.nii.gz
    ours, theirs = _evaluate(tmp_path / "ours", tmp_path / "raw"), _evaluate(tmp_path / "nnunet", tmp_path / "raw")
    assert theirs["segmentation"]["n_scans"] == 4 and theirs["segmentation"]["missing_predictions"] == []
    assert theirs["segmentation"]["overall"] == ours["segmentation"]["overall"]
    assert theirs["segmentation"]["overall"]["a"]["dice"]["mean"] == pytest.approx(6 / 7)
    case = theirs["segmentation"]["per_case"]["t0_ax.nii.gz"]  # keyed by the reference's name either way
    assert case["prediction"] == "t0.nii.gz"
    # outputs of predict_folder before it dropped nnU-Net's channel suffix
    _predictions(tmp_path / "older", refs, g, name="{case}_0000.nii.gz")
    older = _evaluate(tmp_path / "older", tmp_path / "raw")
    assert older["segmentation"]["overall"] == ours["segmentation"]["overall"]


def test_a_plain_label_folder_with_its_dataset_json_and_findings_scores_as_the_raw_dataset(tmp_path):
    g, refs = _dataset(tmp_path / "raw")
    labels = tmp_path / "labelsTs"
    shutil.copytree(tmp_path / "raw" / "labelsTs", labels)
    shutil.copy(tmp_path / "raw" / "dataset.json", labels)
    shutil.copy(tmp_path / "raw" / "findingsTs.csv", labels)
    _predictions(tmp_path / "pred", refs, g)
    (tmp_path / "pred" / "thresholds.json").write_text(json.dumps({"tear": 0.5, "fluid": 0.5}))
    plain = _evaluate(tmp_path / "pred", labels)
    raw = _evaluate(tmp_path / "pred", tmp_path / "raw")
    assert plain["segmentation"]["overall"] == raw["segmentation"]["overall"]
    assert plain["segmentation"]["per_site"] == raw["segmentation"]["per_site"]
    assert plain["findings"]["per_finding"] == raw["findings"]["per_finding"]
    assert plain["findings"]["per_finding"]["tear"]["auroc"] == pytest.approx(0.75)


def test_a_bare_label_folder_names_labels_by_value_and_reads_findings_given_apart(tmp_path):
    g, refs = _dataset(tmp_path / "raw")
    labels = tmp_path / "bare"
    labels.mkdir()
    for case in refs:  # nnU-Net's label names: <case>.nii.gz; the view comes from the header
        shutil.copy(tmp_path / "raw" / "labelsTs" / f"{case}_ax.nii.gz", labels / f"{case}.nii.gz")
    _predictions(tmp_path / "pred", refs, g, name="{case}.nii.gz")
    summary = _evaluate(tmp_path / "pred", labels, "--findings", str(tmp_path / "raw" / "findingsTs.csv"))
    seg = summary["segmentation"]
    assert set(seg["overall"]) == {"label_1", "label_2", "mean"}
    assert seg["overall"]["label_1"]["dice"]["mean"] == pytest.approx(6 / 7)
    assert set(seg["per_view"]) == {"ax"}
    assert summary["findings"]["per_finding"]["tear"]["auroc"] == pytest.approx(0.75)
    assert set(summary["findings"]["per_finding"]) == {"tear", "fluid"}  # the CSV's columns, not its site
    # the same folder with the dataset.json given apart: the declared names
    named = _evaluate(tmp_path / "pred", labels, "--dataset-json", str(tmp_path / "raw" / "dataset.json"))
    assert set(named["segmentation"]["overall"]) == {"a", "b", "mean"}
    assert named["segmentation"]["overall"]["a"] == seg["overall"]["label_1"]


def test_a_case_name_never_matches_two_views(tmp_path):
    g = view_geometry("ax", shape=(4, 10, 10), spacing=(2.0, 1.0, 1.0))
    labels, pred = tmp_path / "labels", tmp_path / "pred"
    ref = np.zeros(g.shape, np.uint8)
    ref[:, 2:6, 2:6] = 1
    write_image(labels / "c_ax.nii.gz", ref, g)
    write_image(labels / "c_sag.nii.gz", ref, g)
    write_image(pred / "c.nii.gz", ref, g)  # which view? neither claims it
    scans = load_references(labels).scans
    assert all("c.nii.gz" not in s.names for s in scans)
    assert main(["evaluate", str(pred), str(labels), "--bootstrap", "0"]) == 2


def test_an_empty_reference_folder_is_refused_naming_it(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "empty") in err and "no reference label files" in err
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "empty"), "--findings",
                 str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: findings CSV does not exist" in capsys.readouterr().err
