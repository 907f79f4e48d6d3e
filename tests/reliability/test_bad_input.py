"""Bad input: every validation error class (tests/data/test_validation.py's CORRUPTIONS, reused), broken NIfTI
files, CSVs that cannot be read, path-like case ids, symbolic links, unreadable files and a full disk. Each gives
exit code 2 naming the file (predict_folder: a failure of that case, the others predicted), and nothing outside
the output folder is written (snapshots of the whole test folder, the working directory included)."""

import builtins
import errno
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.validation import validate_dataset
from tests.data.test_validation import CORRUPTIONS
from tests.reliability.artifacts import check_complete
from tests.reliability.corpus import NEW_CORRUPTIONS, broken_nifti
from tests.reliability.harness import cli_env

ROOT = os.geteuid() == 0


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every entry under ``root`` (symbolic links not followed) with its type, size, mtime and mode."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == skip.parent and skip.name in dirnames:
            dirnames.remove(skip.name)
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """tmp_path as the working directory too, so a write there shows in its snapshot."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def plan_and_preprocess(raw: Path, out: Path) -> int:
    return main(["plan_and_preprocess", str(raw), "--out", str(out), "--budget", "cpu", "-np", "1",
                 "--no-progress"])


@pytest.mark.parametrize("corrupt", CORRUPTIONS + NEW_CORRUPTIONS, ids=lambda f: f.__name__)
def test_plan_and_preprocess_refuses_with_the_file_named_and_writes_nothing(make_native_dataset, workspace,
                                                                           corrupt, capsys):
    raw = make_native_dataset(workspace / "raw", file_ending=".mha" if "voxels" in corrupt.__name__ else ".nii.gz")
    relpath, message = corrupt(raw)
    before = snapshot(workspace)
    assert plan_and_preprocess(raw, workspace / "out") == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if relpath in ln]
    assert lines, f"{relpath} not named in: {err}"
    assert any(re.search(message, ln) for ln in lines), err
    assert "Traceback" not in err
    assert snapshot(workspace) == before  # the output folder was not even made


def test_odd_but_valid_text_files_are_read_as_plain_ones(make_native_dataset, tmp_path):
    # a byte-order mark (Windows editors), quoted fields and CRLF line ends are valid: same dataset as plain files
    plain = validate_dataset(make_native_dataset(tmp_path / "plain"))
    odd_root = make_native_dataset(tmp_path / "odd")
    description = (odd_root / "dataset.json").read_text()
    (odd_root / "dataset.json").write_bytes(b"\xef\xbb\xbf" + description.encode())
    lines = (odd_root / "findings.csv").read_text().splitlines()
    quoted = ['"' + '","'.join(line.split(",")) + '"' for line in lines]
    (odd_root / "findings.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(quoted).encode() + b"\r\n")
    odd = validate_dataset(odd_root)
    assert plain.ok and odd.ok, odd.problems_text()
    assert odd.dataset.description == plain.dataset.description
    assert odd.dataset.findings.equals(plain.dataset.findings)


def test_symlinks_to_files_outside_the_dataset_are_read_never_written(make_native_dataset, workspace):
    # a dataset of links to an archive is a common way to avoid copies: the links are followed for reading, and
    # nothing is written through them
    raw = make_native_dataset(workspace / "raw")
    archive = workspace / "archive"
    archive.mkdir()
    for name in ("c001_sag.nii.gz", "c002_cor.nii.gz"):
        shutil.move(raw / "imagesTr" / name, archive / name)
        (raw / "imagesTr" / name).symlink_to(archive / name)
    before = snapshot(workspace)
    assert plan_and_preprocess(raw, workspace / "out") == 0
    after = snapshot(workspace, skip=workspace / "out")
    assert after == before


def test_unreadable_image_file(make_native_dataset, workspace, capsys):
    if ROOT:
        pytest.skip("running as root: chmod 000 does not stop root from reading; the dataset.json and "
                    "findings.csv cases below simulate the refusal instead")
    raw = make_native_dataset(workspace / "raw")
    (raw / "imagesTr/c001_sag.nii.gz").chmod(0)
    before = snapshot(workspace)
    assert plan_and_preprocess(raw, workspace / "out") == 2
    assert "c001_sag.nii.gz" in capsys.readouterr().err
    assert snapshot(workspace) == before


@pytest.mark.parametrize("name", ["dataset.json", "findings.csv"])
def test_unreadable_text_file(make_native_dataset, workspace, monkeypatch, capsys, name):
    raw = make_native_dataset(workspace / "raw")
    target = str(raw / name)
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):  # what a chmod 000 file gives a user who is not root
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == target:
            raise PermissionError(errno.EACCES, "Permission denied", target)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    monkeypatch.setattr(io, "open", refusing_open)
    before = snapshot(workspace)
    assert plan_and_preprocess(raw, workspace / "out") == 2
    err = capsys.readouterr().err
    assert f"{name}: cannot read (Permission denied)" in err and "Traceback" not in err
    assert snapshot(workspace) == before


class FullDisk:
    """Replaces ``os.replace`` in the atomic writers: after ``allowed`` files, the next write fails as on a full
    disk (its temporary cut to half its size, then ENOSPC)."""

    def __init__(self, allowed: int):
        self.allowed = allowed
        self.real = os.replace

    def replace(self, src, dst):
        if self.allowed <= 0:
            Path(src).write_bytes(Path(src).read_bytes()[: Path(src).stat().st_size // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        self.allowed -= 1
        self.real(src, dst)

    def install(self, monkeypatch) -> None:
        # both writers (utils.atomic, preprocessing.storage) publish with os.replace
        monkeypatch.setattr(os, "replace", self.replace)


@pytest.mark.parametrize("allowed", [0, 4, 9])  # dataset.json; fingerprint.json ...; a preprocessed case
def test_full_disk_during_plan_and_preprocess(make_native_dataset, workspace, monkeypatch, capsys, allowed):
    raw = make_native_dataset(workspace / "raw")
    before = snapshot(workspace)
    FullDisk(allowed).install(monkeypatch)
    assert plan_and_preprocess(raw, workspace / "out") == 2
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert re.search(r"error: \S*out/\S+: (write failed \()?No space left on device", err), err
    assert not check_complete(workspace / "out")
    assert not [p for p in (workspace / "out").rglob(".*") if ".tmp" in p.name]
    assert snapshot(workspace, skip=workspace / "out") == before


@pytest.mark.slow
def test_predict_folder_fails_each_broken_case_alone(suite, workspace, capsys):
    inputs = workspace / "in"
    inputs.mkdir()
    good = sorted((suite.inputs.raw / "imagesTs").glob("*.nii.gz"))[0]
    shutil.copy(good, inputs / good.name)
    view = good.name[: -len(".nii.gz")].rsplit("_", 1)[1]
    expected = broken_nifti(inputs, good, view)
    # an output from an earlier run that is a link to a file outside: --overwrite replaces the link, and the
    # file it pointed to is not touched
    outside = workspace / "outside.nii.gz"
    shutil.copy(good, outside)
    out = workspace / "out"
    out.mkdir()
    (out / good.name).symlink_to(outside)
    before = snapshot(workspace, skip=out)
    rc = main(["predict_folder", str(inputs), str(out), "--model", str(suite.inputs.work / "model"), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 1
    for name, message in expected.items():
        lines = [ln for ln in err.splitlines() if name in ln]
        assert lines and any(re.search(message, ln) for ln in lines), f"{name}: {err}"
    assert (out / good.name).is_file() and not (out / good.name).is_symlink()
    assert not any((out / name).exists() for name in expected)
    assert not check_complete(out)
    assert snapshot(workspace, skip=out) == before


@pytest.mark.slow
def test_full_disk_during_predict_folder(suite, workspace, monkeypatch, capsys):
    out = workspace / "out"
    before = snapshot(workspace)
    FullDisk(2).install(monkeypatch)  # prediction_provenance.json, thresholds.json, then the first segmentation fails
    rc = main(["predict_folder", str(suite.inputs.raw / "imagesTs"), str(out), "--model",
               str(suite.inputs.work / "model")])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 1
    assert any("No space left on device" in ln and re.search(r"/out/\S+\.nii\.gz", ln) for ln in err.splitlines()), err
    assert not check_complete(out)
    assert snapshot(workspace, skip=out) == before


def test_full_disk_for_every_writer(tmp_path):
    # a real write failure: a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes every write past 20 kB fail
    # as on a full disk. Each writer must raise an OSError naming its final file and leave nothing behind.
    # SimpleITK's NIfTI writer only printed "NWAD: wrote only ... bytes" and returned, so the cut file was renamed
    # to its final name; torch and blosc2 raised RuntimeErrors without the reason
    script = f"""
import resource, signal
from pathlib import Path
import numpy as np, torch
from orthodiff_auto.data.image_io import ImageGeometry, write_image
from orthodiff_auto.preprocessing.storage import write_case
from orthodiff_auto.training.checkpoint import save_checkpoint
from orthodiff_auto.utils.atomic import write_text_atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
out = Path({str(tmp_path)!r})
image = np.random.default_rng(0).normal(size=(20, 64, 64)).astype(np.float32)
writers = {{
    "seg.nii.gz": lambda: write_image(out / "seg.nii.gz", image, ImageGeometry((20, 64, 64), (1.0,) * 3, (0.0,) * 3,
                                                                               (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))),
    "checkpoint.pt": lambda: save_checkpoint(out / "checkpoint.pt", {{"w": torch.from_numpy(image)}}),
    "case.b2nd": lambda: write_case(out, "case", image[None], None, None),
    "log.txt": lambda: write_text_atomic(out / "log.txt", "x" * 30000),
}}
for name, write in writers.items():
    try:
        write()
        print(name, "written")
    except OSError as e:
        print(name, "refused:", e.filename, e.strerror)
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=cli_env(), timeout=120)
    lines = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    assert lines.keys() == {"seg.nii.gz", "checkpoint.pt", "case.b2nd", "log.txt"}, p.stdout + p.stderr
    reasons = {"seg.nii.gz": "written incompletely, the disk may be full", "checkpoint.pt": "File too large",
               "case.b2nd": "write failed, the disk may be full", "log.txt": "File too large"}  # blosc2 says no more
    for name, line in lines.items():
        assert line.startswith(f"refused: {tmp_path / name} {reasons[name]}"), line
    assert list(tmp_path.iterdir()) == []
