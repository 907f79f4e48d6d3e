"""train_fold with ``stop_after_epoch``: the process ends at that epoch's checkpoint without validating (no
summary.json, so nothing counts the fold as trained), and ``--continue`` finishes and validates it."""

import json

from orthodiff_auto.cli import main
from tests.training.test_train_fold import preprocessed  # noqa: F401  (the module's tiny preprocessed dataset)


def test_seg_fold_stopped_early_is_not_validated_until_continued(preprocessed, tmp_path):  # noqa: F811
    common = ["train_fold", str(preprocessed), "seg", "sag", "0", "--config", "smoke", "--results", str(tmp_path),
              "--set", "num_epochs=2", "--set", "iterations_per_epoch=2"]
    assert main([*common, "--set", "stop_after_epoch=1"]) == 0
    fold = tmp_path / "seg" / "sag" / "scratch" / "fold_0"
    assert (fold / "checkpoint_latest.pt").is_file()
    assert not (fold / "summary.json").exists() and not (fold / "checkpoint_final.pt").exists()
    assert main([*common, "--continue"]) == 0
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["per_case"] and "resumed from checkpoint_latest.pt at epoch 1" in (fold / "training_log.txt").read_text()
