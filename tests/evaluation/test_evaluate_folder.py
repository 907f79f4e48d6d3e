"""``evaluate`` against hand-computed Dice and AUROC, with outputs and per-site breakdown."""

import json

import numpy as np
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import write_image
from tests.conftest import view_geometry


def _dataset(root):
    (root / "imagesTr").mkdir(parents=True)
    (root / "imagesTs").mkdir()
    (root / "labelsTs").mkdir()
    json.dump({"name": "E", "labels": {"background": 0, "a": 1, "b": 2}, "findings": ["tear", "fluid"],
               "views": ["ax"]}, open(root / "dataset.json", "w"))
    g = view_geometry("ax", shape=(4, 10, 10), spacing=(2.0, 1.0, 1.0))
    write_image(root / "imagesTr" / "tr0_ax.nii.gz", np.ones(g.shape, np.float32), g)
    (root / "findings.csv").write_text("case_id,tear,fluid\ntr0,1,0\n")
    refs = {}
    for i in range(4):
        ref = np.zeros(g.shape, np.uint8)
        ref[:, 2:6, 2:6] = 1  # 4*4*4 = 64 voxels
        ref[:, 7:9, 7:9] = 2  # 16 voxels
        write_image(root / "imagesTs" / f"t{i}_ax.nii.gz", np.ones(g.shape, np.float32), g)
        write_image(root / "labelsTs" / f"t{i}_ax.nii.gz", ref, g)
        refs[f"t{i}"] = ref
    (root / "findingsTs.csv").write_text("case_id,tear,fluid,site\nt0,0,1,A\nt1,0,0,A\nt2,1,1,B\nt3,1,0,B\n")
    return g, refs


def test_metrics_match_hand_computation(tmp_path, capsys):
    g, refs = _dataset(tmp_path / "raw")
    pred_dir = tmp_path / "pred"
    for case, ref in refs.items():
        pred = ref.copy()
        pred[:, 2:6, 5] = 0  # structure a loses one column of 4*4 = 16 voxels: Dice = 2*48/(64+48) = 6/7
        write_image(pred_dir / f"{case}_ax.nii.gz", pred, g)
    # tear: scores [0.1, 0.4, 0.35, 0.8] for labels [0, 0, 1, 1] -> AUROC 0.75 (3 of 4 pairs ordered)
    # fluid: labels [1, 0, 1, 0], scores ranking both positives first -> AUROC 1
    (pred_dir / "findings.csv").write_text(
        "case_id,views,tear,tear_call,tear_spread,fluid,fluid_call,fluid_spread\n"
        "t0,ax,0.1,0,0,0.9,1,0\nt1,ax,0.4,0,0,0.2,0,0\nt2,ax,0.35,0,0,0.8,1,0\nt3,ax,0.8,1,0,0.3,0,0\n")
    (pred_dir / "thresholds.json").write_text(json.dumps({"tear": 0.5, "fluid": 0.5}))
    assert main(["evaluate", str(pred_dir), str(tmp_path / "raw"), "--bootstrap", "200"]) == 0
    summary = json.loads((pred_dir / "evaluation" / "summary.json").read_text())
    seg = summary["segmentation"]["overall"]
    assert seg["a"]["dice"]["mean"] == pytest.approx(6 / 7)
    assert seg["b"]["dice"]["mean"] == pytest.approx(1.0)
    assert seg["b"]["hd95"]["mean"] == pytest.approx(0.0)
    f = summary["findings"]["per_finding"]
    assert f["tear"]["auroc"] == pytest.approx(0.75) and f["fluid"]["auroc"] == pytest.approx(1.0)
    # at the stored threshold 0.5: tear catches 1 of 2 positives, no false positive
    assert f["tear"]["sensitivity"] == pytest.approx(0.5) and f["tear"]["specificity"] == pytest.approx(1.0)
    assert summary["findings"]["threshold_method"] == "given"
    assert f["tear"]["auroc_ci_low"] <= 0.75 <= f["tear"]["auroc_ci_high"]
    assert set(summary["findings"]["groups"]) == {"A", "B"}
    assert set(summary["segmentation"]["per_site"]) == {"A", "B"}
    for png in ("roc_curves.png", "dice_boxplot.png"):
        assert (pred_dir / "evaluation" / png).stat().st_size > 1000
    out = capsys.readouterr().out
    assert "0.857" in out and "0.750" in out


def test_missing_prediction_is_listed(tmp_path):
    from orthodiff_auto.evaluation.evaluate_folder import evaluate_predictions

    g, refs = _dataset(tmp_path / "raw")
    write_image(tmp_path / "pred" / "t0_ax.nii.gz", refs["t0"], g)
    summary = evaluate_predictions(tmp_path / "pred", tmp_path / "raw", bootstrap=0)
    assert summary["segmentation"]["n_scans"] == 1
    assert sorted(summary["segmentation"]["missing_predictions"]) == ["t1_ax.nii.gz", "t2_ax.nii.gz", "t3_ax.nii.gz"]


def test_no_references_exit_2(tmp_path, capsys):
    _dataset(tmp_path / "raw")
    for p in (tmp_path / "raw" / "labelsTs").iterdir():
        p.unlink()
    (tmp_path / "raw" / "findingsTs.csv").unlink()
    (tmp_path / "pred").mkdir()
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "raw")]) == 2
    assert "no test references" in capsys.readouterr().err


def test_case_the_classifier_could_not_assess_is_left_out_and_listed(tmp_path):
    from orthodiff_auto.evaluation.evaluate_folder import evaluate_predictions, report_table

    g, refs = _dataset(tmp_path / "raw")
    pred_dir = tmp_path / "pred"
    for case, ref in refs.items():
        write_image(pred_dir / f"{case}_ax.nii.gz", ref, g)
    # t1 has an empty findings row (predict_folder writes one when no scan of the classifier's view exists);
    # tear over t0, t2, t3: labels [0, 1, 1], scores [0.1, 0.35, 0.8] -> AUROC 1
    (pred_dir / "findings.csv").write_text(
        "case_id,views,tear,tear_call,tear_spread,fluid,fluid_call,fluid_spread\n"
        "t0,ax,0.1,0,0,0.9,1,0\nt1,ax,,,,,,\nt2,ax,0.35,0,0,0.8,1,0\nt3,ax,0.8,1,0,0.3,0,0\n")
    summary = evaluate_predictions(pred_dir, tmp_path / "raw", bootstrap=0)
    assert summary["findings"]["not_assessed"] == ["t1"]
    assert summary["findings"]["per_finding"]["tear"]["auroc"] == pytest.approx(1.0)
    assert "not assessed (no scan the classifier reads): t1" in report_table(summary)
