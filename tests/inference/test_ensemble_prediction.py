"""A view whose choice is an ensemble of two configurations averages the members' probabilities before the
argmax; a classifier fitted on another segmentation than the chosen one is fed the one it was fitted on."""

import shutil

import numpy as np
import torch

from orthodiff_auto.classification.reader import PreparedScan
from orthodiff_auto.data.label_values import label_values, to_label_values
from orthodiff_auto.inference.model_dir import ModelDescription, TaskChoice
from orthodiff_auto.inference.predictor import Predictor, SegmentationEnsemble
from orthodiff_auto.segmentation.prediction import probabilities_in_original_geometry
from tests.conftest import sphere_scan, view_geometry


def test_an_ensemble_averages_its_members_probabilities(model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    description = ModelDescription.load(model)
    folds = description.segmentation["sag"].checkpoints  # two random-weight folds: one member each
    members = (TaskChoice("sag", "pretrained", (folds[0],), {}, "3d_fullres"),
               TaskChoice("sag", "scratch", (folds[1],), {}, "3d_fullres"))
    pair = TaskChoice("sag", "pretrained+scratch", (), {"mean_dice": 0.6}, members=members)
    # and a classifier fitted on the first member alone (no classifier checkpoint needed for the segmenters)
    ModelDescription(description.dataset, {"sag": pair}, None,
                     reader_segmentations={"fused/x": {"sag": members[0]}}).save(model)
    g = view_geometry("sag", shape=(6, 24, 24), spacing=(3.0, 1.0, 1.0))
    image, _ = sphere_scan(g.shape, np.random.default_rng(5))
    predictor = Predictor(model, device="cpu")
    case = predictor.predict_case("x", {"sag": (image, g)}, probabilities=True)
    from orthodiff_auto.inference.provenance import run_record
    assert run_record(predictor)["folds"] == [0, 1]  # the members' folds
    fitted_on = predictor.reader_segmenters["fused/x"]["sag"]
    assert isinstance(fitted_on, SegmentationEnsemble) and len(fitted_on.models) == 1

    cpu = torch.device("cpu")
    each = []
    for member in members:
        ensemble = SegmentationEnsemble.load("sag", [model / member.checkpoints[0]], cpu)
        scan = PreparedScan.from_scan(image, g, ensemble.plans.view("sag"))
        scores, own = ensemble.case_scores(scan, cpu, 0.5, False, 2, (image, g))
        each.append(probabilities_in_original_geometry(scores, own.properties, ensemble.view_plan))
    expected = (each[0] + each[1]) / 2
    assert not np.allclose(each[0], expected, atol=1e-3)  # the members differ: the average is not either one
    np.testing.assert_allclose(case.probabilities["sag"], expected, atol=1e-6)
    values = label_values(ensemble.plans.labels)
    np.testing.assert_array_equal(case.segmentations["sag"], to_label_values(expected.argmax(0), values))


class FakeSegmenter:
    def __init__(self):
        self.calls = 0

    def segment_prepared(self, scan, device, overlap, tta, original=None):
        self.calls += 1
        return None, np.full(scan.data.shape[1:], 7, np.uint8), None


class FakeReader:
    def __init__(self, findings):
        self.findings, self.thresholds, self.views, self.seen = findings, {f: 0.5 for f in findings}, ["sag"], None

    def predict_prepared(self, scans, clinical):
        self.seen = scans["sag"].labels
        return {f: {"probability": 0.5, "call": True, "spread": 0.0} for f in self.findings}


def test_a_reader_is_fed_the_segmentation_it_was_fitted_on():
    """The anatomy reader (reads f1) was fitted on a segmentation other than the view's chosen one: it reads that
    one's labels (segmented once per case); the image reader (f2) reads the chosen segmentation's."""
    predictor = Predictor.__new__(Predictor)
    fitted_on = FakeSegmenter()
    anatomy, image = FakeReader(["f1", "f2"]), FakeReader(["f1", "f2"])
    predictor.segmenters, predictor.device, predictor.overlap, predictor.tta = {}, "cpu", 0.5, False
    predictor.classifiers = {"fused/anatomy": anatomy, "sag/scratch": image}
    predictor.classifier_by_views = {frozenset({"sag"}): "sag/scratch"}
    predictor.finding_readers_by_views = {frozenset({"sag"}): {"f1": "fused/anatomy", "f2": "sag/scratch"}}
    predictor.reader_segmenters = {"fused/anatomy": {"sag": fitted_on}}
    chosen = np.zeros((2, 3, 3), np.uint8)
    scan = PreparedScan(np.zeros((1, 2, 3, 3), np.float32), (1.0, 1.0, 1.0), None, chosen)
    case = predictor.predict_case("x", {}, prepared={"sag": scan})
    assert case.readers == {"f1": "fused/anatomy", "f2": "sag/scratch"}
    assert (anatomy.seen == 7).all() and fitted_on.calls == 1
    assert image.seen is chosen
