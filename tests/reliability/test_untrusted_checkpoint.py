"""Untrusted checkpoints: a ``.pt`` file whose pickle would run code when loaded is refused (every checkpoint
loads with ``torch.load(weights_only=True)``): exit code 2, the file named, and the payload never runs."""

import os
import pickle
import shutil

import pytest
import torch

from orthodiff_auto.cli import main
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.checkpoint import load_checkpoint
from tests.reliability.harness import loaded_checkpoints


class RunsCode:
    """Unpickling this calls ``os.system``: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Custom:
    """A class outside torch's allowed list: refused too, even though it runs nothing."""


def write_payload(path, kind: str, marker) -> None:
    if kind == "torch zip":
        torch.save({"model": {"w": torch.zeros(2)}, "extras": RunsCode(marker)}, path)
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps({"model": RunsCode(marker)}))
    else:
        torch.save({"model": Custom()}, path)


@pytest.mark.parametrize("kind", ["plain pickle", "custom class"])  # a torch zip: tests/training/test_checkpoint.py
def test_load_refuses_and_runs_nothing(tmp_path, kind):
    path, marker = tmp_path / "evil.pt", tmp_path / "ran"
    write_payload(path, kind, marker)
    with pytest.raises(UserInputError, match=str(path)):
        load_checkpoint(path)
    assert not marker.exists()


def _refused(argv, path, marker, capsys) -> None:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}" in err and "Traceback" not in err, err
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", ["final", "best"])
def test_predict_folder_refuses_a_model_with_a_pickled_payload(suite, tmp_path, capsys, checkpoint):
    model, marker = tmp_path / "model", tmp_path / "ran"
    shutil.copytree(suite.inputs.work / "model", model)
    evil = loaded_checkpoints(model, checkpoint)[0]  # one the command reads
    assert evil.is_file()
    write_payload(evil, "torch zip", marker)
    _refused(["predict_folder", suite.inputs.raw / "imagesTs", tmp_path / "out", "--model", model, "--checkpoint",
              checkpoint], evil, marker, capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_train_fold_refuses_a_pretrained_encoder_with_a_pickled_payload(suite, tmp_path, capsys):
    evil, marker = tmp_path / "encoder_sag.pt", tmp_path / "ran"
    write_payload(evil, "plain pickle", marker)
    _refused(["train_fold", suite.inputs.work / "preprocessed", "seg", "sag", "0", "--config", "smoke", "--results",
              tmp_path / "results", "--pretrained", evil], evil, marker, capsys)
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_pretrain_continue_refuses_a_checkpoint_with_a_pickled_payload(suite, tmp_path, capsys):
    results, marker = tmp_path / "results", tmp_path / "ran"
    evil = results / "pretrain" / "sag" / "checkpoint_latest.pt"
    evil.parent.mkdir(parents=True)
    write_payload(evil, "torch zip", marker)
    pp = tmp_path / "pp"
    shutil.copytree(suite.inputs.work / "preprocessed", pp)
    _refused(["pretrain", pp, "sag", "--config", "smoke", "--results", results, "--continue"], evil, marker, capsys)
