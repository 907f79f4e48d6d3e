"""export_pretrained / install_pretrained: a pretraining's encoders travel as <view>/encoder_<view>.pt with a
manifest, install as a bundle that reads as the original, and are refused as a model (and vice versa)."""

import json
import zipfile

import torch

from orthodiff_auto.cli import main
from orthodiff_auto.diffusion.denoiser import Denoiser
from orthodiff_auto.diffusion.export import export_encoder
from orthodiff_auto.training.pretrained import read_pretrained_bundle
from tests.plans.tiny_plans import tiny_arch, tiny_plans


def _pretrain_folder(root):
    plans = tiny_plans(views=("sag", "cor"))
    torch.manual_seed(0)
    for view in ("sag", "cor"):
        (root / view).mkdir(parents=True)
        export_encoder(root / view / f"encoder_{view}.pt", Denoiser(tiny_arch()).state_dict(), plans.view(view),
                       iterations=3, plans=plans)
        (root / view / "ddim_samples.png").write_bytes(b"not an encoder")  # pretraining's other files stay home
    return root


def test_encoders_round_trip_through_a_zip(tmp_path, capsys):
    source = _pretrain_folder(tmp_path / "pretrain")
    archive = tmp_path / "encoders.zip"
    assert main(["export_pretrained", str(source), str(archive), "--license", "CC0-1.0"]) == 0
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["cor/encoder_cor.pt", "manifest.json", "sag/encoder_sag.pt"]
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["kind"] == "pretrained" and manifest["license"] == "CC0-1.0"
    assert manifest["plans"]["sag"]["dataset_name"] == "Tiny" and set(manifest["plans"]) == {"sag", "cor"}

    dest = tmp_path / "installed"
    assert main(["install_pretrained", str(archive), str(dest)]) == 0
    original, installed = read_pretrained_bundle(source), read_pretrained_bundle(dest)
    assert sorted(installed) == ["cor", "sag"]
    for view in ("sag", "cor"):
        assert installed[view].sha256 == original[view].sha256  # encoders carry no training state to strip
        assert installed[view].architecture == original[view].architecture
    # a model zip is not an encoder bundle, and the other way round
    capsys.readouterr()
    assert main(["install_model", str(archive), str(tmp_path / "m")]) == 2
    assert "use `orthodiff install_pretrained`" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_export_refuses_a_folder_without_encoders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export_pretrained", str(tmp_path / "empty"), str(tmp_path / "e.zip")]) == 2
    assert "no encoder_<view>.pt" in capsys.readouterr().err and not (tmp_path / "e.zip").exists()
