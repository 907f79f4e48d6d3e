import numpy as np
import pytest

from orthodiff_auto.data.dataset import load_raw_dataset
from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.fingerprint import DatasetFingerprint, extract_fingerprint
from tests.preprocessing.synth import write_dataset

ODD_SAG = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)  # slices along array axis 2, S-I running inferior


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    scans = [
        {"case": "a1", "view": "sag", "shape": (10, 40, 36), "spacing": (3.0, 0.5, 0.5), "border": 2},
        {"case": "a2", "view": "sag", "shape": (36, 40, 12), "spacing": (0.45, 0.5, 3.5), "direction": ODD_SAG},
        {"case": "a3", "view": "sag", "shape": (12, 44, 40), "spacing": (4.0, 0.4, 0.4)},
        {"case": "a1", "view": "ax", "shape": (20, 24, 24), "spacing": (1.0, 1.0, 1.0)},
        {"case": "a2", "view": "ax", "shape": (22, 24, 24), "spacing": (1.2, 1.0, 1.0), "labelled": False},
        {"case": "u1", "view": "sag", "shape": (10, 40, 36), "spacing": (5.0, 0.5, 0.5), "subset": "unlabeled"},
        {"case": "t1", "view": "sag", "shape": (10, 40, 36), "spacing": (9.0, 0.5, 0.5), "subset": "test"},
    ]
    return write_dataset(tmp_path_factory.mktemp("fp") / "raw", scans, findings=("tear", "effusion"))


@pytest.fixture(scope="module")
def fingerprint(raw):
    return extract_fingerprint(load_raw_dataset(raw), num_workers=1, progress=False)


def test_per_case_values(raw, fingerprint):
    sag = fingerprint.views["sag"]
    cases = {(c.subset, c.case_id): c for c in sag.cases}
    assert set(cases) == {("train", "a1"), ("train", "a2"), ("train", "a3"), ("unlabeled", "u1")}  # never test
    a1, a2 = cases[("train", "a1")], cases[("train", "a2")]
    assert a1.spacing == pytest.approx((3.0, 0.5, 0.5))
    assert a1.shape_before_crop == (10, 40, 36) and a1.shape_after_crop == (6, 36, 32)  # 2-voxel zero border
    assert a1.relative_size_after_crop == pytest.approx(6 * 36 * 32 / (10 * 40 * 36))
    # Stored with slices along axis 2: canonical order puts them first.
    assert a2.original_spacing == pytest.approx((0.45, 0.5, 3.5))
    assert a2.spacing == pytest.approx((3.5, 0.5, 0.45)) and a2.shape_before_crop == (12, 40, 36)
    assert a2.transpose == (2, 1, 0) and a2.flip == (False, True, False)
    assert a1.orientation_code != a2.orientation_code
    for key in (("train", "a1"), ("train", "a2")):
        c = cases[key]
        image, _ = read_image(raw / "imagesTr" / f"{c.case_id}_sag.nii.gz")
        label, g = read_image(raw / "labelsTr" / f"{c.case_id}_sag.nii.gz", dtype=None)
        fg = image[label > 0]
        assert c.foreground_intensity.mean == pytest.approx(fg.mean(), rel=1e-5)
        assert c.foreground_intensity.p995 == pytest.approx(np.percentile(fg, 99.5), rel=1e-5)
        assert c.foreground_intensity.num_voxels == fg.size
        vox = float(np.prod(g.spacing))
        for name, value in (("background", 0), ("ball", 1), ("slab", 2)):
            assert c.label_voxels[name] == int((label == value).sum())
            assert c.label_volumes_mm3[name] == pytest.approx((label == value).sum() * vox)
    assert cases[("unlabeled", "u1")].foreground_intensity is None and not cases[("unlabeled", "u1")].labelled


def test_view_reduction(fingerprint):
    sag, ax = fingerprint.views["sag"], fingerprint.views["ax"]
    assert (sag.num_train, sag.num_labelled, sag.num_unlabeled) == (3, 3, 1)
    assert (ax.num_train, ax.num_labelled) == (2, 1)
    # Planning statistics come from the training scans only (not unlabeled u1, never test t1).
    assert sorted(s[0] for s in sag.spacings) == pytest.approx([3.0, 3.5, 4.0])
    assert sag.median_spacing == pytest.approx((3.5, 0.5, 0.45))
    assert sag.foreground_intensity_source == "labels"
    per_case_means = [c.foreground_intensity.mean for c in sag.cases if c.subset == "train"]
    # Each case contributes the same number of samples: the pooled mean is the mean of the case means.
    assert sag.foreground_intensity.mean == pytest.approx(np.mean(per_case_means), rel=0.02)
    assert sag.foreground_intensity.p005 < sag.foreground_intensity.mean < sag.foreground_intensity.p995
    assert sag.label_volumes_mm3["ball"]["num_cases_present"] == 3
    assert sum(sag.orientations.values()) == 4
    # Findings prevalence per site (write_dataset: case i has tear=i%2, effusion=(i+1)%2, site i%2).
    prev = sag.findings_prevalence
    assert prev["all"]["num_cases"] == 3 and prev["all"]["tear"] == pytest.approx(1 / 3)
    assert prev["site:site0"] == {"num_cases": 2, "tear": 0.0, "effusion": 1.0}
    assert prev["site:site1"] == {"num_cases": 1, "tear": 1.0, "effusion": 0.0}


def test_deterministic_parallel_and_round_trip(raw, fingerprint, tmp_path):
    parallel = extract_fingerprint(load_raw_dataset(raw), num_workers=2, progress=False)
    assert parallel.to_dict() == fingerprint.to_dict()
    path = tmp_path / "fingerprint.json"
    fingerprint.save(path)
    assert DatasetFingerprint.load(path).to_dict() == fingerprint.to_dict()
    assert str(raw) not in path.read_text()  # a pure function of the dataset, not of where it lies
    path.write_text(path.read_text().replace('"schema_version": 1', '"schema_version": 99'))
    with pytest.raises(UserInputError, match="schema_version"):
        DatasetFingerprint.load(path)
