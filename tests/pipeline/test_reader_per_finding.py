"""The reader per finding (issue 23, item 3): ``find_best_configuration`` chooses, for every finding, the classifier
with the highest pooled out-of-fold AUROC when it clearly beats the macro winner, records it in model.json with
its CI, copies its checkpoints, and ``Predictor`` / ``predict_folder`` take that finding's probability, call and
threshold from it. An old model folder (format 2, no per-finding table) still predicts every finding from the
combination's classifier.

Two fake readers of the sagittal view, registered here: A ranks finding "zeta" perfectly and knows nothing of
"alpha" (macro AUROC 0.75), B ranks "alpha" perfectly and "zeta" backwards (macro 0.5). A is the macro winner;
B reads alpha. Each reader's fold models return fixed probabilities, so a prediction shows which one it came from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from orthodiff_auto.classification.metrics_io import PREDICTIONS_CSV, write_validation_predictions
from orthodiff_auto.classification.reader import READERS, Reader
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.folder import predict_folder
from orthodiff_auto.inference.model_dir import ModelDescription
from orthodiff_auto.inference.predictor import Predictor
from orthodiff_auto.pipeline.auto import cv_report
from orthodiff_auto.pipeline.model_selection import find_best_configuration
from orthodiff_auto.pipeline.sharing import referenced_checkpoints
from orthodiff_auto.training.checkpoint import save_checkpoint
from tests.classification.conftest import CASES, FINDINGS, case_findings, cls_preprocessed  # noqa: F401

N_FOLDS = 3
# what each reader's fold models return at prediction time, and the thresholds its folds chose
PREDICTS = {"constA": {"zeta": 0.2, "alpha": 0.25}, "constB": {"zeta": 0.9, "alpha": 0.95}}
THRESHOLDS = {"constA": {"zeta": 0.3, "alpha": 0.4}, "constB": {"zeta": 0.6, "alpha": 0.7}}


class ConstModel:
    clinical_variables = ()

    def __init__(self, p: np.ndarray):
        self.p = p

    def prepare(self, view, scan) -> np.ndarray:
        return np.zeros(1, np.float32)

    def probabilities(self, inputs, present, clinical) -> np.ndarray:
        return self.p


@pytest.fixture
def const_reader(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("not trained here")

    reader = Reader("const", lambda request: "const", refuse,
                    lambda extras, state, plans, device, where: ConstModel(state["p"].double().numpy()))
    monkeypatch.setitem(READERS, "const", reader)


def out_of_fold(variant: str, labels: np.ndarray) -> np.ndarray:
    """Reader A: zeta perfectly, alpha a constant (AUROC 0.5); reader B: zeta backwards, alpha perfectly."""
    zeta, alpha = labels[:, FINDINGS.index("zeta")], labels[:, FINDINGS.index("alpha")]
    if variant == "constA":
        cols = {"zeta": 0.1 + 0.8 * zeta, "alpha": np.full(len(alpha), 0.5)}
    else:
        cols = {"zeta": 0.9 - 0.8 * zeta, "alpha": 0.1 + 0.8 * alpha}
    return np.stack([cols[f] for f in FINDINGS], axis=1)


@pytest.fixture(scope="module")
def trained(cls_preprocessed, tmp_path_factory) -> Path:
    """A preprocessed folder (its dataset.json and plans, splits of 3 folds) and results/cls/sag/{constA,constB}
    with every fold's validation predictions and checkpoint."""
    base = tmp_path_factory.mktemp("per_finding")
    pp = base / "pp"
    pp.mkdir()
    for name in ("dataset.json", "plans.json"):
        shutil.copy(cls_preprocessed / name, pp / name)
    splits = [{"val": CASES[k::N_FOLDS], "train": [c for c in CASES if c not in CASES[k::N_FOLDS]]}
              for k in range(N_FOLDS)]
    (pp / "splits.json").write_text(json.dumps(splits))
    plans = json.loads((pp / "plans.json").read_text())
    for variant in PREDICTS:
        for k, split in enumerate(splits):
            fold = base / "results" / "cls" / "sag" / variant / f"fold_{k}"
            fold.mkdir(parents=True)
            labels = np.array([[case_findings(CASES.index(c))[f] for f in FINDINGS] for c in split["val"]])
            write_validation_predictions(fold / PREDICTIONS_CSV, split["val"], FINDINGS,
                                         out_of_fold(variant, labels), labels)
            (fold / "summary.json").write_text(json.dumps({"views": ["sag"]}))
            p = torch.tensor([PREDICTS[variant][f] for f in FINDINGS])
            save_checkpoint(fold / "checkpoint_final.pt", {
                "task": "cls", "model": {"p": p},
                "extras": {"kind": "const", "plans": plans, "findings": FINDINGS, "view": "sag", "views": ["sag"],
                           "thresholds": THRESHOLDS[variant]}})
    return pp


@pytest.fixture(scope="module")
def model(trained) -> Path:
    lines = []
    find_best_configuration(trained, trained.parent / "model", folds=range(N_FOLDS), log=lines.append)
    (trained.parent / "selection.log").write_text("\n".join(lines))
    return trained.parent / "model"


def raw_scans(cls_preprocessed: Path, case: str) -> dict:
    return {"sag": cls_preprocessed.parent / "raw" / "imagesTr" / f"{case}_sag.nii.gz"}


def test_model_json_records_the_reader_of_each_finding_with_its_figures(model):
    d = json.loads((model / "model.json").read_text())
    assert d["format"] == "orthodiff_auto.model/5"
    for key in ("sag+cor", "sag"):  # both readers read sag: every combination that has it
        assert d["classification_by_views"][key]["variant"] == "constA"  # the macro winner
        table = d["findings_by_views"][key]
        assert set(table) == set(FINDINGS)
        assert table["alpha"]["reader"] == "sag/constB" and table["zeta"]["reader"] == "sag/constA"
        alpha = table["alpha"]
        assert alpha["auroc"] == pytest.approx(1.0) and alpha["compared"] == pytest.approx(
            {"sag/constA": 0.5, "sag/constB": 1.0})
        assert alpha["default"] == "sag/constA" and alpha["n_cases"] == len(CASES)
        assert alpha["ci"][0] <= alpha["auroc"] <= alpha["ci"][1]
        assert alpha["gain_ci"][0] > 0  # the paired interval of B's gain over A lies above zero
        # the nested estimate: each fold's choice on the other folds' cases also picks B for alpha
        assert set(alpha["chosen_per_fold"].values()) == {"sag/constB"}
        assert alpha["nested_auroc"] == pytest.approx(1.0)
        assert table["zeta"]["compared"] == pytest.approx({"sag/constA": 1.0, "sag/constB": 0.0})
    # the model folder holds both readers' checkpoints, and the export names them
    assert set(d["readers"]) == {"sag/constA", "sag/constB"}
    for choice in d["readers"].values():
        assert all((model / c).is_file() for c in choice["checkpoints"])
    description = ModelDescription.load(model)
    assert set(d["readers"]["sag/constB"]["checkpoints"]) <= set(referenced_checkpoints(description))
    # auto's report names the finding another reader reads, with its figures
    report = cv_report(description)
    # and find_best_configuration's log gives each finding's choice with its CI
    log = (model.parent / "selection.log").read_text()
    assert "  alpha: sag/constB (pooled CV AUROC 1.000, 95% CI 1.00-1.00" in log
    assert "replaces sag/constA (0.500): paired 95% CI of the gain +0.50 to +0.50" in log
    assert "  zeta: sag/constA (pooled CV AUROC 1.000" in log
    assert "each finding from its reader below: macro AUROC 1.000 (choosing inside each fold: 1.000)" in log
    selection = d["classification_by_views"]["sag"]["cv"]["selection"]
    assert selection["combined_macro_auroc"] == pytest.approx(1.0) and selection["macro_auroc"] == pytest.approx(0.75)
    assert "alpha from sag/constB: AUROC 1.000" in report and "zeta from" not in report


def test_each_finding_is_predicted_by_its_reader_with_its_thresholds(model, cls_preprocessed, const_reader):
    predictor = Predictor(model, device="cpu")
    prediction = predictor.predict(raw_scans(cls_preprocessed, CASES[0]))
    zeta, alpha = prediction.findings["zeta"], prediction.findings["alpha"]
    assert (zeta.probability, zeta.threshold, zeta.positive) == (pytest.approx(0.2), pytest.approx(0.3), False)
    assert (alpha.probability, alpha.threshold, alpha.positive) == (pytest.approx(0.95), pytest.approx(0.7), True)
    assert prediction.classifier == "sag/constA (alpha from sag/constB)"
    assert predictor.thresholds_for(["sag", "cor"]) == pytest.approx({"zeta": 0.3, "alpha": 0.7})


def test_predict_folder_writes_each_finding_from_its_reader(model, cls_preprocessed, const_reader, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for case in CASES[:2]:
        shutil.copy(cls_preprocessed.parent / "raw" / "imagesTr" / f"{case}_sag.nii.gz", inputs)
    predict_folder(inputs, tmp_path / "out", model, log=lambda *_: None)
    table = pd.read_csv(tmp_path / "out" / "findings.csv", dtype={"case_id": str})
    assert list(table.columns) == ["case_id", "views", "classifier", "zeta", "zeta_call", "zeta_spread",
                                   "alpha", "alpha_call", "alpha_spread"]  # the schema of a format-2 folder
    assert table["zeta"].tolist() == pytest.approx([0.2, 0.2])
    assert table["alpha"].tolist() == pytest.approx([0.95, 0.95])
    assert table["alpha_call"].tolist() == [1, 1] and table["zeta_call"].tolist() == [0, 0]
    thresholds = json.loads((tmp_path / "out" / "thresholds.json").read_text())
    assert thresholds == pytest.approx({"zeta": 0.3, "alpha": 0.7})  # what evaluate reads: each finding's reader's


def test_an_old_model_folder_predicts_every_finding_from_its_classifier(model, cls_preprocessed, const_reader,
                                                                       tmp_path):
    old = tmp_path / "old"
    shutil.copytree(model, old)
    d = json.loads((old / "model.json").read_text())
    d["format"] = "orthodiff_auto.model/2"
    del d["findings_by_views"], d["readers"]
    shutil.rmtree(old / "cls" / "sag" / "constB")  # a format-2 folder held the combinations' classifiers only
    (old / "model.json").write_text(json.dumps(d))
    prediction = Predictor(old, device="cpu").predict(raw_scans(cls_preprocessed, CASES[0]))
    assert prediction.classifier == "sag/constA"
    assert {f: x.probability for f, x in prediction.findings.items()} == pytest.approx(PREDICTS["constA"])
    assert {f: x.threshold for f, x in prediction.findings.items()} == pytest.approx(THRESHOLDS["constA"])


def test_a_per_finding_reader_missing_from_readers_is_refused(model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    d = json.loads((broken / "model.json").read_text())
    del d["readers"]["sag/constB"]
    (broken / "model.json").write_text(json.dumps(d))
    with pytest.raises(UserInputError, match="sag/constB"):
        ModelDescription.load(broken)
