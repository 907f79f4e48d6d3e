import numpy as np
import pytest

from orthodiff_auto.data.image_io import ImageGeometry, read_geometry, read_image, write_image
from orthodiff_auto.errors import UserInputError
from tests.conftest import view_geometry


def test_roundtrip_keeps_array_and_geometry(tmp_path):
    g = view_geometry("cor", shape=(5, 7, 9), spacing=(3.3, 0.4, 0.45), origin=(10.5, -3.0, 7.25))
    a = np.random.default_rng(0).normal(size=g.shape).astype(np.float32)
    write_image(tmp_path / "x.nii.gz", a, g)
    b, g2 = read_image(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(a, b)
    assert g2.shape == g.shape and g2.same_grid(g)
    assert read_geometry(tmp_path / "x.nii.gz").same_grid(g)
    assert ImageGeometry.from_dict(g2.to_dict()) == g2


def test_write_leaves_no_temporary_files(tmp_path):
    g = view_geometry("ax")
    write_image(tmp_path / "a.nii.gz", np.zeros(g.shape, np.float32), g)
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]


def test_shape_mismatch_refused(tmp_path):
    with pytest.raises(ValueError):
        write_image(tmp_path / "a.nii.gz", np.zeros((2, 2, 2), np.float32), view_geometry("ax"))
    assert not list(tmp_path.iterdir())


def test_unreadable_file_names_the_file(tmp_path):
    p = tmp_path / "broken.nii.gz"
    p.write_bytes(b"not an image")
    with pytest.raises(UserInputError, match="broken.nii.gz"):
        read_image(p)


def test_atomic_writes_get_default_permissions(tmp_path):
    import os

    from orthodiff_auto.utils.atomic import write_text_atomic

    write_text_atomic(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
