"""The manual path does not dead-end (issue 27, item 6): train_fold says where it wrote and what comes next,
and find_best_configuration, asked for folds that did not all finish, names the ``--folds`` that would work."""

import json

from orthodiff_auto.cli import main
from orthodiff_auto.pipeline import train_fold as train_fold_module


def _finished_fold(results, task, name, variant, fold):
    d = results / task / name / variant / f"fold_{fold}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text("{}")
    (d / "checkpoint_final.pt").write_bytes(b"")


def test_find_best_configuration_suggests_the_folds_that_finished(tmp_path, capsys):
    pre = tmp_path / "pre"
    pre.mkdir()
    (pre / "dataset.json").write_text(json.dumps({"name": "T", "labels": {"background": 0, "a": 1}}))
    results = tmp_path / "results"
    _finished_fold(results, "seg", "sag", "scratch", 0)
    _finished_fold(results, "seg", "cor", "scratch", 0)
    _finished_fold(results, "seg", "cor", "scratch", 2)
    assert main(["find_best_configuration", str(pre), "--out", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert "no segmentation or classification configuration has finished folds [0, 1, 2, 3, 4]" in err
    assert f"orthodiff find_best_configuration {pre} --out {tmp_path / 'model'} --folds 0 2" in err


def test_find_best_configuration_without_any_fold_says_to_train_first(tmp_path, capsys):
    pre = tmp_path / "pre"
    pre.mkdir()
    (pre / "dataset.json").write_text(json.dumps({"name": "T", "labels": {"background": 0, "a": 1}}))
    assert main(["find_best_configuration", str(pre), "--out", str(tmp_path / "model")]) == 2
    assert "train folds first" in capsys.readouterr().err


def test_train_fold_prints_where_it_wrote(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_fold_module, "train_fold", lambda request: {})
    pre = tmp_path / "pre"
    assert main(["train_fold", str(pre), "seg", "sag", "0", "--config", "smoke"]) == 0
    out = capsys.readouterr().out
    assert f"fold written to {tmp_path / 'results' / 'seg' / 'sag' / 'scratch' / 'fold_0'}" in out
    assert "find_best_configuration" in out and "--folds" in out
