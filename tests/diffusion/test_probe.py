"""``orthodiff probe``: the linear probe on made-up features, a run on a smoke-pretrained view, refusals."""

import json

import numpy as np
import pytest
import torch

from orthodiff_auto.cli import main
from orthodiff_auto.diffusion.features import (
    candidate_blocks,
    denoiser_from_state,
    fixed_noise,
    pad_to_divisor,
    pooled_block_outputs,
    truncated_state,
)
from orthodiff_auto.diffusion.probe import (
    choose,
    cross_validated_probabilities,
    probe_folds,
    read_probe,
)
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.classification_metrics import auroc_scores
from orthodiff_auto.training.splits import make_splits

from tests.plans.tiny_plans import tiny_arch

PRETRAIN = ["--config", "smoke", "--set", "num_epochs=1", "--set", "iterations_per_epoch=2", "--set", "num_samples=0",
            "--device", "cpu"]
CASES = tuple(f"c{i:03d}" for i in range(1, 8))


def with_findings(pre, findings=("tear",)):
    """dataset.json and findings.csv for the preprocessed folder of ``make_preprocessed``."""
    (pre / "dataset.json").write_text(json.dumps({"name": "Tiny", "findings": list(findings)}))
    rows = ["case_id," + ",".join(findings)] + [f"{c}," + ",".join(str((i + j) % 2) for j in range(len(findings)))
                                               for i, c in enumerate(CASES)]
    (pre / "findings.csv").write_text("\n".join(rows) + "\n")
    return pre


def five_folds(n: int) -> list:
    ids = [f"x{i:03d}" for i in range(n)]
    return probe_folds(make_splits(ids, n_folds=5), ids)


def test_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 12))
    y = np.stack([x[:, 0] > 0, x[:, 1] + 0.5 * x[:, 2] > 0.3, rng.random(100) < 0.5], axis=1).astype(float)
    x[:, 3:] += 5.0  # offsets and scales the standardisation must remove
    x[:, 4] *= 100.0
    scores = cross_validated_probabilities(x, y, five_folds(100), l2=1.0)
    assert scores.shape == y.shape and ((0 < scores) & (scores < 1)).all()
    macro, per = auroc_scores(y, scores, ["a", "b", "noise"])
    assert per["a"] > 0.97 and per["b"] > 0.9
    assert 0.2 < per["noise"] < 0.8  # labels unrelated to the features stay near chance
    # one class only: NaN, left out of the macro mean
    y[:, 2] = 0
    macro, per = auroc_scores(y, cross_validated_probabilities(x, y, five_folds(100)), ["a", "b", "never"])
    assert np.isnan(per["never"]) and macro == pytest.approx((per["a"] + per["b"]) / 2)


def test_every_row_must_be_held_out_once():
    x, y = np.zeros((4, 2)), np.array([[0.0], [1.0], [0.0], [1.0]])
    with pytest.raises(ValueError, match="held out by no fold"):
        cross_validated_probabilities(x, y, [(np.array([0, 1]), np.array([2, 3]))])


def test_truncated_denoiser_gives_the_same_block_features():
    from orthodiff_auto.diffusion.denoiser import Denoiser

    torch.manual_seed(0)
    full = Denoiser(tiny_arch()).eval()
    for p in full.parameters():  # FiLM starts at zero: make the conditioning matter
        p.data.add_(0.01 * torch.randn_like(p))
    x = pad_to_divisor(torch.randn(2, 1, 8, 14, 16), full.spec.shape_divisor)
    assert x.shape[2:] == (8, 16, 16)
    t = torch.tensor([5, 500])
    blocks = candidate_blocks(full)
    assert blocks == ["encoder.stages.0", "encoder.stages.1", "encoder.stages.2", "decoder.stages.0", "decoder.stages.1"]
    every = pooled_block_outputs(full, x, t, blocks)
    assert [tuple(v.shape) for v in every.values()] == [(2, 4), (2, 8), (2, 16), (2, 8), (2, 4)]
    for block in ("encoder.stages.1", "decoder.stages.0"):
        state = truncated_state(full, block)
        assert not any(k.startswith("decoder.seg_layers") for k in state)
        part = denoiser_from_state(full.spec.to_dict(), state, block)
        torch.testing.assert_close(pooled_block_outputs(part, x, t, [block])[block], every[block])
    with pytest.raises(UserInputError, match="unknown blocks"):
        pooled_block_outputs(full, x, t, ["decoder.stages.7"])
    assert torch.equal(fixed_noise((1, 4, 4), 3), fixed_noise((1, 4, 4), 3))


def test_choose_prefers_highest_then_earliest():
    from orthodiff_auto.diffusion.probe import ProbeRow

    rows = [ProbeRow(10, "a", 4, 0.7, {}), ProbeRow(10, "b", 4, None, {}), ProbeRow(50, "a", 4, 0.9, {}),
            ProbeRow(100, "a", 4, 0.9, {})]
    assert (choose(rows).timestep, choose(rows).block) == (50, "a")


@pytest.mark.slow
def test_probe_command_writes_table_and_choice(make_preprocessed, tmp_path, capsys):
    pre = with_findings(make_preprocessed(train=CASES, unlabeled=()))
    assert main(["pretrain", str(pre), "sag", *PRETRAIN]) == 0
    capsys.readouterr()
    assert main(["probe", str(pre), "sag", "--timesteps", "500,10", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "results" / "pretrain" / "sag"
    result = read_probe(out / "probe.json")
    blocks = ["encoder.stages.0", "encoder.stages.1", "encoder.stages.2", "decoder.stages.0", "decoder.stages.1"]
    assert result.timesteps == [10, 500] and result.blocks == blocks
    assert [(r.timestep, r.block) for r in result.rows] == [(t, b) for t in (10, 500) for b in blocks]
    assert [r.channels for r in result.rows[:5]] == [4, 8, 16, 8, 4]
    assert result.num_cases == len(CASES) and result.num_folds == 5 and result.findings == ["tear"]
    best = max(r.macro_auroc for r in result.rows)
    assert result.choice.macro_auroc == best
    assert (result.choice.timestep, result.choice.block) in {(r.timestep, r.block) for r in result.rows}
    assert result.encoder_checkpoint == str((out / "encoder_sag.pt").resolve())
    assert result.denoiser_checkpoint == str((out / "checkpoint_final.pt").resolve())
    assert len(result.encoder_sha256) == 64 and result.pretrain_iterations == 2
    assert (pre / "splits.json").is_file()  # made by the project's splits code when missing
    assert "macro AUROC" in printed and f"*{result.choice.timestep}" in printed

    # a subset of blocks; refusals of bad timesteps and blocks
    assert main(["probe", str(pre), "sag", "--timesteps", "10", "--blocks", "encoder.stages.2", "--device", "cpu"]) == 0
    assert [(r.timestep, r.block) for r in read_probe(out / "probe.json").rows] == [(10, "encoder.stages.2")]
    capsys.readouterr()
    assert main(["probe", str(pre), "sag", "--timesteps", "1000", "--device", "cpu"]) == 2
    assert "[0, 1000)" in capsys.readouterr().err
    assert main(["probe", str(pre), "sag", "--blocks", "decoder.seg_layers.1", "--device", "cpu"]) == 2
    assert "encoder.stages.0" in capsys.readouterr().err


@pytest.mark.slow
def test_probe_refuses_view_not_pretrained(make_preprocessed, tmp_path, capsys):
    pre = with_findings(make_preprocessed(train=CASES, unlabeled=()))
    assert main(["probe", str(pre), "sag", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "r" / "pretrain" / "sag" / "checkpoint_final.pt") in err and "orthodiff pretrain" in err


@pytest.mark.slow
def test_probe_refuses_dataset_without_findings(make_preprocessed, capsys):
    pre = with_findings(make_preprocessed(train=CASES, unlabeled=()), findings=())
    assert main(["probe", str(pre), "sag"]) == 2
    err = capsys.readouterr().err
    assert str(pre / "dataset.json") in err and "no findings" in err


def test_read_probe_names_the_file(tmp_path):
    with pytest.raises(UserInputError, match="orthodiff probe"):
        read_probe(tmp_path / "probe.json")
    (tmp_path / "probe.json").write_text("{}")
    with pytest.raises(UserInputError, match=str(tmp_path / "probe.json")):
        read_probe(tmp_path / "probe.json")
