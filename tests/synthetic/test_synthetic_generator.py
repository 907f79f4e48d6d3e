"""Synthetic knee generator: determinism, labels, geometry, dataset folder, missing views."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orthodiff_auto.data.dataset import load_raw_dataset
from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.data.views import VIEWS, infer_view
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.synthetic import FINDINGS, LABELS, generate_dataset, render_case, sample_case
from orthodiff_auto.synthetic.generator import MARKER, crop_geometry

NO_FINDINGS = {f: False for f in FINDINGS}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "raw"
    summary = generate_dataset(out, n_cases=3, n_unlabeled=2, n_test=2, size="tiny", seed=5, num_processes=1)
    return out, summary


def test_same_seed_same_case_different_seed_differs():
    a = render_case(sample_case(3, 1, size="tiny"))
    b = render_case(sample_case(3, 1, size="tiny"))
    c = render_case(sample_case(4, 1, size="tiny"))
    for view in VIEWS:
        assert np.array_equal(a.scans[view].image, b.scans[view].image)
        assert np.array_equal(a.scans[view].label, b.scans[view].label)
        assert a.scans[view].geometry == b.scans[view].geometry
    assert a.findings == b.findings
    assert not np.array_equal(a.scans["sag"].image, c.scans["sag"].image)
    assert a.scans["sag"].geometry != c.scans["sag"].geometry


def test_case_depends_only_on_seed_and_index():
    # Drawing other cases first (or in another order) must not change a case.
    sample_case(9, 0, size="tiny")
    first = sample_case(9, 2, size="tiny")
    sample_case(9, 5, size="tiny", subset="test")
    again = sample_case(9, 2, size="tiny")
    assert first.geometries == again.geometries and first.findings == again.findings
    assert first.anatomy.p["pat_c"] == again.anatomy.p["pat_c"]
    assert sample_case(9, 2, subset="test", size="tiny").geometries != first.geometries


def test_tiny_case_has_every_label_and_float_image():
    rc = render_case(sample_case(0, 0, size="tiny"), findings=NO_FINDINGS)
    values = set()
    for view, scan in rc.scans.items():
        assert scan.image.dtype == np.float32 and scan.label.dtype == np.uint8
        assert np.isfinite(scan.image).all() and scan.image.min() >= 0
        present = set(np.unique(scan.label).tolist())
        assert len(present) >= 9, (view, present)
        values |= present
    assert values == set(LABELS.values())


@pytest.mark.parametrize("size, inplane, thickness, matrix", [
    ("tiny", (3.4, 4.2), (8.0, 10.0), (36, 42)),
    ("demo", (1.8, 2.2), (5.0, 6.0), (72, 80)),
    ("standard", (0.85, 1.15), (3.5, 4.5), (144, 160)),
    ("clinical", (0.4, 0.6), (2.5, 4.0), (280, 330)),
])
def test_presets_and_view_geometry(size, inplane, thickness, matrix):
    for index in range(6):  # all sites turn up
        spec = sample_case(1, index, size=size)
        for view, g in spec.geometries.items():
            assert infer_view(g) == view
            nk, nj, ni = g.shape
            assert matrix[0] <= ni == nj <= matrix[1]
            assert inplane[0] <= g.spacing[1] == g.spacing[2] <= inplane[1]
            assert thickness[0] <= g.spacing[0] <= thickness[1]
            # slice normal within a few degrees of the view's physical axis (some obliquity)
            normal = g.direction_matrix[:, 2]
            axis = {"sag": 0, "cor": 1, "ax": 2}[view]
            assert abs(normal[axis]) > np.cos(np.deg2rad(20))
            if size == "clinical":
                assert 28 <= nk <= 40


def test_views_share_one_knee_in_physical_space():
    """The three views of a case see the same anatomy at the same physical place."""
    spec = sample_case(2, 0, size="tiny", sites=["siteA"])
    rc = render_case(spec, findings=NO_FINDINGS, noise=False)
    centroids = {}
    for view, scan in rc.scans.items():
        g = scan.geometry
        idx = np.argwhere(scan.label == LABELS["patella"]).astype(float)  # (k, j, i)
        ijk = idx[:, ::-1] * np.asarray(g.spacing[::-1])
        centroids[view] = np.asarray(g.origin) + ijk.mean(axis=0) @ g.direction_matrix.T
    truth = spec.anatomy.to_world(spec.anatomy.p["pat_c"])  # where the latent knee's patella is
    for view in VIEWS:
        assert np.linalg.norm(centroids[view] - truth) < 4.0, (view, centroids[view], truth)


def test_crop_geometry_reproduces_the_full_grid():
    spec = sample_case(0, 0, size="tiny")
    full = render_case(spec, views=["cor"], noise=False)
    g = spec.geometries["cor"]
    centre = np.asarray(g.origin) + g.direction_matrix @ (np.asarray(g.spacing[::-1]) * np.array([20, 20, 6]))
    crop = crop_geometry(g, centre, 12.0)
    part = render_case(spec, views=["cor"], noise=False, geometries={"cor": crop})
    k0 = int(round(np.linalg.solve(g.direction_matrix, np.subtract(crop.origin, g.origin))[2] / g.spacing[0]))
    j0 = int(round(np.linalg.solve(g.direction_matrix, np.subtract(crop.origin, g.origin))[1] / g.spacing[1]))
    i0 = int(round(np.linalg.solve(g.direction_matrix, np.subtract(crop.origin, g.origin))[0] / g.spacing[2]))
    nk, nj, ni = crop.shape
    assert np.array_equal(part.scans["cor"].label, full.scans["cor"].label[k0:k0 + nk, j0:j0 + nj, i0:i0 + ni])


def test_dataset_folder_loads_without_problems(tiny_dataset):
    from orthodiff_auto.data.validation import validate_dataset

    out, summary = tiny_dataset
    ds = load_raw_dataset(out)
    assert ds.problems == []
    assert ds.description.name == "SyntheticKnee"
    assert ds.description.findings == FINDINGS
    assert ds.description.labels == LABELS
    assert ds.case_ids("train") == ["knee0001", "knee0002", "knee0003"]
    assert ds.case_ids("test") == ["test0001", "test0002"]
    assert ds.case_ids("unlabeled") == ["unl0001", "unl0002"]
    assert all(s.label is not None for s in ds.select("train")) and all(s.label is not None for s in ds.select("test"))
    assert all(s.label is None for s in ds.select("unlabeled"))
    assert len(ds.select("train")) == 9  # training cases are complete
    assert list(ds.findings.columns) == list(FINDINGS) + ["site", "field_strength"]
    assert set(ds.findings["site"]) <= {"siteA", "siteB", "siteC"}
    assert ds.test_findings is not None and list(ds.test_findings.index) == ["test0001", "test0002"]
    for scan in ds.scans:
        image, g = read_image(scan.image, dtype=None)
        assert image.dtype == np.float32
        assert infer_view(g) == scan.view
        if scan.label is not None:
            label, lg = read_image(scan.label, dtype=None)
            assert label.dtype == np.uint8 and lg.same_grid(g)
    report = validate_dataset(out)
    assert report.ok, report.problems_text()
    assert (out / MARKER).is_file()


def test_marker_records_grades_and_kinds_that_dataset_json_describes(tiny_dataset):
    out, summary = tiny_dataset
    marker = json.loads((out / MARKER).read_text())["cases"]
    assert "grade" in json.loads((out / "dataset.json").read_text())["description"]
    seen = 0
    for row in summary["rows"]:
        details = marker[row["case_id"]].get("finding_details", {})
        for name in ("acl_tear", "pcl_tear", "mcl_tear", "lcl_tear"):
            assert (name in details) == row["findings"][name]
            if name in details:
                seen += 1
                assert details[name]["grade"] in ("partial", "complete")
        for name in ("medial_meniscus_tear", "lateral_meniscus_tear"):
            if row["findings"][name]:
                assert details[name]["kind"] in ("horizontal", "vertical", "radial")
    assert seen > 0


def test_parallel_generation_gives_the_same_files(tiny_dataset, tmp_path):
    out, _ = tiny_dataset
    other = tmp_path / "np2"
    generate_dataset(other, n_cases=3, n_unlabeled=2, n_test=2, size="tiny", seed=5, num_processes=2)
    assert (out / "findings.csv").read_text() == (other / "findings.csv").read_text()
    assert (out / "findingsTs.csv").read_text() == (other / "findingsTs.csv").read_text()
    for folder in ("imagesTr", "labelsTr", "unlabeled"):
        names = sorted(p.name for p in (out / folder).iterdir())
        assert names == sorted(p.name for p in (other / folder).iterdir())
        for name in names[:4]:
            a, ga = read_image(out / folder / name, dtype=None)
            b, gb = read_image(other / folder / name, dtype=None)
            assert np.array_equal(a, b) and ga == gb


def test_refuses_foreign_non_empty_folder_but_replaces_a_previous_synthetic_one(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="not empty"):
        generate_dataset(foreign, n_cases=1, size="tiny")
    assert (foreign / "notes.txt").read_text() == "mine"

    out = tmp_path / "syn"
    generate_dataset(out, n_cases=2, n_test=1, size="tiny", seed=1)
    generate_dataset(out, n_cases=1, size="tiny", seed=2)  # fewer cases: no stale files may remain
    ds = load_raw_dataset(out)
    assert ds.case_ids("train") == ["knee0001"] and ds.case_ids("test") == []
    assert not (out / "findingsTs.csv").exists()


def test_unlabeled_only_dataset_for_another_datasets_unlabeled_folder(tmp_path):
    out = tmp_path / "unl"
    summary = generate_dataset(out, n_cases=0, n_unlabeled=1, size="tiny", seed=1001, complete=True)
    assert summary["n_unlabeled"] == 1
    assert sorted(p.name for p in (out / "unlabeled").iterdir()) == [f"unl0001_{v}.nii.gz" for v in ("ax", "cor", "sag")]
    assert not (out / "imagesTr").exists() and not (out / "findings.csv").exists()


def test_missing_views_only_where_allowed():
    def missing(subset, complete=None, n=60):
        counts = []
        for i in range(n):
            spec = sample_case(0, i, subset=subset, size="tiny", complete=complete)
            assert len(spec.views) >= 2  # never more than one view missing
            counts.append(3 - len(spec.views))
        return sum(counts)

    assert missing("train") == 0
    assert missing("unlabeled", complete=True) == 0
    n_missing = missing("unlabeled")
    assert 1 <= n_missing <= 15  # about 10%
    assert missing("test") >= 1


def test_prevalence_is_respected():
    flags = [sample_case(0, i, size="tiny", prevalence={"acl_tear": 1.0, "effusion": 0.0}).findings for i in range(30)]
    assert all(f["acl_tear"] for f in flags) and not any(f["effusion"] for f in flags)
    default = [sample_case(0, i, size="tiny").findings["medial_meniscus_tear"] for i in range(200)]
    assert 0.25 < np.mean(default) < 0.45


@pytest.mark.parametrize("kwargs, message", [
    (dict(size="huge"), "unknown size"),
    (dict(n_cases=-1), "non-negative"),
    (dict(n_cases=0), "at least 1"),
    (dict(n_cases=0, n_unlabeled=1, n_test=1), "at least 1"),  # unlabeled-only means no test cases either
    (dict(n_test=-2), "non-negative"),
    (dict(sites=["siteZ"]), "unknown site"),
    (dict(prevalence={"broken_leg": 0.2}), "unknown finding"),
    (dict(prevalence={"acl_tear": 1.5}), r"\[0, 1\]"),
    (dict(num_processes=0), "-np"),
])
def test_generate_dataset_rejects_bad_arguments(tmp_path, kwargs, message):
    args = dict(n_cases=1, size="tiny") | kwargs
    with pytest.raises(UserInputError, match=message):
        generate_dataset(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_noise_pays_for_resolution():
    """Thermal SNR scales with voxel volume from each site's reference voxel, under a ceiling; a scan's noise
    sigma follows its own voxel (same case, site and draws at two presets)."""
    from orthodiff_auto.synthetic.generator import crop_geometry
    from orthodiff_auto.synthetic.spec import REFERENCE_VOXEL_MM, SITES, SNR_CEILING, noise_snr

    site = SITES["siteB"]
    reference = noise_snr(site, REFERENCE_VOXEL_MM)
    assert reference == pytest.approx(site.snr, rel=0.02)  # far below the ceiling there
    assert noise_snr(site, (6.0, 0.5, 0.5)) == pytest.approx(2 * reference, rel=0.05)
    assert noise_snr(site, (9.0, 4.0, 4.0)) < SNR_CEILING
    sigmas = {}
    for size in ("standard", "clinical"):
        spec = sample_case(0, 0, size=size, sites=["siteB"])
        g = spec.geometries["sag"]
        crop = {"sag": crop_geometry(g, np.asarray(g.origin), 2.0)}
        sigmas[size] = render_case(spec, views=["sag"], noise=False, geometries=crop).scans["sag"].noise_sigma
        sigmas[size] *= noise_snr(site, g.spacing)  # divides out exactly what depends on the voxel
    assert sigmas["standard"] == pytest.approx(sigmas["clinical"], rel=1e-5)
    ratio = noise_snr(site, sample_case(0, 0, size="standard", sites=["siteB"]).geometries["sag"].spacing) / \
        noise_snr(site, sample_case(0, 0, size="clinical", sites=["siteB"]).geometries["sag"].spacing)
    assert ratio > 2.5  # coarser voxels: less noise
