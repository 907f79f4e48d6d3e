"""The ankle and the shoulder: joint descriptions, their datasets, view planning, and the pipeline running on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.dataset import load_raw_dataset
from orthodiff_auto.data.views import VIEWS, infer_view
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.synthetic import JOINTS, dataset_json, generate_dataset, render_case, sample_case
from orthodiff_auto.synthetic.shoulder import scapular_axes

NEW_JOINTS = ("ankle", "shoulder")


@pytest.mark.parametrize("joint", list(JOINTS))
def test_joint_description_is_consistent(joint):
    j = JOINTS[joint]
    assert len(set(j.label_names)) == len(j.label_names) and "background" not in j.label_names
    assert list(j.labels.values()) == list(range(len(j.label_names) + 1))
    assert set(j.default_prevalence) == set(j.findings)
    assert set(j.best_view) <= set(j.findings) and set(j.best_view.values()) <= set(VIEWS)
    assert set(j.region_radius_mm) == set(j.findings)
    assert set(j.hint_labels) <= set(j.findings) and set(j.hint_labels.values()) <= set(j.label_names)
    assert set(j.view_centres) == set(VIEWS)
    params = j.sample_finding_params(np.random.default_rng(0))
    assert set(params) == set(j.findings)
    description = dataset_json(joint)
    assert description["anatomy"] == joint and description["findings"] == list(j.findings)
    assert description["labels"] == j.labels


@pytest.mark.parametrize("joint", NEW_JOINTS)
def test_tiny_case_has_every_label_and_is_deterministic(joint):
    spec = sample_case(0, 0, size="tiny", joint=joint)
    a = render_case(spec, findings={f: False for f in JOINTS[joint].findings})
    values = set()
    for view, scan in a.scans.items():
        assert scan.image.dtype == np.float32 and np.isfinite(scan.image).all() and scan.image.min() >= 0
        assert infer_view(scan.geometry) == view
        values |= set(np.unique(scan.label).tolist())
    assert values == set(JOINTS[joint].labels.values())
    b = render_case(sample_case(0, 0, size="tiny", joint=joint), findings={f: False for f in JOINTS[joint].findings})
    assert all(np.array_equal(a.scans[v].image, b.scans[v].image) for v in a.scans)


def test_joints_draw_from_their_own_random_streams():
    """Datasets of two joints made with one seed do not share sites, noise or missing views."""
    knee = [sample_case(0, i, size="tiny") for i in range(12)]
    ankle = [sample_case(0, i, size="tiny", joint="ankle") for i in range(12)]
    assert [c.site for c in knee] != [c.site for c in ankle]
    assert not np.allclose(knee[0].tissue_jitter, ankle[0].tissue_jitter)


@pytest.mark.parametrize("joint, label", [("ankle", "talus")])
def test_views_share_one_anatomy_in_physical_space(joint, label):
    """The three views see a compact structure at the same physical place (within a few mm); the rendering that
    places it is the joints' shared machinery (the knee's test checks it against the latent patella)."""
    spec = sample_case(2, 0, size="demo", sites=["siteA"], joint=joint)
    rc = render_case(spec, findings={f: False for f in JOINTS[joint].findings}, noise=False)
    centroids = []
    for scan in rc.scans.values():
        g = scan.geometry
        idx = np.argwhere(scan.label == JOINTS[joint].labels[label]).astype(float)  # (k, j, i)
        centroids.append(np.asarray(g.origin) + (idx[:, ::-1] * np.asarray(g.spacing[::-1])).mean(axis=0)
                         @ g.direction_matrix.T)
    spread = max(np.linalg.norm(a - b) for a in centroids for b in centroids)
    assert spread < 4.0, centroids


def test_shoulder_planes_follow_the_scapular_plane_and_keep_their_names():
    """Oblique coronal slices lie in the scapular plane (their normal along its normal) and oblique sagittal ones
    across it, 20-45 degrees off the scanner's axes, yet every scan's header still names its view."""
    for index in range(25):
        spec = sample_case(4, index, size="tiny", joint="shoulder")
        normal = spec.anatomy.rotation @ scapular_axes(spec.anatomy)[1]  # world direction of the plane's normal
        for view, g in spec.geometries.items():
            assert infer_view(g) == view
            slice_normal = g.direction_matrix[:, 2]
            if view in ("cor", "sag"):
                along = normal if view == "cor" else np.cross([0.0, 0.0, 1.0], normal)
                angle = np.degrees(np.arccos(min(1.0, abs(float(slice_normal @ along)))))
                assert angle < 12.0, (index, view, angle)
        off_axis = np.degrees(np.arccos(abs(spec.geometries["cor"].direction_matrix[1, 2])))
        assert 12.0 < off_axis < 45.0, (index, off_axis)


def test_prevalence_and_joint_are_checked(tmp_path):
    with pytest.raises(UserInputError, match="unknown finding 'acl_tear'.*ankle"):
        generate_dataset(tmp_path / "a", n_cases=1, size="tiny", joint="ankle", prevalence={"acl_tear": 0.5})
    with pytest.raises(UserInputError, match="unknown joint 'hip'"):
        generate_dataset(tmp_path / "b", n_cases=1, size="tiny", joint="hip")
    flags = [sample_case(0, i, size="tiny", joint="shoulder", prevalence={"labral_tear": 1.0, "glenohumeral_effusion": 0.0})
             .findings for i in range(10)]
    assert all(f["labral_tear"] and not f["glenohumeral_effusion"] for f in flags)


def test_generate_synthetic_refuses_an_unknown_joint(tmp_path, capsys):
    assert main(["generate_synthetic", str(tmp_path / "out"), "--joint", "hip", "--size", "tiny", "--cases", "1"]) == 2
    assert "unknown joint 'hip'; choose one of knee, ankle, shoulder" in capsys.readouterr().err


@pytest.mark.parametrize("joint", NEW_JOINTS)
def test_pipeline_runs_on_the_joint(tmp_path, capsys, joint):
    """validate_dataset, plan_and_preprocess and a smoke segmentation and classification fold on a tiny dataset
    of the joint: nothing downstream knows which joint it is."""
    raw, pp = tmp_path / "raw", tmp_path / "pp"
    assert main(["generate_synthetic", str(raw), "--joint", joint, "--cases", "5", "--size", "tiny", "--seed", "1"]) == 0
    description = json.loads((raw / "dataset.json").read_text())
    assert description["anatomy"] == joint and description["findings"] == list(JOINTS[joint].findings)
    ds = load_raw_dataset(raw)
    assert ds.case_ids("train") == [f"{joint}{i:04d}" for i in range(1, 6)]
    assert list(ds.findings.columns) == list(JOINTS[joint].findings) + ["site", "field_strength"]
    assert main(["validate_dataset", str(raw)]) == 0
    assert main(["plan_and_preprocess", str(raw), "--out", str(pp), "--budget", "cpu", "-np", "1"]) == 0
    plans = json.loads((pp / "plans.json").read_text())
    assert plans["labels"] == JOINTS[joint].labels and plans["findings"] == list(JOINTS[joint].findings)
    for task in ("seg", "cls"):
        assert main(["train_fold", str(pp), task, "sag", "0", "--config", "smoke", "--set", "num_epochs=1",
                     "--set", "iterations_per_epoch=2", "--set", "num_workers=0"]) == 0
    seg = json.loads((tmp_path / "results" / "seg" / "sag" / "scratch" / "fold_0" / "summary.json").read_text())
    assert seg["num_training_scans"] == 4 and set(seg["mean"]) == set(JOINTS[joint].label_names) | {"mean"}
    cls = json.loads((tmp_path / "results" / "cls" / "sag" / "scratch" / "fold_0" / "summary.json").read_text())
    assert cls["num_training_cases"] == 4 and cls["findings"] == list(JOINTS[joint].findings)
    capsys.readouterr()
