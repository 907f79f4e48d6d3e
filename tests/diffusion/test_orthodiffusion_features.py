"""Frozen features of an imported OrthoDiffusion bundle: the view folder serves as a pretraining folder, and the
features at the bundle's reading (t=100, mid_2) are the authors' get_feature: the block's output for the input
noised with their schedule buffers."""

from __future__ import annotations

import torch

from orthodiff_auto.cli import main
from orthodiff_auto.diffusion.features import (
    BlockFeatures,
    candidate_blocks,
    denoiser_from_state,
    fixed_noise,
    load_frozen_denoiser,
    truncated_state,
)
from orthodiff_auto.diffusion.orthodiffusion_features import default_reading
from orthodiff_auto.networks.orthodiffusion.unet import OrthoDiffusionUNet
from tests.diffusion.orthodiffusion_checkpoint import REDUCED, write_authors_checkpoint


def test_features_at_the_bundles_reading_are_the_authors_get_feature(tmp_path):
    ckpt = tmp_path / "axial_model.pt"
    written = write_authors_checkpoint(ckpt)
    assert main(["install_pretrained", str(ckpt), str(tmp_path / "od"), "--from", "orthodiffusion",
                 "--view", "ax"]) == 0
    folder = tmp_path / "od" / "ax"
    frozen = load_frozen_denoiser(folder, "ax")
    assert (frozen.schedule, frozen.timesteps, frozen.iterations) == ("cosine", 1000, 21499)
    assert "middle_block.2" in candidate_blocks(frozen.model) and "output_blocks.5" in candidate_blocks(frozen.model)
    t, block = default_reading(folder / "encoder_ax.pt")
    assert (t, block) == (100, "middle_block.2")

    # the reference: their formula, x_t = sqrt_ab[t] x0 + sqrt(1 - ab)[t] eps with their buffers, into the EMA net
    ema = written["ema"]
    reference = OrthoDiffusionUNet(REDUCED).eval()
    reference.load_state_dict({k[len("denoise_fn."):]: v for k, v in ema.items() if k.startswith("denoise_fn.")})
    x0 = torch.rand(2, 1, 8, 16, 16) * 2 - 1
    eps = fixed_noise(x0.shape[1:], 7).expand_as(x0)
    x_t = ema["sqrt_alphas_cumprod"][t] * x0 + ema["sqrt_one_minus_alphas_cumprod"][t] * eps
    with torch.no_grad():
        acts = {}
        reference.middle_block[2].register_forward_hook(lambda m, i, o: acts.setdefault("mid_2", o))
        reference(x_t, torch.full((2,), t))
    features = BlockFeatures(frozen.model, frozen.alphas_cumprod, t, block, 7, pooling="attention")
    assert torch.allclose(features(x0), acts["mid_2"], atol=1e-4)
    pooled = BlockFeatures(frozen.model, frozen.alphas_cumprod, t, block, 7, pooling="mean")(x0)
    assert torch.allclose(pooled, acts["mid_2"].mean(dim=(2, 3, 4)), atol=1e-4)

    # what a classifier stores (the weights up to the block) rebuilds the same features
    state = truncated_state(frozen.model, block)
    assert not any(k.startswith(("output_blocks.", "out.")) for k in state)
    rebuilt = denoiser_from_state(frozen.architecture.to_dict(), state, block, "classifier")
    again = BlockFeatures(rebuilt, frozen.alphas_cumprod, t, block, 7, pooling="attention")(x0)
    assert torch.equal(again, features(x0))
