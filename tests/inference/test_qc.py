"""``predict_folder --qc``: one PNG per case, of a fixed size, with the segmentation's contours drawn."""

import numpy as np
import pytest
from PIL import Image

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import write_image
from orthodiff_auto.inference.qc import QC_DPI, QC_FIGSIZE, contour_colours

pytestmark = pytest.mark.slow  # trains folds or runs auto (pytest -m 'not slow' skips it)


def test_qc_png_per_case_with_contours_and_the_fixed_size(trained_model, tmp_path):
    from tests.inference.conftest import LABELS, gapped_scan

    inp, out = tmp_path / "in", tmp_path / "out"
    for case, views in (("both", ("sag", "cor")), ("one", ("cor",))):
        for view in views:
            image, _, g = gapped_scan(view, seed=len(case) * 7 + len(view))
            write_image(inp / f"{case}_{view}.nii.gz", image, g)
    assert main(["predict_folder", str(inp), str(out), "--model", str(trained_model), "--qc"]) == 0
    assert sorted(p.name for p in (out / "qc").iterdir()) == ["both.png", "one.png"]
    for name in ("both.png", "one.png"):
        with Image.open(out / "qc" / name) as png:
            assert png.size == (int(QC_FIGSIZE[0] * QC_DPI), int(QC_FIGSIZE[1] * QC_DPI))
            pixels = np.asarray(png.convert("RGB"), dtype=float) / 255
        # each structure's contour is drawn in its colour
        for structure, colour in contour_colours([n for n, v in LABELS.items() if v]).items():
            near = np.abs(pixels - np.array(colour[:3])).max(axis=-1) < 0.05
            assert np.count_nonzero(near) > 20, (name, structure)


def test_without_qc_no_qc_folder(trained_model, tmp_path):
    from tests.inference.conftest import gapped_scan

    inp, out = tmp_path / "in", tmp_path / "out"
    image, _, g = gapped_scan("sag", seed=3)
    write_image(inp / "c_sag.nii.gz", image, g)
    assert main(["predict_folder", str(inp), str(out), "--model", str(trained_model)]) == 0
    assert not (out / "qc").exists()
