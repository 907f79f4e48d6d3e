"""The fault-injection benchmark picks the same trials whatever order the file system lists directories in, and
poisons the checkpoint predict_folder loads (asked of the model folder), for ``--checkpoint final`` and ``best``."""

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from orthodiff_auto.inference.model_dir import ModelDescription, TaskChoice
from tests.reliability.harness import Reference, loaded_checkpoints

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import fault_injection  # noqa: E402

COMMANDS = fault_injection.COMMANDS


def fake_suite(root: Path, renames_reversed: bool) -> SimpleNamespace:
    """Inputs laid out as Suite.build lays them out (a model folder with final and best checkpoints of two folds,
    test scans) and references whose renames arrive in the order a run wrote them."""
    model = root / "auto" / "work" / "model"
    checkpoints = ("seg/sag/fold_1.pt", "seg/sag/fold_0.pt")  # model.json's order, not the alphabet's
    (model / "seg" / "sag").mkdir(parents=True)
    ModelDescription({}, {"sag": TaskChoice("sag", "pretrained", checkpoints)}, None).save(model)
    for c in checkpoints:
        for name in (Path(c).name, Path(c).stem + "_best.pt"):
            (model / Path(c).parent / name).write_bytes(b"")
    (root / "raw" / "imagesTs").mkdir(parents=True)
    for case in ("c_sag.nii.gz", "a_sag.nii.gz", "b_sag.nii.gz"):
        (root / "raw" / "imagesTs" / case).write_bytes(b"")
    renames = [f"case_{i}.npz" for i in range(6)] + ["plans.json", "fold_0/checkpoint_latest.pt"] * 2
    references = {name: Reference({}, renames[::-1] if renames_reversed else renames, 12.0) for name in COMMANDS}
    return SimpleNamespace(inputs=SimpleNamespace(raw=root / "raw", work=root / "auto" / "work"),
                           reference=references.__getitem__)


def reverse_listings(monkeypatch) -> None:
    """Every directory listing in the reverse of its usual order."""
    for method in ("iterdir", "glob", "rglob"):
        real = getattr(Path, method)
        monkeypatch.setattr(Path, method, lambda self, *a, _real=real, **k: iter(sorted(_real(self, *a, **k),
                                                                                       reverse=True)))


def test_the_same_trials_whatever_the_directory_order(tmp_path, monkeypatch):
    args = argparse.Namespace(seed=7, renames=3, moments=1, double=1, disk=2)
    first = fault_injection.choose(fake_suite(tmp_path / "a", renames_reversed=False), args).lines()
    reverse_listings(monkeypatch)
    second = fault_injection.choose(fake_suite(tmp_path / "b", renames_reversed=True), args).lines()
    assert first == second
    assert "good scan: a_sag.nii.gz" in first
    assert sum(line.startswith("kill ") for line in first) == len(COMMANDS) * 5


def test_the_poisoned_checkpoint_is_the_one_predict_folder_loads(tmp_path, monkeypatch):
    reverse_listings(monkeypatch)
    suite = fake_suite(tmp_path, renames_reversed=False)
    args = argparse.Namespace(seed=0, renames=1, moments=0, double=0, disk=1)
    poisoned = fault_injection.choose(suite, args).poisoned
    assert poisoned["model checkpoint (--checkpoint final)"] == ("seg/sag/fold_1.pt", [])
    assert poisoned["model checkpoint (--checkpoint best)"] == ("seg/sag/fold_1_best.pt", ["--checkpoint", "best"])


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", ["final", "best"])
def test_loaded_checkpoints_are_the_ones_the_predictor_reads(suite, monkeypatch, checkpoint):
    import orthodiff_auto.inference.predictor as predictor

    model, read, real = suite.inputs.work / "model", [], predictor.load_checkpoint
    monkeypatch.setattr(predictor, "load_checkpoint",
                        lambda path, *a, **k: read.append(Path(path)) or real(path, *a, **k))
    predictor.Predictor(model, device="cpu", checkpoint=checkpoint)
    assert [p for p in read if p.relative_to(model).parts[0] == "seg"] == loaded_checkpoints(model, checkpoint)


def test_a_moment_the_run_outlived_is_halved_until_the_kill_lands(tmp_path):
    """A run faster than the control run it was timed by ends before its kill moment; the trial is repeated at
    half the moment in a fresh folder, so the moment trial still kills something (and passes)."""
    from tests.reliability.harness import TimeKill, Trial

    runs = []

    def trial(name, point, run):
        runs.append((point.seconds, run.name))
        return Trial(name, point.describe(), killed=point.seconds < 1.0)

    trial_, tried = fault_injection.kill_at_moment(SimpleNamespace(trial=trial), "pretrain", TimeKill(3.2),
                                                   tmp_path / "pretrain")
    assert trial_.killed and trial_.passed
    assert [p.seconds for p in tried] == [3.2, 1.6, 0.8]
    assert [r for _, r in runs] == ["pretrain", "pretrain_retry1", "pretrain_retry2"]
    never, tried = fault_injection.kill_at_moment(SimpleNamespace(trial=lambda n, p, r: Trial(n, "", killed=False)),
                                                  "pretrain", TimeKill(3.2), tmp_path / "again")
    assert not never.killed and len(tried) == fault_injection.MOMENT_RETRIES + 1
