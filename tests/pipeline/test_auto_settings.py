"""`auto` checks every user-supplied setting before its first stage writes anything: a typo in ``--set`` must not
cost a pretraining run (issue 27, item 1)."""

import pytest

from orthodiff_auto.cli import main

CASES = ("c001", "c002", "c003", "c004", "c005")


@pytest.mark.parametrize("arguments, named", [
    (["--set", "foo=1"], "--set: foo: unknown config key"),
    (["--set", "num_epochs=many"], "--set: config num_epochs: cannot use 'many' as int"),
    (["--cls-set", "bar=2"], "--cls-set: bar: unknown config key"),
    (["--pretrain-set", "baz=3"], "--pretrain-set: baz: unknown config key"),
    (["--fusion", "average"], "--fusion: config fusion: choose"),
    (["--pretrain-config", "huge"], "--pretrain-config: unknown config 'huge'"),
    (["--config", "huge"], "--config: unknown config 'huge'"),
    (["--folds", "5"], "--folds: choose among 0-4"),
    (["--budget", "tpu"], "--budget: expected"),
])
def test_a_bad_setting_is_refused_before_any_stage_writes(make_native_dataset, tmp_path, capsys, arguments, named):
    raw = make_native_dataset(views=("sag",), cases=CASES)
    work = tmp_path / "work"
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--config", "smoke", "--no-pretrain",
                 "-np", "1", *arguments]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert not work.exists()  # nothing planned, preprocessed or trained


def test_the_refusal_names_the_fix(make_native_dataset, tmp_path, capsys):
    raw = make_native_dataset(views=("sag",), cases=CASES)
    assert main(["auto", str(raw), "--work", str(tmp_path / "w"), "--config", "smoke", "--set", "foo=1"]) == 2
    err = capsys.readouterr().err
    assert "known keys: " in err and "num_epochs" in err and "--list-settings" in err


def test_a_work_path_that_is_a_file_is_refused(make_native_dataset, tmp_path, capsys):
    raw = make_native_dataset(views=("sag",), cases=CASES)
    work = tmp_path / "work"
    work.write_text("not a folder")
    assert main(["auto", str(raw), "--work", str(work), "--config", "smoke"]) == 2
    assert "--work exists and is not a folder" in capsys.readouterr().err


def test_too_few_cases_for_the_folds_is_refused_before_work(make_native_dataset, tmp_path, capsys):
    raw = make_native_dataset(views=("sag",), cases=CASES[:4])
    work = tmp_path / "work"
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--config", "smoke", "--folds", "0"]) == 2
    assert "4 training cases cannot make the 5 cross-validation folds" in capsys.readouterr().err
    assert not work.exists()
