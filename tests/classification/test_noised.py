"""``classifier_features=noised``: the pretrained encoder read on noised inputs with its timestep conditioning."""

from __future__ import annotations

import json

import pytest
import torch

from orthodiff_auto.classification.inference import FindingsEnsemble
from orthodiff_auto.classification.metrics_io import read_validation_predictions
from orthodiff_auto.classification.noised import PRETRAINED_PREFIXES, NoisedViewClassifier
from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_image
from orthodiff_auto.diffusion.denoiser import Denoiser
from orthodiff_auto.diffusion.schedule import make_alphas_cumprod
from orthodiff_auto.plans.schema import Plans
from tests.classification.conftest import FINDINGS

PRETRAIN = ["--config", "smoke", "--set", "num_epochs=1", "--set", "iterations_per_epoch=2", "--set", "num_samples=0",
            "--device", "cpu"]
NOISED = ["--config", "smoke", "--set", "classifier_features=noised", "--set", "noise_timestep=50",
          "--set", "noise_draws=2", "--set", "num_epochs=2", "--set", "iterations_per_epoch=3"]


def test_classifier_reads_the_encoder_as_the_denoiser_does(cls_preprocessed):
    arch = Plans.load(cls_preprocessed / "plans.json").view("sag").classification.architecture
    torch.manual_seed(0)
    denoiser = Denoiser(arch)
    for film in denoiser.film_encoder:  # not at identity: the conditioning must carry over
        torch.nn.init.normal_(film.proj.weight, std=0.1)
    model = NoisedViewClassifier(arch, 2, timestep=50)
    state = {k: v for k, v in denoiser.state_dict().items() if k.startswith(PRETRAINED_PREFIXES)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if k.startswith(PRETRAINED_PREFIXES)]
    x0 = torch.randn(2, 1, *Plans.load(cls_preprocessed / "plans.json").view("sag").classification.input_size)
    noise = torch.randn_like(x0)
    ab = make_alphas_cumprod("cosine", 1000)[50]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    t = torch.full((2,), 50, dtype=torch.long)
    features = {}
    model.head.register_forward_hook(lambda _m, inputs, _o: features.update(mine=inputs[0]))
    model.eval(), denoiser.eval()
    with torch.no_grad():
        model(x0, noise)
        emb, h = denoiser.time_mlp(t), x_t
        for stage, film in zip(denoiser.encoder.stages, denoiser.film_encoder):
            h = film(stage(h), emb)
    torch.testing.assert_close(features["mine"], h, rtol=1e-4, atol=1e-4)


def test_prediction_averages_fixed_noises_deterministically(cls_preprocessed):
    arch = Plans.load(cls_preprocessed / "plans.json").view("sag").classification.architecture
    model = NoisedViewClassifier(arch, 2, timestep=200).eval()
    x = torch.randn(1, 1, *Plans.load(cls_preprocessed / "plans.json").view("sag").classification.input_size)
    with torch.no_grad():
        one, again, four = model.predict(x, 1), model.predict(x, 1), model.predict(x, 4)
    assert torch.equal(one, again) and not torch.allclose(one, four)
    with pytest.raises(Exception, match="noise_timestep"):
        NoisedViewClassifier(arch, 2, timestep=1000)


@pytest.mark.slow
def test_noised_fold_starts_from_the_pretraining_run_and_predicts_like_validation(cls_preprocessed, tmp_path):
    results = tmp_path / "results"
    assert main(["pretrain", str(cls_preprocessed), "sag", "--results", str(results), *PRETRAIN]) == 0
    assert main(["train_fold", str(cls_preprocessed), "cls", "sag", "0", "--results", str(results), *NOISED]) == 0
    fold = results / "cls" / "sag" / "noised_t50" / "fold_0"
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    extras = ckpt["extras"]
    assert extras["kind"] == "noised" and extras["noised"]["timestep"] == 50 and extras["noised"]["draws"] == 2
    assert extras["noised"]["pretrained_from"] == str(results / "pretrain" / "sag" / "checkpoint_final.pt")
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["pretrained"]["sag"]["tensors_loaded"] > 0
    cases, probs, _ = read_validation_predictions(fold / "validation_predictions.csv", FINDINGS)
    ensemble = FindingsEnsemble.load([fold / "checkpoint_final.pt"])
    raw = cls_preprocessed.parent / "raw" / "imagesTr"
    found = ensemble.predict({"sag": read_image(raw / f"{cases[0]}_sag.nii.gz")})
    assert [found[f]["probability"] for f in FINDINGS] == pytest.approx(list(probs[0]), abs=1e-4)
