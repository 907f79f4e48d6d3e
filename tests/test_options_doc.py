"""One spelling per concept, nnU-Net's short forms, help on every argument, and documentation/options.md equal to
the commands' --help (issue 27, item 7)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from orthodiff_auto.cli import build_parser, command_help, main, options_markdown

OPTIONS_MD = Path(__file__).resolve().parents[1] / "documentation" / "options.md"


def _subparsers() -> dict:
    return next(a for a in build_parser()._actions if a.dest == "command").choices


def test_options_md_is_generated_from_the_parsers():
    assert OPTIONS_MD.read_text() == options_markdown() + "\n", (
        "documentation/options.md is stale: python -m orthodiff_auto.cli --options-markdown > documentation/options.md")


@pytest.mark.parametrize("name", ["auto", "predict_folder", "train_fold", "plan_and_preprocess"])
def test_options_md_holds_what_help_prints(name, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "102")  # argparse wraps to the terminal's width less 2: the document's 100
    with pytest.raises(SystemExit):
        main([name, "--help"])
    printed = capsys.readouterr().out
    assert printed == command_help(name)
    assert f"```text\n{printed.rstrip()}\n```" in OPTIONS_MD.read_text()


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_argument_has_help(name):
    actions = [a for a in _subparsers()[name]._actions
               if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS]
    assert [a.dest for a in actions if not a.help] == []


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_one_spelling_per_shared_option(name):
    flags = {flag for a in _subparsers()[name]._actions for flag in a.option_strings}
    if "--num-processes" in flags:
        assert "-np" in flags
    if "--folds" in flags:
        assert "-f" in flags
    visible = {flag for a in _subparsers()[name]._actions if a.help != argparse.SUPPRESS for flag in a.option_strings}
    assert "--no-progress" not in visible  # the old spelling of --no-progress-bar still parses, hidden
    # -c is reserved for the segmentation configuration(s), as nnU-Net's -c
    assert all(a.dest in ("configuration", "configurations") for a in _subparsers()[name]._actions
               if "-c" in a.option_strings)


def test_nnunet_short_forms_of_predict_folder():
    args = build_parser().parse_args(["predict_folder", "-i", "in", "-o", "out", "-m", "model", "-f", "0", "2",
                                      "-chk", "best", "--save_probabilities"])
    assert (args.input_option, args.output_option, args.model) == (Path("in"), Path("out"), Path("model"))
    assert args.folds == [0, 2] and args.checkpoint == "best" and args.save_probabilities


def test_predict_folder_refuses_a_folder_given_twice_or_not_at_all(capsys, tmp_path):
    assert main(["predict_folder", "a", "out", "-i", "b", "-m", str(tmp_path)]) == 2
    assert "give the folder once" in capsys.readouterr().err
    assert main(["predict_folder", "-m", str(tmp_path)]) == 2
    assert "name the input and the output folder" in capsys.readouterr().err


def test_the_preprocessed_folder_is_positional_and_the_old_out_still_parses():
    parser = build_parser()
    for command in ("fingerprint", "preprocess", "plan_and_preprocess"):
        new = parser.parse_args([command, "raw", "pre", "--no-progress-bar"])
        old = parser.parse_args([command, "raw", "--out", "pre", "--no-progress"])
        assert (new.preprocessed_dir, old.preprocessed_out) == (Path("pre"), Path("pre"))
        assert new.no_progress_bar and old.no_progress_bar


def test_train_fold_nnunet_spellings():
    args = build_parser().parse_args(["train_fold", "pre", "seg", "sag", "0", "-pretrained_weights", "e.pt", "--c"])
    assert args.pretrained == Path("e.pt") and args.resume


def test_auto_help_says_what_config_defaults_to():
    text = re.sub(r"\s+", " ", command_help("auto"))
    assert "default full" in text and "-f FOLDS [FOLDS ...], --folds FOLDS [FOLDS ...]" in text


@pytest.mark.parametrize("command, keys", [
    (["train_fold"], ["num_epochs", "initial_lr", "patch_size"]),
    (["pretrain"], ["num_epochs", "ema_decay", "sample_steps"]),
    (["auto"], ["num_epochs", "ema_decay"]),
])
def test_list_settings_names_every_key_with_type_and_presets(command, keys, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--list-settings"])  # no positional arguments needed, as --version
    assert e.value.code == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["key"] == ["type", "smoke", "demo", "full"]
    for key in keys:
        assert key in rows
    assert rows["num_epochs"] == ["int", "2", "32", "1000"]
    from orthodiff_auto.training.config import TrainingConfig
    assert set(TrainingConfig.__dataclass_fields__) <= set(rows)


def test_a_redirected_log_gets_no_carriage_returns(make_native_dataset, tmp_path, capsys):
    raw = make_native_dataset(views=("sag",))
    assert main(["plan_and_preprocess", str(raw), str(tmp_path / "pre"), "--budget", "cpu", "-np", "1"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\r" not in captured.out


def test_demo_help_counts_the_test_cases_it_generates():
    from orthodiff_auto.pipeline.demo import DEMO_DATASET

    text = re.sub(r"\s+", " ", command_help("demo"))
    counts = re.search(r"\((\d+) labelled, (\d+) unlabeled, (\d+) test cases\)", text)
    assert counts and tuple(map(int, counts.groups())) == (
        DEMO_DATASET["n_cases"], DEMO_DATASET["n_unlabeled"], DEMO_DATASET["n_test"])
