"""The Python API: documentation/python_api.md's example runs as written on a small trained model; paths,
SimpleITK images and arrays with their geometry give what predict_folder writes; bad input is one clear error;
``import orthodiff_auto`` stays cheap."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_image, write_image
from orthodiff_auto.errors import UserInputError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "documentation" / "python_api.md"


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    from tests.inference.conftest import gapped_scan

    folder = tmp_path_factory.mktemp("scans")
    for view, seed in (("sag", 31), ("cor", 32)):
        image, _, g = gapped_scan(view, seed, shape=(7, 26, 22), origin=(4.0, -3.0, 2.5))
        write_image(folder / f"test0001_{view}.nii.gz", image, g)
    return folder


@pytest.fixture(scope="module")
def predictor(trained_model):
    from orthodiff_auto import Predictor

    return Predictor(trained_model, device="cpu")


@pytest.mark.slow
def test_the_documented_example_runs_as_written(trained_model, scans, tmp_path, monkeypatch, capsys):
    code = re.search(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M).group(1)
    for name, value in (("MODEL_DIR", trained_model), ("SCANS", scans)):  # the demo's folders -> the test's
        code, n = re.subn(rf"^{name} = Path\(.*$", f"{name} = Path({str(value)!r})", code, flags=re.M)
        assert n == 1, name
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "image and array give the same segmentation: True" in out
    result = namespace["result"]
    for view in ("sag", "cor"):
        written = sitk.ReadImage(str(tmp_path / f"test0001_{view}_seg.nii.gz"))
        source = sitk.ReadImage(str(scans / f"test0001_{view}.nii.gz"))
        assert written.GetSize() == source.GetSize() and np.allclose(written.GetOrigin(), source.GetOrigin())
        assert np.allclose(written.GetDirection(), source.GetDirection())
        assert set(np.unique(sitk.GetArrayFromImage(written))) == {0, 1, 5}  # dataset.json's values
        probabilities = sitk.GetArrayFromImage(result.probabilities[view])
        assert probabilities.shape == (*sitk.GetArrayFromImage(source).shape, 3)
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-4)
        labels = np.array([0, 1, 5])[probabilities.argmax(-1)]
        assert np.array_equal(labels, sitk.GetArrayFromImage(result.segmentations[view]))
    assert result.probability_labels == ("background", "ball", "box")
    assert list(result.findings) == ["f1", "f2"] and result.classifier == "fused/scratch_gate"
    for finding in result.findings.values():
        assert 0 <= finding.probability <= 1 and finding.positive == (finding.probability >= finding.threshold)


@pytest.mark.slow
def test_same_as_predict_folder_from_path_image_and_array(predictor, trained_model, scans, tmp_path):
    assert main(["predict_folder", str(scans), str(tmp_path / "out"), "--model", str(trained_model),
                 "--device", "cpu"]) == 0
    cli = pd.read_csv(tmp_path / "out" / "findings.csv", dtype={"case_id": str}).set_index("case_id").loc["test0001"]
    api = predictor.predict({"sag": str(scans / "test0001_sag.nii.gz"), "cor": scans / "test0001_cor.nii.gz"})
    for view in ("sag", "cor"):
        written, _ = read_image(tmp_path / "out" / f"test0001_{view}.nii.gz", dtype=None)
        assert np.array_equal(sitk.GetArrayFromImage(api.segmentations[view]), written)
    for name, finding in api.findings.items():
        assert finding.probability == pytest.approx(cli[name], abs=1e-6) and finding.positive == bool(cli[f"{name}_call"])
    assert api.probabilities == {} and api.probability_labels == ()
    # one scan: from a SimpleITK image with its view from the header, or its array with the same geometry
    image = sitk.ReadImage(str(scans / "test0001_cor.nii.gz"))
    alone = predictor.predict(image)
    assert list(alone.segmentations) == ["cor"]
    array = sitk.GetArrayFromImage(image)
    from_array = predictor.predict(array, view="cor", spacing=image.GetSpacing(), origin=image.GetOrigin(),
                                   direction=image.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(from_array.segmentations["cor"]),
                          sitk.GetArrayFromImage(alone.segmentations["cor"]))
    assert from_array.segmentations["cor"].GetDirection() == pytest.approx(image.GetDirection())


@pytest.mark.slow
@pytest.mark.parametrize("call, message", [
    (lambda p, a: p.predict(a, view="sag"), "needs its spacing"),
    (lambda p, a: p.predict(a[0], view="sag", spacing=(1, 1, 3)), "expected a 3D array"),
    (lambda p, a: p.predict(a, view="sag", spacing=(1, 1, 0)), "positive and finite"),
    (lambda p, a: p.predict(a, view="sag", spacing=(1, 1, 3), direction=(2, 0, 0, 0, 1, 0, 0, 0, 1)), "rotation"),
    (lambda p, a: p.predict(a, view="ax", spacing=(1, 1, 3)), "view 'ax': this model reads sag, cor"),
    (lambda p, a: p.predict({"sag": a}), "a numpy array in a mapping has no geometry"),
    (lambda p, a: p.predict({"sag": "missing.nii.gz"}), "missing.nii.gz: not found"),
    (lambda p, a: p.predict([1, 2, 3]), "expected a file path, a SimpleITK.Image or a numpy array"),
])
def test_bad_input_is_one_clear_error(predictor, call, message):
    with pytest.raises(UserInputError, match=re.escape(message)):
        call(predictor, np.zeros((6, 24, 24), np.float32))


def test_import_stays_cheap_and_the_facade_is_the_predictor():
    code = ("import sys, orthodiff_auto\n"
            "heavy = [m for m in ('torch', 'SimpleITK', 'numpy', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert 'Predictor' in dir(orthodiff_auto) and 'Predictor' in orthodiff_auto.__all__\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    import orthodiff_auto
    from orthodiff_auto import Finding, Prediction, Predictor
    from orthodiff_auto.inference import predictor, results

    assert (Predictor, Prediction, Finding) == (predictor.Predictor, results.Prediction, results.Finding)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        orthodiff_auto.Nothing
