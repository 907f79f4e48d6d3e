"""A reader is one module: a toy reader defined and registered here (no other file knows it) trains a fold
through ``train_fold``, names its run folder, declares the files its fold reads for ``auto``'s stale check, and
predicts through ``FindingsEnsemble``. A dispatch site that still chose the classifier by a hard-coded name
would fail one of these steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from orthodiff_auto.classification.fold import classification_fold
from orthodiff_auto.classification.fold_outputs import (CasePredictions, FoldOutputs, score_validation,
                                                        write_fold_outputs)
from orthodiff_auto.classification.inference import FindingsEnsemble
from orthodiff_auto.classification.metrics_io import PREDICTIONS_CSV, thresholds_table
from orthodiff_auto.classification.reader import READERS, PreparedScan, Reader, reader_of_checkpoint
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.pipeline.auto import _fold_inputs
from orthodiff_auto.pipeline.train_fold import train_fold
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.training.config import make_config
from orthodiff_auto.training.fold import FoldRequest
from tests.classification.conftest import FINDINGS


class ToyModel:
    """Probability of a finding: its training prevalence, moved by the scan's mean intensity."""

    clinical_variables = ()

    def __init__(self, prevalence: np.ndarray, slope: float):
        self.prevalence, self.slope = prevalence, slope

    def prepare(self, view, scan: PreparedScan) -> np.ndarray:
        return np.array([float(scan.data.mean())])

    def probabilities(self, inputs, present, clinical) -> np.ndarray:
        x = np.mean([inputs[v][0] for v in present])
        logit = np.log(self.prevalence / (1 - self.prevalence)) + self.slope * x
        return 1 / (1 + np.exp(-logit))


def toy_train(request, plans, cls_config, device, ctx, log):
    fold = classification_fold(request, plans)
    y_train = np.stack([fold.labels[c] for c in fold.train])
    prevalence = np.clip(y_train.mean(0), 0.05, 0.95)
    y_val = np.stack([fold.labels[c] for c in fold.val])
    probs = np.repeat(prevalence[None], len(fold.val), 0)
    thresholds, metrics = score_validation(y_val, probs, fold.findings, cls_config, None)
    extras = {"plans": plans.to_dict(), "findings": fold.findings, "views": fold.views, "view": request.view,
              "kind": "toy", "thresholds": thresholds_table(fold.findings, thresholds), "inputs": {}}
    checkpoint = {"task": "cls", "model": {"prevalence": torch.from_numpy(prevalence), "slope": torch.tensor(0.5)},
                  "extras": extras, "config": request.config.to_dict()}
    summary = {"task": "cls", "variant": request.variant, "metrics": metrics}
    return write_fold_outputs(request.output_dir(), FoldOutputs(checkpoint, CasePredictions(fold.val, probs, y_val),
                                                                thresholds, summary), fold.findings, log)


def toy_load(extras, state, plans, device, where):
    return ToyModel(state["prevalence"].double().numpy(), float(state["slope"]))


@pytest.fixture
def toy_reader(monkeypatch, tmp_path):
    marker = tmp_path / "toy_input.txt"
    reader = Reader("toy", lambda request: f"toy_{'pre' if request.pretrained else 'plain'}", toy_train, toy_load,
                    fold_inputs=lambda request, views: [marker] + [Path(v) for v in views])
    monkeypatch.setitem(READERS, "toy", reader)
    return reader, marker


def test_a_reader_registered_here_trains_a_fold_and_predicts(toy_reader, cls_preprocessed, tmp_path):
    _, marker = toy_reader
    config = make_config("smoke", ["classifier_features=toy"])
    request = FoldRequest(cls_preprocessed, "cls", "sag", 0, config, results_dir=tmp_path / "results")
    summary = train_fold(request, log=lambda msg: None)

    fold_dir = tmp_path / "results" / "cls" / "sag" / "toy_plain" / "fold_0"  # the reader named its folder
    assert request.output_dir() == fold_dir and summary["variant"] == "toy_plain"
    assert json.loads((fold_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert (fold_dir / PREDICTIONS_CSV).is_file()
    ckpt = torch.load(fold_dir / "checkpoint_final.pt", weights_only=True)
    assert ckpt["extras"]["kind"] == "toy" and reader_of_checkpoint(ckpt["extras"], "x").name == "toy"

    ensemble = FindingsEnsemble.load([fold_dir / "checkpoint_final.pt"])
    assert ensemble.views == ["sag"] and ensemble.findings == FINDINGS
    case = ensemble.models[0]
    data, _, props = PreprocessedDataset(cls_preprocessed, "sag").load(
        PreprocessedDataset(cls_preprocessed, "sag").case_ids(subset="train")[0])
    scan = PreparedScan(np.asarray(data[...], np.float32), tuple(props.spacing_after_resampling), props)
    found = ensemble.predict_prepared({"sag": scan})
    x = float(np.asarray(data[...], np.float32).mean())
    expected = 1 / (1 + np.exp(-(np.log(case.prevalence / (1 - case.prevalence)) + 0.5 * x)))
    assert [found[f]["probability"] for f in FINDINGS] == pytest.approx(expected)

    # auto's stale check asks the reader which files the fold reads
    assert _fold_inputs(cls_preprocessed, tmp_path / "results", "cls", "sag", 0, config, None) == [marker, Path("sag")]


def test_an_unknown_reader_is_refused_with_the_known_ones(cls_preprocessed, tmp_path):
    config = make_config("smoke", ["classifier_features=nonesuch"])
    request = FoldRequest(cls_preprocessed, "cls", "sag", 0, config, results_dir=tmp_path)
    with pytest.raises(UserInputError, match=r"choose one of \[.*'finetune'.*\], got 'nonesuch'"):
        train_fold(request, log=lambda msg: None)
