"""``orthodiff pretrain``: outputs, --continue, refusals; one end-to-end run after plan_and_preprocess."""

import json

import pytest
import torch

from orthodiff_auto.cli import main
from orthodiff_auto.training.pretrained import load_pretrained_encoder
from orthodiff_auto.networks import build_segmentation_network
from orthodiff_auto.plans.schema import Plans

pytestmark = pytest.mark.slow  # trains folds or runs auto (pytest -m 'not slow' skips it)

FAST = ["--config", "smoke", "--set", "num_epochs=2", "--set", "iterations_per_epoch=2", "--device", "cpu"]


def test_pretrain_writes_encoder_samples_and_continues(make_preprocessed, tmp_path, capsys):
    pre = make_preprocessed(train=("c001", "c002"), unlabeled=("u001",), test=("t001",))
    assert main(["pretrain", str(pre), "sag", *FAST]) == 0
    out = tmp_path / "results" / "pretrain" / "sag"
    for name in ("checkpoint_final.pt", "checkpoint_latest.pt", "encoder_sag.pt", "ddim_samples.png",
                 "progress.png", "pretrain_summary.json", "training_log.txt"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["num_scans"] == 3  # train + unlabeled, never test scans
    # one of the three held out for the validation loss, named in the summary and the log
    assert summary["num_training_scans"] == 2 and not summary["validation_on_training_scans"]
    (held_out,) = summary["validation_case_ids"]
    assert held_out in ("c001", "c002", "u001")
    assert f"never trained on: {held_out}" in (out / "training_log.txt").read_text()
    assert summary["iterations"] == 4 and summary["seconds_per_iteration_median"] > 0
    ckpt = torch.load(out / "encoder_sag.pt", weights_only=True)
    assert ckpt["iterations"] == 4 and ckpt["view"] == "sag"
    # the exported weights are the EMA weights of the final checkpoint's extras
    final = torch.load(out / "checkpoint_final.pt", weights_only=True)
    ema = final["extras"]["ema"]["model"]
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(v, ema["encoder." + k]), k
    spec = Plans.load(pre / "plans.json").view("sag").segmentation.architecture
    unet = build_segmentation_network(spec, 1, 3)
    load_pretrained_encoder(unet.encoder, out / "encoder_sag.pt", spec)
    assert torch.equal(unet.encoder.state_dict()["stages.0.0.convs.0.conv.weight"],
                       ckpt["state_dict"]["stages.0.0.convs.0.conv.weight"])

    capsys.readouterr()
    assert main(["pretrain", str(pre), "sag", *FAST]) == 2
    assert "--continue" in capsys.readouterr().err
    assert main(["pretrain", str(pre), "sag", *FAST, "--continue", "--set", "prediction=v"]) == 2
    assert "cannot continue" in capsys.readouterr().err
    # --continue with more epochs extends the run from its last checkpoint
    assert main(["pretrain", str(pre), "sag", *FAST, "--set", "num_epochs=3", "--continue"]) == 0
    log = (out / "training_log.txt").read_text()
    assert "resumed from checkpoint_latest.pt at epoch 2" in log
    assert torch.load(out / "encoder_sag.pt", weights_only=True)["iterations"] == 6
    # --continue on a finished run re-exports without training
    assert main(["pretrain", str(pre), "sag", *FAST, "--set", "num_epochs=3", "--continue"]) == 0
    assert "training already complete" in (out / "training_log.txt").read_text()
    assert torch.load(out / "encoder_sag.pt", weights_only=True)["iterations"] == 6


def test_results_option_and_a_single_scan(make_preprocessed, tmp_path):
    pre = make_preprocessed(train=("c001",), unlabeled=())
    assert main(["pretrain", str(pre), "sag", *FAST, "--set", "num_samples=0", "--results", str(tmp_path / "r")]) == 0
    out = tmp_path / "r" / "pretrain" / "sag"
    assert (out / "encoder_sag.pt").is_file() and not (out / "ddim_samples.png").exists()
    # nothing to hold out: the validation loss reuses the training scan, and says so
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["validation_on_training_scans"] and summary["validation_case_ids"] == ["c001"]
    assert "FLAGGED" in (out / "training_log.txt").read_text()


@pytest.mark.parametrize("args, message", [
    (["VIEW=ax"], "no plan for view 'ax'"),
    (["PLANS=missing"], "plans file not found"),
    (["VIEW=cor"], "no preprocessed data for view 'cor'"),
    (["--set", "bogus=1"], "unknown config key"),
    (["--config", "huge"], "unknown config"),
])
def test_refusals(make_preprocessed, capsys, args, message):
    from tests.plans.tiny_plans import tiny_plans

    pre = make_preprocessed(plans=tiny_plans(("sag", "cor")))  # cor planned but never preprocessed
    view = "sag"
    extra = []
    for a in args:
        if a.startswith("VIEW="):
            view = a[5:]
        elif a == "PLANS=missing":
            (pre / "plans.json").unlink()
        else:
            extra.append(a)
    capsys.readouterr()
    assert main(["pretrain", str(pre), view, "--device", "cpu", *extra]) == 2
    assert message in capsys.readouterr().err


def test_no_scans_of_the_view(make_preprocessed, capsys):
    pre = make_preprocessed(train=(), unlabeled=(), test=("t001",))
    capsys.readouterr()
    assert main(["pretrain", str(pre), "sag", *FAST]) == 2
    assert "no preprocessed train or unlabeled scans" in capsys.readouterr().err


def test_end_to_end_after_plan_and_preprocess(make_native_dataset, tmp_path):
    raw = make_native_dataset(cases=("c001", "c002"), views=("sag",), unlabeled_cases=("u001",))
    pre = tmp_path / "pp"
    assert main(["plan_and_preprocess", str(raw), "--out", str(pre), "--budget", "cpu", "-np", "1",
                 "--no-progress"]) == 0
    assert main(["pretrain", str(pre), "sag", *FAST, "--set", "sample_steps=2"]) == 0
    out = pre.parent / "results" / "pretrain" / "sag"
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["num_scans"] == 3
    spec = Plans.load(pre / "plans.json").view("sag").segmentation.architecture
    info = load_pretrained_encoder(build_segmentation_network(spec, 1, 3), out / "encoder_sag.pt", spec)
    assert info.iterations == 4 and info.view == "sag"


def test_device_names(monkeypatch):
    from orthodiff_auto.training.device import resolve_device as _device
    from orthodiff_auto.errors import UserInputError

    assert _device("cpu", 0).type == "cpu"
    with pytest.raises(UserInputError, match="unknown device"):
        _device("tpu", 0)
    # both kinds of machine, whichever this one is (only torch.device objects are made, no CUDA call)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _device("auto", 0).type == "cpu"
    with pytest.raises(UserInputError, match="no CUDA"):
        _device("cuda:1", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _device("auto", 1) == torch.device("cuda", 1) and _device(None, 0) == torch.device("cuda", 0)
    assert _device("cuda:1", 0) == torch.device("cuda", 1)  # a number outside torchrun is kept
    assert _device("cuda:1", 3, distributed=True) == torch.device("cuda", 3)  # under torchrun: LOCAL_RANK's GPU
