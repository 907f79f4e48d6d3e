"""export_model / install_model: the zip carries what predict_folder needs without training state, with a
manifest; the installed folder predicts exactly as the original; a changed, unlisted, escaping or
incompatible zip is refused (exit 2) and nothing is left behind."""

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from orthodiff_auto import __version__
from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_image, write_image

pytestmark = pytest.mark.slow  # trains folds or runs auto (pytest -m 'not slow' skips it)


@pytest.fixture(scope="module")
def exported(trained_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shared") / "model.zip"
    assert main(["export_model", str(trained_model), str(out), "--license", "CC-BY-4.0"]) == 0
    return out


def _members(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rewrite(archive: Path, out: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def _nothing_left(parent: Path, dest: Path) -> bool:
    return not dest.exists() and not [p for p in parent.iterdir() if p.name.startswith(f".{dest.name}.installing")]


def test_export_strips_training_state_and_lists_every_file(trained_model, exported):
    members = _members(exported)
    manifest = json.loads(members["manifest.json"])
    assert manifest["kind"] == "model" and manifest["package_version"] == __version__
    assert manifest["license"] == "CC-BY-4.0"
    assert manifest["plans"] == json.loads((trained_model / "plans.json").read_text())
    assert set(manifest["files"]) == set(members) - {"manifest.json"}
    assert {"model.json", "plans.json", "seg/sag/fold_0.pt", "cls/fused/fold_0.pt"} <= set(manifest["files"])
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256(members[name]).hexdigest() and entry["size"] == len(members[name])
    original = torch.load(trained_model / "seg/sag/fold_0.pt", weights_only=True)
    shared = torch.load(__import__("io").BytesIO(members["seg/sag/fold_0.pt"]), weights_only=True)
    assert "optimizer" in original and "optimizer" not in shared and "scaler" not in shared
    for key, tensor in original["model"].items():
        torch.testing.assert_close(shared["model"][key], tensor, rtol=0, atol=0)


def test_installed_model_predicts_as_the_original(trained_model, exported, tmp_path, capsys):
    from tests.inference.conftest import gapped_scan

    dest = tmp_path / "models" / "knee"
    assert main(["install_model", str(exported), str(dest)]) == 0
    assert "license CC-BY-4.0" in capsys.readouterr().out
    assert json.loads((dest / "manifest.json").read_text())["license"] == "CC-BY-4.0"
    inp = tmp_path / "in"
    for view, seed in (("sag", 11), ("cor", 12)):
        image, _, g = gapped_scan(view, seed)
        write_image(inp / f"p_{view}.nii.gz", image, g)
    for name, model in (("original", trained_model), ("installed", dest)):
        assert main(["predict_folder", str(inp), str(tmp_path / name), "--model", str(model), "--device", "cpu"]) == 0
    for view in ("sag", "cor"):
        a, _ = read_image(tmp_path / "original" / f"p_{view}.nii.gz", dtype=None)
        b, _ = read_image(tmp_path / "installed" / f"p_{view}.nii.gz", dtype=None)
        assert np.array_equal(a, b) and set(np.unique(a)) > {0}
    findings = [pd.read_csv(tmp_path / name / "findings.csv", dtype={"case_id": str}) for name in ("original",
                                                                                                   "installed")]
    pd.testing.assert_frame_equal(findings[0], findings[1])


def test_a_changed_file_is_refused_and_nothing_is_installed(exported, tmp_path, capsys):
    members = _members(exported)
    data = bytearray(members["seg/cor/fold_0.pt"])
    data[len(data) // 2] ^= 0xFF
    members["seg/cor/fold_0.pt"] = bytes(data)
    tampered = _rewrite(exported, tmp_path / "tampered.zip", members)
    dest = tmp_path / "dest"
    assert main(["install_model", str(tampered), str(dest)]) == 2
    err = capsys.readouterr().err
    assert "tampered.zip" in err and "seg/cor/fold_0.pt" in err and "sha256" in err and "nothing installed" in err
    assert len(err.strip().splitlines()) == 1
    assert _nothing_left(tmp_path, dest)


@pytest.mark.parametrize("change, message", [
    (lambda m, man: man.update(package_version="9.4.0"), "exported by orthodiff_auto 9.4.0, this is"),
    (lambda m, man: man.update(kind="pretrained"), "use `orthodiff install_pretrained`"),
    (lambda m, man: m.update({"notes.txt": b"not listed"}), "'notes.txt' is not listed in the manifest"),
    (lambda m, man: m.pop("plans.json"), "'plans.json' is listed in the manifest but missing"),
    (lambda m, man: (m.update({"../evil.txt": b"x"}),
                     man["files"].update({"../evil.txt": {"sha256": hashlib.sha256(b"x").hexdigest(), "size": 1}})),
     "points outside"),
    (lambda m, man: (m.update({"/tmp/evil.txt": b"x"}),
                     man["files"].update({"/tmp/evil.txt": {"sha256": hashlib.sha256(b"x").hexdigest(), "size": 1}})),
     "points outside"),
], ids=["version", "kind", "unlisted", "missing", "zip-slip", "absolute"])
def test_incompatible_or_unsafe_archives_are_refused(exported, tmp_path, capsys, change, message):
    members = _members(exported)
    manifest = json.loads(members["manifest.json"])
    change(members, manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "dest"
    assert main(["install_model", str(_rewrite(exported, tmp_path / "bad.zip", members)), str(dest)]) == 2
    assert message in capsys.readouterr().err
    assert _nothing_left(work, dest) and not (tmp_path / "evil.txt").exists() and sorted(work.iterdir()) == []


def test_existing_destination_and_non_zip_are_refused(exported, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    assert main(["install_model", str(exported), str(tmp_path / "full")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep"
    (tmp_path / "not.zip").write_bytes(b"PK but not really")
    assert main(["install_model", str(tmp_path / "not.zip"), str(tmp_path / "d")]) == 2
    assert "not.zip: refused, nothing installed" in capsys.readouterr().err
    assert _nothing_left(tmp_path, tmp_path / "d")
    (tmp_path / "empty").mkdir()  # an empty folder may be the destination
    assert main(["install_model", str(exported), str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "model.json").is_file()
