"""Encoder export -> loading into downstream networks: exact tensors, clear refusals, parameter groups."""

import pytest
import torch

from orthodiff_auto.diffusion.denoiser import Denoiser
from orthodiff_auto.diffusion.export import export_encoder
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks import build_encoder, build_segmentation_network
from orthodiff_auto.training.checkpoint import save_checkpoint
from orthodiff_auto.training.pretrained import (
    ENCODER_FORMAT,
    encoder_parameter_names,
    load_pretrained_encoder,
    pretrained_parameter_groups,
)

from tests.plans.tiny_plans import tiny_arch, tiny_view_plan


@pytest.fixture
def exported(tmp_path):
    spec = tiny_arch()
    torch.manual_seed(1)
    den = Denoiser(spec)
    path = tmp_path / "encoder_sag.pt"
    export_encoder(path, den.state_dict(), tiny_view_plan("sag", spec), iterations=7)
    return den, path, spec


def test_export_is_weights_only_and_describes_itself(exported):
    den, path, spec = exported
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == ENCODER_FORMAT and ckpt["view"] == "sag" and ckpt["iterations"] == 7
    assert ckpt["architecture"] == spec.to_dict() and ckpt["in_channels"] == 1
    assert list(ckpt["state_dict"]) == list(build_encoder(spec, 1).state_dict()) == ckpt["encoder_keys"]
    assert ckpt["stem_keys"] and all(k.startswith("stages.0.0.convs.0.") for k in ckpt["stem_keys"])
    assert ckpt["pretrained_under"]["target_spacing"] == [3.0, 0.5, 0.5]
    assert ckpt["pretrained_under"]["patch_size"] == [8, 16, 16]
    assert ckpt["pretrained_under"]["normalization"]["scheme"] == "zscore"
    assert ckpt["diffusion"]["timesteps"] == 1000 and ckpt["diffusion"]["schedule"] == "cosine"


@pytest.mark.parametrize("target", ["unet_encoder", "whole_unet", "encoder"])
def test_load_into_segmentation_network_is_exact(exported, target):
    den, path, spec = exported
    torch.manual_seed(99)
    unet = build_segmentation_network(spec, 1, 3, deep_supervision=True)
    module = {"unet_encoder": unet.encoder, "whole_unet": unet, "encoder": build_encoder(spec, 1)}[target]
    enc = module.encoder if target == "whole_unet" else module
    info = load_pretrained_encoder(module, path, spec)
    src = den.encoder.state_dict()
    dst = enc.state_dict()
    assert list(src) == list(dst)
    for k in src:
        assert torch.equal(src[k], dst[k]), k
    assert info.view == "sag" and info.iterations == 7 and len(info.sha256) == 64 and not info.skipped_keys
    assert info.to_dict()["num_loaded_tensors"] == len(src)
    assert info.differences_from(tiny_view_plan("sag", spec)) == []
    assert info.differences_from(tiny_view_plan("cor", spec, spacing=(4.0, 0.5, 0.5)))


@pytest.mark.parametrize("other, field", [
    (dict(features=(4, 8, 32)), "features_per_stage"),
    (dict(features=(4, 8, 16, 16), n_stages=4), "n_stages"),
    (dict(strides=((1, 1, 1), (2, 2, 2), (2, 2, 2))), "strides"),
    (dict(kernels=((3, 3, 3),) * 3), "kernel_sizes"),
])
def test_mismatched_architecture_is_refused_with_a_clear_message(exported, other, field):
    den, path, spec = exported
    wrong = tiny_arch(**other)
    unet = build_segmentation_network(wrong, 1, 3)
    before = {k: v.clone() for k, v in unet.encoder.state_dict().items()}
    with pytest.raises(UserInputError) as e:
        load_pretrained_encoder(unet.encoder, path, wrong)
    msg = str(e.value)
    assert str(path) in msg and field in msg and "does not match" in msg
    assert all(torch.equal(before[k], v) for k, v in unet.encoder.state_dict().items())  # nothing loaded


def test_input_channel_mismatch(exported):
    den, path, spec = exported
    unet = build_segmentation_network(spec, 2, 3)
    with pytest.raises(UserInputError, match="1 input channel.*has 2"):
        load_pretrained_encoder(unet.encoder, path, spec)
    stem_before = unet.encoder.state_dict()["stages.0.0.convs.0.conv.weight"].clone()
    info = load_pretrained_encoder(unet.encoder, path, spec, skip_stem=True)
    assert info.skipped_keys and all(k.startswith("stages.0.0.convs.0.") for k in info.skipped_keys)
    state = unet.encoder.state_dict()
    assert torch.equal(state["stages.0.0.convs.0.conv.weight"], stem_before)
    key = "stages.1.0.convs.0.conv.weight"
    assert torch.equal(state[key], den.encoder.state_dict()[key])


def test_wrong_files(tmp_path):
    spec = tiny_arch()
    enc = build_encoder(spec, 1)
    with pytest.raises(UserInputError, match="not found"):
        load_pretrained_encoder(enc, tmp_path / "nope.pt", spec)
    save_checkpoint(tmp_path / "train.pt", {"format": "orthodiff_auto.checkpoint/1", "model": {}})
    with pytest.raises(UserInputError, match="not a pretrained encoder checkpoint.*training checkpoint"):
        load_pretrained_encoder(enc, tmp_path / "train.pt", spec)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserInputError, match="junk.pt"):
        load_pretrained_encoder(enc, tmp_path / "junk.pt", spec)


def test_encoder_parameter_groups():
    unet = build_segmentation_network(tiny_arch(), 1, 3)
    names = encoder_parameter_names(unet)
    assert names and all(n.startswith("encoder.") for n in names)
    groups = pretrained_parameter_groups(unet)
    assert groups[0]["warmup"] and not groups[1].get("warmup")
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(unet.parameters()))
    assert len(groups[0]["params"]) == len(names)


def test_read_checkpoint_once_then_load_from_the_dict(exported):
    from orthodiff_auto.training.pretrained import read_encoder_checkpoint

    den, path, spec = exported
    ckpt = read_encoder_checkpoint(path)
    assert ckpt["source_path"] == str(path.resolve()) and len(ckpt["sha256"]) == 64
    unet = build_segmentation_network(spec, 1, 3)
    info = load_pretrained_encoder(unet.encoder, ckpt, spec)
    assert info.path == str(path.resolve()) and info.sha256 == ckpt["sha256"]
    assert torch.equal(unet.encoder.state_dict()["stages.2.0.convs.1.conv.weight"],
                       den.encoder.state_dict()["stages.2.0.convs.1.conv.weight"])
    with pytest.raises(UserInputError, match=f"{path.name}.*features_per_stage"):
        load_pretrained_encoder(build_encoder(tiny_arch(features=(8, 8, 16)), 1), ckpt, tiny_arch(features=(8, 8, 16)))


def test_export_with_plans_is_a_self_describing_bundle(tmp_path):
    """With the plans, the encoder file carries their excerpt; a folder of such files reads as a bundle by view,
    each with the plan another dataset adopts (architecture, normalisation, spacing)."""
    from orthodiff_auto.training.pretrained import read_pretrained_bundle

    from tests.plans.tiny_plans import tiny_plans

    plans = tiny_plans(views=("sag", "cor"))
    torch.manual_seed(0)
    for view in ("sag", "cor"):
        (tmp_path / "pretrain" / view).mkdir(parents=True)
        export_encoder(tmp_path / "pretrain" / view / f"encoder_{view}.pt", Denoiser(tiny_arch()).state_dict(),
                       plans.view(view), iterations=3, plans=plans)
    ckpt = torch.load(tmp_path / "pretrain" / "sag" / "encoder_sag.pt", weights_only=True)
    assert ckpt["plans"]["dataset_name"] == "Tiny" and ckpt["plans"]["view_plan"] == plans.view("sag").to_dict()
    bundle = read_pretrained_bundle(tmp_path / "pretrain")
    assert sorted(bundle) == ["cor", "sag"]
    sag = bundle["sag"]
    assert sag.architecture == plans.view("sag").segmentation.architecture and sag.in_channels == 1
    assert sag.target_spacing == plans.view("sag").target_spacing and sag.modality == "MRI"
    assert sag.normalization == plans.view("sag").normalization and len(sag.sha256) == 64
    assert read_pretrained_bundle(tmp_path / "pretrain" / "cor" / "encoder_cor.pt").keys() == {"cor"}


def test_bundle_refusals(tmp_path, exported):
    """No encoder in the folder, two of one view, an encoder without plans: each refused naming the file."""
    from orthodiff_auto.training.pretrained import read_pretrained_bundle

    with pytest.raises(UserInputError, match="not found"):
        read_pretrained_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no encoder_<view>.pt"):
        read_pretrained_bundle(tmp_path / "empty")
    _, path, _ = exported  # written without plans, as an older `pretrain` did
    with pytest.raises(UserInputError, match=f"{path.name}: the encoder checkpoint carries no plans"):
        read_pretrained_bundle(path)
    from tests.plans.tiny_plans import tiny_plans

    plans = tiny_plans()
    for name in ("a", "b"):
        (tmp_path / "two" / name).mkdir(parents=True)
        export_encoder(tmp_path / "two" / name / "encoder_sag.pt", Denoiser(tiny_arch()).state_dict(),
                       plans.view("sag"), iterations=1, plans=plans)
    with pytest.raises(UserInputError, match="two encoders of view 'sag'"):
        read_pretrained_bundle(tmp_path / "two")
