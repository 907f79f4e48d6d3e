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


def write_predictions(pred_dir, g, refs, tear_scores) -> None:
    """Segmentations where structure a loses one column of 4*4 = 16 voxels (Dice = 2*48/(64+48) = 6/7), b exact;
    findings with ``tear_scores`` for t0..t3 (labels [0, 0, 1, 1]) and fluid (labels [1, 0, 1, 0]) scored
    [0.9, 0.2, 0.8, 0.3], ranking both positives first (AUROC 1); thresholds 0.5."""
    for case, ref in refs.items():
        pred = ref.copy()
        pred[:, 2:6, 5] = 0
        write_image(pred_dir / f"{case}_ax.nii.gz", pred, g)
    rows = [f"t{i},ax,{s},{int(s > 0.5)},0,{f},{int(f > 0.5)},0" for i, (s, f) in
            enumerate(zip(tear_scores, (0.9, 0.2, 0.8, 0.3)))]
    (pred_dir / "findings.csv").write_text(
        "case_id,views,tear,tear_call,tear_spread,fluid,fluid_call,fluid_spread\n" + "\n".join(rows) + "\n")
    (pred_dir / "thresholds.json").write_text(json.dumps({"tear": 0.5, "fluid": 0.5}))


def test_metrics_match_hand_computation(tmp_path, capsys):
    g, refs = _dataset(tmp_path / "raw")
    pred_dir = tmp_path / "pred"
    # tear: scores [0.1, 0.4, 0.35, 0.8] for labels [0, 0, 1, 1] -> AUROC 0.75 (3 of 4 pairs ordered)
    write_predictions(pred_dir, g, refs, (0.1, 0.4, 0.35, 0.8))
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
    assert summary["findings"]["threshold_method"] == "thresholds.json"
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
    assert summary["findings"]["n_cases"] == 3 and summary["findings"]["n_reference"] == 4
    assert summary["findings"]["per_finding"]["tear"]["auroc"] == pytest.approx(1.0)
    table = report_table(summary)
    assert "not assessed (no scan the classifier reads): t1" in table
    assert "findings scored: 3 of 4 reference cases" in table


_FINDINGS_CSV = ("case_id,views,tear,tear_call,tear_spread,fluid,fluid_call,fluid_spread\n"
                 "t0,ax,0.1,0,0,0.9,1,0\nt1,ax,0.4,0,0,0.2,0,0\nt2,ax,0.35,0,0,0.8,1,0\nt3,ax,0.8,1,0,0.3,0,0\n")


def test_without_thresholds_json_only_threshold_free_metrics(tmp_path, capsys):
    _dataset(tmp_path / "raw")
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    (pred_dir / "findings.csv").write_text(_FINDINGS_CSV)
    assert main(["evaluate", str(pred_dir), str(tmp_path / "raw"), "--bootstrap", "0"]) == 0
    summary = json.loads((pred_dir / "evaluation" / "summary.json").read_text())
    fnd = summary["findings"]
    assert fnd["threshold_method"] == "none"
    assert fnd["per_finding"]["tear"]["auroc"] == pytest.approx(0.75)
    assert fnd["per_finding"]["tear"]["sensitivity"] is None and fnd["per_finding"]["tear"]["specificity"] is None
    out = capsys.readouterr().out
    tear_row = next(line for line in out.splitlines() if line.startswith("tear"))
    assert tear_row.split()[-2:] == ["\u2013", "\u2013"]  # as report.html prints an undefined value
    assert "sens/spec not reported: no thresholds.json" in out
    assert "segmentations scored: 0 of 4 reference scans" in out


def test_test_set_thresholds_on_request_and_labelled(tmp_path, capsys):
    _dataset(tmp_path / "raw")
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    (pred_dir / "findings.csv").write_text(_FINDINGS_CSV)
    (pred_dir / "thresholds.json").write_text(json.dumps({"tear": 0.5, "fluid": 0.5}))
    args = ["evaluate", str(pred_dir), str(tmp_path / "raw"), "--bootstrap", "0", "--test-set-thresholds"]
    assert main(args) == 0
    fnd = json.loads((pred_dir / "evaluation" / "summary.json").read_text())["findings"]
    assert fnd["threshold_method"] == "test_set_youden"
    # tear: labels [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8]; Youden picks 0.8 (sens 0.5, spec 1) over the
    # stored 0.5, which gives the same counts here, so check the threshold itself
    assert fnd["per_finding"]["tear"]["threshold"] == pytest.approx(0.8)
    assert "thresholds chosen on this test set" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["", "case_id,views,tear,tear_call,tear_spread,fluid,fluid_call,fluid_spread\n"
                                         "zz,ax,0.1,0,0,0.9,1,0\n"])
def test_no_prediction_matches_a_reference_exit_2(tmp_path, capsys, content):
    _dataset(tmp_path / "raw")
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    if content:
        (pred_dir / "findings.csv").write_text(content)
    assert main(["evaluate", str(pred_dir), str(tmp_path / "raw")]) == 2
    err = capsys.readouterr().err
    assert "no prediction matches a reference" in err and str(pred_dir) in err and str(tmp_path / "raw") in err
    assert not (pred_dir / "evaluation").exists()


def test_dice_confidence_intervals_resample_scans_and_are_printed():
    from orthodiff_auto.evaluation.evaluate_folder import dice_mean_ci, report_table

    per_case = [{"bone": {"dice": 0.9}, "disc": {"dice": 0.2}}, {"bone": {"dice": 0.9}, "disc": {"dice": float("nan")}},
                {"bone": {"dice": 0.9}, "disc": {"dice": 0.6}}]
    ci = dice_mean_ci(per_case, n_resamples=2000, seed=1)
    assert ci["bone"] == pytest.approx([0.9, 0.9])  # the same Dice on every scan: no spread
    low, high = ci["disc"]  # NaN (absent from both) left out: resamples of [0.2, 0.6]
    assert low == pytest.approx(0.2) and high == pytest.approx(0.6)
    assert ci["mean"][0] < 0.7 < ci["mean"][1]  # per-scan means 0.55, 0.9, 0.75
    summary = {"segmentation": {"n_scans": 3, "missing_predictions": [], "dice_ci": ci, "overall": {
        "bone": {"dice": {"mean": 0.9}, "hd95": {"median": 1.0}}, "disc": {"dice": {"mean": 0.4}, "hd95": {"median": 2.0}},
        "mean": {"dice": {"mean": 0.733}}}}}
    rows = {line.split()[0]: line.split() for line in report_table(summary).splitlines()[1:4]}
    assert rows["disc"][1:3] == ["0.400", "0.20-0.60"] and rows["mean"][2] == f"{ci['mean'][0]:.2f}-{ci['mean'][1]:.2f}"
