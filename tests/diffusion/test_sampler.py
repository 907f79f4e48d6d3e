"""DDIM: timesteps, exactness on a known distribution, shapes of a real denoiser's samples, the figure."""

import pytest
import torch

from orthodiff_auto.diffusion.denoiser import Denoiser
from orthodiff_auto.diffusion.sampler import ddim_sample, ddim_timesteps, save_sampling_figure
from orthodiff_auto.diffusion.schedule import cosine_alphas_cumprod, training_target

from tests.plans.tiny_plans import tiny_arch


def test_ddim_timesteps():
    steps = ddim_timesteps(1000, 50)
    assert len(steps) == 50 and steps[0] == 999 and steps[-1] == 0
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert ddim_timesteps(10, 50) == list(range(9, -1, -1))
    assert ddim_timesteps(1000, 1) == [999]


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 1, 4, 8, 8)])
def test_ddim_recovers_a_point_mass_exactly(prediction, shape):
    """The data distribution is the constant volume c: the exact denoiser is known in closed form, so
    deterministic DDIM must land on c whatever the steps."""
    ab = cosine_alphas_cumprod(1000)
    c = torch.full(shape[1:], 0.7)

    def oracle(x, t):
        a = ab[t].float().reshape(-1, *([1] * (x.ndim - 1)))
        eps = (x - a.sqrt() * c) / (1 - a).sqrt()
        return training_target(c.expand_as(x), eps, t, ab, prediction)

    g = torch.Generator().manual_seed(0)
    x, trace = ddim_sample(oracle, shape, ab, prediction, num_steps=10, generator=g, record_every=3)
    torch.testing.assert_close(x, c.expand(shape), atol=1e-4, rtol=0)
    assert trace.timesteps == [999, 666, 333, 0] and len(trace.x) == 4 and trace.x[0].shape == shape


def test_sampling_a_denoiser_gives_finite_volumes_of_the_right_shape(tmp_path):
    torch.manual_seed(0)
    model = Denoiser(tiny_arch()).eval()
    ab = cosine_alphas_cumprod(1000)
    g = torch.Generator().manual_seed(3)
    x, trace = ddim_sample(model, (2, 1, 8, 16, 16), ab, "epsilon", num_steps=4, generator=g, record_every=1, eta=0.5)
    assert x.shape == (2, 1, 8, 16, 16) and torch.isfinite(x).all()
    g2 = torch.Generator().manual_seed(3)
    x2, _ = ddim_sample(model, (2, 1, 8, 16, 16), ab, "epsilon", num_steps=4, generator=g2, eta=0.5)
    torch.testing.assert_close(x, x2, rtol=0, atol=0)  # reproducible from the generator
    save_sampling_figure(trace, tmp_path / "s.png", axis=0, reference=torch.randn(1, 8, 16, 16))
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_ddim_from_a_partly_noised_input():
    ab = cosine_alphas_cumprod(1000)
    assert ddim_timesteps(1000, 5, start=400) == [400, 300, 200, 100, 0]
    c = torch.full((1, 6, 6), -0.3)

    def oracle(x, t):
        a = ab[t].float().reshape(-1, 1, 1, 1)
        return (x - a.sqrt() * c) / (1 - a).sqrt()

    x_T = torch.randn(2, 1, 6, 6)
    x, trace = ddim_sample(oracle, x_T.shape, ab, "epsilon", num_steps=5, x_T=x_T, start_timestep=400,
                           record_every=1)
    torch.testing.assert_close(x, c.expand(2, 1, 6, 6), atol=1e-4, rtol=0)
    assert trace.timesteps == [400, 300, 200, 100, 0] and torch.equal(trace.x[0], x_T)
    with pytest.raises(ValueError, match="start must be"):
        ddim_timesteps(1000, 5, start=1000)


def test_clipping_keeps_predictions_in_the_data_range():
    ab = cosine_alphas_cumprod(1000)

    def wild(x, t):  # a bad epsilon model: its x_0 estimates near T are huge
        return torch.zeros_like(x)

    x, trace = ddim_sample(wild, (1, 1, 4, 4), ab, "epsilon", num_steps=5, clip_x0=(-1.0, 2.0), record_every=1,
                           generator=torch.Generator().manual_seed(0))
    assert all(float(p.min()) >= -1.0 and float(p.max()) <= 2.0 for p in trace.x0)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 2.0
    unclipped, _ = ddim_sample(wild, (1, 1, 4, 4), ab, "epsilon", num_steps=5,
                               generator=torch.Generator().manual_seed(0))
    assert float(unclipped.abs().max()) > 100
