"""The denoiser: the planned U-Net with identity-initialised FiLM; encoder names as the segmentation encoder's."""

import torch

from orthodiff_auto.diffusion.denoiser import CONDITIONING_MODULES, Denoiser, sinusoidal_embedding
from orthodiff_auto.networks import build_encoder, build_segmentation_network
from orthodiff_auto.plans.schema import ArchitectureSpec

from tests.plans.tiny_plans import tiny_arch


def test_starts_as_the_plain_unet_and_encoder_names_match():
    spec = tiny_arch()
    torch.manual_seed(0)
    den = Denoiser(spec)
    torch.manual_seed(0)
    unet = build_segmentation_network(spec, 1, 1, deep_supervision=False)
    x = torch.randn(2, 1, 8, 16, 16)
    torch.testing.assert_close(den(x, torch.tensor([0, 999])), unet(x), rtol=0, atol=0)
    enc = build_encoder(spec, 1).state_dict()
    own = den.encoder.state_dict()
    assert list(own) == list(enc) and all(own[k].shape == enc[k].shape for k in enc)
    # the U-Net's own parameter names are kept; conditioning lives only in separate modules
    unet_names = set(unet.state_dict())
    extra = {k.split(".")[0] for k in den.state_dict() if k not in unet_names}
    assert extra == set(CONDITIONING_MODULES)


def test_timestep_conditioning_and_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    den = Denoiser(tiny_arch())
    with torch.no_grad():
        for film in list(den.film_encoder) + list(den.film_decoder):
            film.proj.weight.normal_(0, 0.1)
    x = torch.randn(1, 1, 8, 16, 16)
    a, b = den(x, torch.tensor([10])), den(x, torch.tensor([900]))
    assert not torch.allclose(a, b)
    den(torch.randn(2, 1, 8, 16, 16), torch.tensor([1, 2])).square().mean().backward()
    for name, p in den.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
        else:
            assert name.startswith("decoder.seg_layers.")  # unused deep-supervision heads are frozen


def test_two_dimensional_architecture():
    spec = ArchitectureSpec(n_stages=3, features_per_stage=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
                            strides=((1, 1), (2, 2), (2, 2)), n_conv_per_stage=(1, 1, 1),
                            n_conv_per_stage_decoder=(1, 1), conv_dim=2)
    den = Denoiser(spec)
    assert den(torch.randn(3, 1, 16, 16), torch.tensor([1, 2, 3])).shape == (3, 1, 16, 16)


def test_sinusoidal_embedding():
    e = sinusoidal_embedding(torch.tensor([0, 1, 999]), 16)
    assert e.shape == (3, 16) and torch.all(e[0, :8] == 1) and torch.all(e[0, 8:] == 0)
    assert sinusoidal_embedding(torch.tensor([5]), 7).shape == (1, 7)
