"""Noise schedules and the forward process: invariants, statistics, conversions (any number of dims)."""

import pytest
import torch

from orthodiff_auto.diffusion.schedule import (
    cosine_alphas_cumprod,
    diffusion_loss,
    linear_alphas_cumprod,
    make_alphas_cumprod,
    min_snr_weights,
    predict_x0_and_eps,
    q_sample,
    snr,
    training_target,
)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("T", [1000, 50])
def test_alpha_bar_decreases_from_one_to_zero_and_snr_is_monotone(schedule, T):
    ab = make_alphas_cumprod(schedule, T)
    assert ab.shape == (T,) and ab.dtype == torch.float64
    assert torch.all(ab > 0) and torch.all(ab < 1)
    assert torch.all(ab[1:] < ab[:-1])
    assert ab[0] > 0.99
    assert ab[-1] < 1e-3 if schedule == "cosine" else ab[-1] < 1e-2
    s = snr(ab)
    assert torch.all(s[1:] < s[:-1])
    assert s[0] > 50 and s[-1] < 1e-2


def test_cosine_matches_closed_form_away_from_the_clip():
    T, s = 1000, 0.008
    ab = cosine_alphas_cumprod(T, s)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = lambda x: torch.cos((x / T + s) / (1 + s) * torch.pi / 2) ** 2
    closed = f(t) / f(torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(ab[:900], closed[:900], rtol=1e-9, atol=1e-12)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_alphas_cumprod("sigmoid", 10)


@pytest.mark.parametrize("spatial", [(64, 64), (16, 16, 16)])
def test_q_sample_statistics(spatial):
    ab = cosine_alphas_cumprod(1000)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 250, 500, 999])
    x0 = torch.full((4, 1, *spatial), 2.0)
    noise = torch.randn(x0.shape, generator=g)
    xt = q_sample(x0, t, noise, ab)
    assert xt.shape == x0.shape and xt.dtype == torch.float32
    for i, ti in enumerate(t):
        a = float(ab[ti])
        assert float(xt[i].mean()) == pytest.approx(2.0 * a**0.5, abs=0.05)
        assert float(xt[i].std()) == pytest.approx((1 - a) ** 0.5, rel=0.05, abs=2e-3)


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
def test_targets_and_predictions_are_consistent(prediction):
    ab = cosine_alphas_cumprod(1000)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 1, 4, 6, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([10, 500, 900])
    xt = q_sample(x0, t, eps, ab)
    target = training_target(x0, eps, t, ab, prediction)
    x0_hat, eps_hat = predict_x0_and_eps(xt, t, target, ab, prediction)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)
    assert float(diffusion_loss(target, target, t, ab, prediction, 5.0)) == 0.0


def test_min_snr_weights():
    s = snr(cosine_alphas_cumprod(1000))[torch.tensor([5, 500, 995])]
    torch.testing.assert_close(min_snr_weights(s, "epsilon", None), torch.ones(3, dtype=s.dtype))
    torch.testing.assert_close(min_snr_weights(s, "epsilon", 5.0) * s, s.clamp(max=5.0))
    torch.testing.assert_close(min_snr_weights(s, "v", 5.0) * (s + 1), s.clamp(max=5.0))
    torch.testing.assert_close(min_snr_weights(s, "x0", 5.0), s.clamp(max=5.0))
    # high-noise steps keep full weight for epsilon, low-noise steps are down-weighted
    w = min_snr_weights(s, "epsilon", 5.0)
    assert w[0] < 0.01 and w[2] == 1.0


def test_linear_is_rescaled_for_short_schedules():
    assert float(linear_alphas_cumprod(100)[-1]) < 0.01
