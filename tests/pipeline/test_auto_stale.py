"""auto reuses a stage only when it was made with the same settings: another --budget or training config is
refused (naming what and where) or, with --redo-stale, redone; result-neutral settings (workers) reuse it."""

import json

import pytest
import torch

from orthodiff_auto.cli import main

pytestmark = pytest.mark.slow  # trains folds or runs auto (pytest -m 'not slow' skips it)


def test_other_settings_are_refused_or_redone_never_silently_reused(make_native_dataset, tmp_path, capsys):
    raw = make_native_dataset(cases=[f"c{i}" for i in range(5)], views=("sag",), findings=())
    work = tmp_path / "work"
    common = ["auto", str(raw), "--work", str(work), "--config", "smoke", "--no-pretrain", "--folds", "0", "-np", "1",
              "-c", "3d_fullres"]
    assert main(common + ["--budget", "cpu"]) == 0
    fold = work / "results" / "seg" / "sag" / "scratch" / "fold_0"
    stamp = (fold / "checkpoint_final.pt").stat().st_mtime_ns
    capsys.readouterr()

    # the number of data workers does not change what is learnt: reused
    assert main(common + ["--budget", "cpu", "--set", "num_workers=1"]) == 0
    assert "== seg sag fold 0 (scratch): done" in capsys.readouterr().out

    # another training config: refused, naming the fold's folder and the difference
    assert main(common + ["--budget", "cpu", "--set", "num_epochs=3"]) == 2
    err = capsys.readouterr().err
    assert str(fold) in err and "num_epochs 2 -> 3" in err and "--redo-stale" in err

    # another budget: refused, naming plans.json; nothing is planned or trained
    plans_before = (work / "preprocessed" / "plans.json").read_text()
    assert main(common + ["--budget", "gpu:8"]) == 2
    err = capsys.readouterr().err
    assert "plans.json" in err and "budget cpu -> gpu:8" in err
    assert (work / "preprocessed" / "plans.json").read_text() == plans_before
    assert (fold / "checkpoint_final.pt").stat().st_mtime_ns == stamp

    # --redo-stale: planned again for the new budget, and the fold trained again under the new plans
    assert main(common + ["--budget", "gpu:8", "--redo-stale"]) == 0
    assert "redoing it (--redo-stale)" in capsys.readouterr().out
    assert json.loads((work / "preprocessed" / "plans.json").read_text())["budget"]["kind"] == "gpu"
    retrained = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert retrained["extras"]["plans"]["budget"]["kind"] == "gpu"
