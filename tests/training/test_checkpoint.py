"""Checkpoints load with weights_only=True: a pickled Python object is refused with the product's own message."""

import os
from pathlib import Path

import pytest
import torch

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.checkpoint import load_checkpoint, save_checkpoint


class _Payload:
    """Would create a file when unpickled (what a hostile checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_plain_checkpoint_round_trips(tmp_path):
    save_checkpoint(tmp_path / "ok.pt", {"model": {"w": torch.arange(3.0)}, "epoch": 2, "name": "x"})
    loaded = load_checkpoint(tmp_path / "ok.pt")
    assert loaded["epoch"] == 2 and torch.equal(loaded["model"]["w"], torch.arange(3.0))


def test_pickled_object_is_refused_without_torchs_advice(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extras": _Payload(marker)}, path)
    with pytest.raises(UserInputError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a plain-weights checkpoint")
    assert "weights_only" not in message and "trust" not in message and "\n" not in message
    assert not marker.exists()


def test_corrupt_file_names_it(tmp_path):
    path = tmp_path / "half.pt"
    save_checkpoint(tmp_path / "ok.pt", {"w": torch.ones(100)})
    data = (tmp_path / "ok.pt").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserInputError, match=f"{path}: cannot load checkpoint"):
        load_checkpoint(path)


def test_same_payload_same_bytes_whatever_the_file_name(tmp_path):
    # torch names the archive inside the file after the path it is given, and atomic writes give it a random
    # temporary name: the bytes (and the sha256 that runs record of the encoder they start from) differed
    payload = {"model": {"w": torch.arange(12.0).reshape(3, 4)}, "epoch": 3, "extras": {"view": "sag"}}
    save_checkpoint(tmp_path / "a.pt", payload)
    save_checkpoint(tmp_path / "other_name.pt", payload)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other_name.pt").read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
