"""`auto` end to end on tiny generated data with the smoke config, then predict_folder and evaluate."""

import json

from orthodiff_auto.cli import main


def test_auto_predict_evaluate_end_to_end(tmp_path, capsys):
    raw = tmp_path / "raw"
    assert main(["generate_synthetic", str(raw), "--cases", "6", "--test", "2", "--unlabeled", "2", "--size", "tiny",
                 "--seed", "3", "--complete"]) == 0
    work = tmp_path / "work"
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--config", "smoke", "--folds", "0",
                 "--set", "num_workers=0", "--pretrain-set", "num_workers=0", "-np", "1"]) == 0
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
    # a second run finds every stage done
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--config", "smoke", "--folds", "0",
                 "-np", "1"]) == 0
    again = capsys.readouterr().out
    assert "done" in again and "== pretrain sag: done" in again
    preds = tmp_path / "preds"
    assert main(["predict_folder", str(raw / "imagesTs"), str(preds), "--model", str(work / "model")]) == 0
    assert len(list(preds.glob("*.nii.gz"))) == len(list((raw / "imagesTs").glob("*.nii.gz")))
    assert (preds / "findings.csv").is_file()
    assert main(["evaluate", str(preds), str(raw), "--bootstrap", "50"]) == 0
    summary = json.loads((preds / "evaluation" / "summary.json").read_text())
    assert summary["segmentation"]["n_scans"] == len(list((raw / "imagesTs").glob("*.nii.gz")))
    assert "macro" in summary["findings"]
