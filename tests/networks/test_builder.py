import subprocess
import sys

import pytest
import torch

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.networks import build_encoder, build_segmentation_network, get_network_class
from orthodiff_auto.plans.planner import CPU_PRESET, architecture_from_topology
from orthodiff_auto.plans.schema import ArchitectureSpec
from orthodiff_auto.plans.topology import get_topology


@pytest.fixture(scope="module")
def spec() -> ArchitectureSpec:
    # Anisotropic: 1x3x3 kernels and in-plane-only pooling in the first stages.
    return architecture_from_topology(get_topology((3.0, 0.5, 0.5), (8, 32, 32)), CPU_PRESET)


def test_segmentation_network_from_spec(spec):
    assert spec.kernel_sizes[0] == (1, 3, 3) and spec.strides[1] == (1, 2, 2)
    net = build_segmentation_network(spec, num_input_channels=1, num_classes=3, deep_supervision=True)
    x = torch.randn(2, 1, *(d * 1 for d in (8, 32, 32)))
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, list) and len(out) == spec.n_stages - 1
    assert out[0].shape == (2, 3, 8, 32, 32)
    # Deep-supervision outputs follow the strides (coarser each level).
    assert out[1].shape[2:] == tuple(s // st for s, st in zip((8, 32, 32), spec.strides[1]))
    net_plain = build_segmentation_network(spec, 1, 3, deep_supervision=False)
    with torch.no_grad():
        assert net_plain(x).shape == (2, 3, 8, 32, 32)
    # Kernels and features are what the spec says.
    first_conv = net.encoder.stages[0][0].convs[0].conv
    assert tuple(first_conv.kernel_size) == spec.kernel_sizes[0]
    assert first_conv.out_channels == spec.features_per_stage[0]
    assert isinstance(net.encoder.stages[0][0].convs[0].norm, torch.nn.InstanceNorm3d)


def test_encoder_matches_unet_encoder_one_to_one(spec):
    unet = build_segmentation_network(spec, 1, 3)
    enc = build_encoder(spec, 1)
    assert type(enc) is type(unet.encoder)
    unet_sd, enc_sd = unet.encoder.state_dict(), enc.state_dict()
    assert list(unet_sd) == list(enc_sd)
    assert all(unet_sd[k].shape == enc_sd[k].shape for k in unet_sd)
    # Weights trained on the standalone encoder load strictly into the U-Net and give the same features.
    unet.encoder.load_state_dict(enc_sd, strict=True)
    unet.eval()
    enc.eval()
    x = torch.randn(1, 1, 8, 32, 32)
    with torch.no_grad():
        skips_a = unet.encoder(x)
        skips_b = enc(x)
    assert len(skips_a) == len(skips_b) == spec.n_stages
    assert all(torch.equal(a, b) for a, b in zip(skips_a, skips_b))
    # return_skips=False gives the bottleneck only, with the same weights.
    bottleneck = build_encoder(spec, 1, return_skips=False)
    bottleneck.load_state_dict(enc_sd)
    bottleneck.eval()
    with torch.no_grad():
        assert torch.equal(bottleneck(x), skips_b[-1])
    assert bottleneck.output_channels[-1] == spec.features_per_stage[-1]


def test_registry_and_bad_spec(spec):
    assert get_network_class("PlainConvUNet").__name__ == "PlainConvUNet"
    with pytest.raises(UserInputError, match="unknown network class"):
        get_network_class("NoSuchNet")
    from dataclasses import replace

    with pytest.raises(UserInputError, match="unknown norm"):
        build_encoder(replace(spec, norm="group"), 1)


def test_no_timm_or_torchvision_imported():
    code = ("import sys; from orthodiff_auto.networks import build_segmentation_network, build_encoder;"
            "from orthodiff_auto.plans.planner import plan_segmentation, GPU_PRESET;"
            "from orthodiff_auto.plans.schema import Budget;"
            "p = plan_segmentation((3, .5, .5), (16, 64, 64), 2, 4, Budget('gpu', 8), GPU_PRESET);"
            "build_segmentation_network(p.architecture, 1, 2); build_encoder(p.architecture, 1);"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('timm', 'torchvision')]; print(bad);"
            "sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
