"""A gzip-compressed file named ``.nii`` (issue 27, item 9): one clear problem naming the file and the fix, not
SimpleITK's "Unable to determine ImageIO reader" nor a second, misleading problem about its label."""

import shutil

import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_geometry, read_image
from orthodiff_auto.errors import UserInputError

CASES = ("c001", "c002", "c003", "c004", "c005")


def test_reading_a_gzipped_nii_names_the_file_and_the_fix(make_native_dataset):
    raw = make_native_dataset(views=("sag",), cases=CASES)
    misnamed = raw / "imagesTr" / "c001_sag.nii"
    shutil.move(raw / "imagesTr" / "c001_sag.nii.gz", misnamed)
    for read in (read_image, read_geometry):
        with pytest.raises(UserInputError) as e:
            read(misnamed)
        assert str(e.value) == (f"{misnamed}: the file is gzip-compressed but its name does not end in .gz; rename it "
                                "to c001_sag.nii.gz")


def test_validation_reports_the_misnamed_image_once(make_native_dataset, capsys):
    raw = make_native_dataset(views=("sag",), cases=CASES)
    shutil.move(raw / "imagesTr" / "c001_sag.nii.gz", raw / "imagesTr" / "c001_sag.nii")
    assert main(["validate_dataset", str(raw)]) == 2
    err = capsys.readouterr().err
    assert "(1 problem):" in err
    assert "c001_sag.nii: the file is gzip-compressed" in err
    assert "label without an image" not in err and "rows for cases without images" not in err


def test_a_gzipped_image_in_a_nii_dataset_is_one_problem(make_native_dataset, capsys):
    raw = make_native_dataset(views=("sag",), cases=CASES, file_ending=".nii")
    image = raw / "imagesTr" / "c002_sag.nii"
    shutil.copy(raw / "imagesTr" / "c001_sag.nii", image)
    import gzip
    image.write_bytes(gzip.compress(image.read_bytes()))
    assert main(["validate_dataset", str(raw)]) == 2
    err = capsys.readouterr().err
    assert "(1 problem):" in err and f"{image}: the file is gzip-compressed" in err
    assert "ImageIO" not in err


def test_several_problems_are_counted_in_the_plural(make_native_dataset, capsys):
    raw = make_native_dataset(views=("sag",), cases=CASES)
    (raw / "imagesTr" / "c001_sag.nii.gz").write_bytes(b"not an image")
    (raw / "imagesTr" / "c002_sag.nii.gz").write_bytes(b"not an image")
    assert main(["validate_dataset", str(raw)]) == 2
    assert "(2 problems):" in capsys.readouterr().err
