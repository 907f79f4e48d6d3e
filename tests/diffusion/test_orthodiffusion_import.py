"""`install_pretrained CHECKPOINT.pt DEST --from orthodiffusion --view VIEW`: the authors' checkpoint layout in,
our pretrained bundle out (weights, architecture, provenance, adaptation plan); what is not theirs is refused."""

from __future__ import annotations

import argparse
import hashlib

import torch

from orthodiff_auto.cli import main
from orthodiff_auto.networks.orthodiffusion.unet import OrthoDiffusionHyperParameters
from orthodiff_auto.networks.spec import ArchitectureSpec
from orthodiff_auto.training.pretrained import read_pretrained_bundle
from tests.diffusion.orthodiffusion_checkpoint import REDUCED, authors_schedule_buffers, write_authors_checkpoint


def _install(ckpt, dest, *extra) -> int:
    return main(["install_pretrained", str(ckpt), str(dest), "--from", "orthodiffusion", *extra])


def test_imports_the_ema_weights_with_architecture_provenance_and_adaptation_plan(tmp_path, capsys):
    ckpt = tmp_path / "sagittal_model.pt"
    written = write_authors_checkpoint(ckpt)
    assert _install(ckpt, tmp_path / "od", "--view", "sag") == 0
    encoder = tmp_path / "od" / "sag" / "encoder_sag.pt"
    assert str(encoder) in capsys.readouterr().out
    saved = torch.load(encoder, weights_only=True)
    ema = {k[len("denoise_fn."):]: v for k, v in written["ema"].items() if k.startswith("denoise_fn.")}
    both = {**saved["state_dict"], **saved["decoder_state_dict"]}
    assert set(both) == set(ema) and all(torch.equal(both[k], ema[k]) for k in ema)
    assert all(k.startswith(("time_embed.", "input_blocks.", "middle_block.")) for k in saved["state_dict"])
    assert OrthoDiffusionHyperParameters.from_spec(ArchitectureSpec.from_dict(saved["architecture"])) == REDUCED
    assert saved["iterations"] == 21499 and saved["reading"]["timestep"] == 100 and saved["reading"]["block"] == "mid_2"
    prov = saved["provenance"]
    assert prov["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest() and prov["weights"] == "ema"
    assert prov["step"] == 21499 and prov["licence"].startswith("MIT")
    plan = read_pretrained_bundle(tmp_path / "od")["sag"]
    assert plan.input_grid == (16, 256, 256) and plan.normalization.scheme == "range"
    assert plan.architecture.network_class == "OrthoDiffusionUNet"


def test_raw_weights_and_a_ddp_prefix(tmp_path):
    ckpt = tmp_path / "coronal_model.pt"
    written = write_authors_checkpoint(ckpt, prefix="denoise_fn.module.")
    assert _install(ckpt, tmp_path / "od", "--view", "cor", "--weights", "model") == 0
    saved = torch.load(tmp_path / "od" / "cor" / "encoder_cor.pt", weights_only=True)
    key = "input_blocks.0.0.weight"
    assert torch.equal(saved["state_dict"][key], written["model"]["denoise_fn.module." + key])
    assert not torch.equal(saved["state_dict"][key], written["ema"]["denoise_fn.module." + key])


def test_a_pickled_object_inside_is_refused_naming_the_file(tmp_path, capsys):
    ckpt = tmp_path / "tampered.pt"
    write_authors_checkpoint(ckpt, extra_object=argparse.Namespace(payload="anything"))
    assert _install(ckpt, tmp_path / "od", "--view", "sag") == 2
    err = capsys.readouterr().err
    assert f"{ckpt}: refused" in err and "pickled object" in err
    assert not (tmp_path / "od").exists()


def test_another_schedule_or_layout_is_refused(tmp_path, capsys):
    linear = tmp_path / "linear.pt"
    payload = write_authors_checkpoint(linear)
    betas = torch.linspace(1e-4, 0.02, 1000)
    ab = torch.cumprod(1 - betas, 0)
    for part in ("model", "ema"):
        payload[part].update(betas=betas, alphas_cumprod=ab, sqrt_alphas_cumprod=ab.sqrt(),
                             sqrt_one_minus_alphas_cumprod=(1 - ab).sqrt())
    torch.save(payload, linear)
    assert _install(linear, tmp_path / "a", "--view", "ax") == 2
    assert "betas differs from the cosine schedule (T=1000)" in capsys.readouterr().err
    short = tmp_path / "short.pt"
    payload = write_authors_checkpoint(short)
    payload["ema"].update(authors_schedule_buffers(500))
    torch.save(payload, short)
    assert _install(short, tmp_path / "b", "--view", "ax") == 2
    assert "T=1000" in capsys.readouterr().err
    ours = tmp_path / "not_theirs.pt"
    torch.save({"format": "something", "state_dict": {}}, ours)
    assert _install(ours, tmp_path / "c", "--view", "ax") == 2
    assert "not an OrthoDiffusion checkpoint" in capsys.readouterr().err
    assert _install(linear, tmp_path / "d") == 2
    assert "needs --view" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abcd")
