"""The command line as a whole: every sub-command's --help ends with a working example, shared option defaults
agree across commands, `orthodiff demo` runs the demo, and `orthodiff --help` loads nothing heavy."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from orthodiff_auto import demo
from orthodiff_auto.cli import build_parser, main
from orthodiff_auto.errors import UserInputError


def _subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


SUBCOMMANDS = sorted(_subparsers())


def test_every_command_module_is_a_sub_command_and_demo_is_one():
    """The sub-commands are exactly the modules of orthodiff_auto/commands (one module per command), demo too."""
    modules = {p.stem for p in (Path(demo.__file__).parent / "commands").glob("*.py") if not p.stem.startswith("_")}
    assert set(SUBCOMMANDS) == modules and "demo" in SUBCOMMANDS
    for name in SUBCOMMANDS:  # each parses its own name into args.command
        parser = _subparsers()[name]
        assert parser.prog.endswith(f" {name}")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_help_ends_with_an_example_that_parses(name):
    help_text = _subparsers()[name].format_help()
    last_line = help_text.strip().splitlines()[-1]  # one line, however long: it is pasted into a shell
    assert last_line.startswith(f"example: orthodiff {name} "), help_text
    first_command = last_line.removeprefix("example: orthodiff ").split(" && ")[0]  # "A && B": A is this one
    argv = shlex.split(first_command)
    args = build_parser().parse_args(argv)  # exits (SystemExit) on an example that does not parse
    assert args.command == name


def test_train_fold_config_defaults_like_auto_and_pretrain():
    parser = build_parser()
    defaults = {
        "train_fold": parser.parse_args(["train_fold", "pp", "seg", "sag", "0"]).config,
        "pretrain": parser.parse_args(["pretrain", "pp", "sag"]).config,
        "auto": parser.parse_args(["auto", "raw", "--work", "w"]).config,
    }
    assert defaults == {"train_fold": "full", "pretrain": "full", "auto": "full"}


@pytest.mark.parametrize("argv", [
    ["pretrain", "pp", "sag"], ["train_fold", "pp", "seg", "sag", "0"], ["predict_folder", "in", "out", "--model", "m"],
    ["probe", "pp", "sag"], ["auto", "raw", "--work", "w"],
])
def test_device_takes_a_numbered_gpu(argv):
    assert build_parser().parse_args([*argv, "--device", "cuda:1"]).device == "cuda:1"


def test_pretrain_passes_a_numbered_gpu_on(monkeypatch):
    from orthodiff_auto.diffusion import run as diffusion_run

    seen = {}
    monkeypatch.setattr(diffusion_run, "pretrain", lambda *a, **k: seen.update(k))
    assert main(["pretrain", "pp", "sag", "--device", "cuda:1"]) == 0
    assert seen["device"] == "cuda:1"


def test_orthodiff_demo_runs_the_demo_with_its_options(monkeypatch, tmp_path):
    from orthodiff_auto.pipeline import demo as demo_job

    calls = []
    monkeypatch.setattr(demo_job, "run_demo", lambda *args: calls.append(args) or 0)
    argv = ["--work", str(tmp_path / "w"), "--config", "smoke", "--folds", "0", "2", "--compare-scratch", "-np", "1"]
    assert main(["demo", *argv]) == 0
    assert demo.main(argv) == 0  # python -m orthodiff_auto.demo: the same options, the same call
    assert main(["demo", *argv, "--all-classifiers"]) == 0
    assert main(["demo", *argv, "--size", "standard", "--cases", "60"]) == 0
    assert calls == ([(tmp_path / "w", "smoke", [0, 2], 1, True, False, None, None)] * 2
                     + [(tmp_path / "w", "smoke", [0, 2], 1, True, True, None, None)]
                     + [(tmp_path / "w", "smoke", [0, 2], 1, True, False, "standard", 60)])


def test_demo_dataset_options_and_their_defaults_in_the_help():
    from orthodiff_auto.pipeline.demo import DEMO_DATASET, demo_dataset

    assert demo_dataset() == DEMO_DATASET
    assert demo_dataset("standard", 120) == {**DEMO_DATASET, "size": "standard", "n_cases": 120}
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    help_text = " ".join(parser.format_help().split())
    assert f"default {DEMO_DATASET['size']};" in help_text and f"default {DEMO_DATASET['n_cases']};" in help_text
    with pytest.raises(UserInputError, match="size"):
        demo_dataset("huge")
    with pytest.raises(UserInputError, match="at least 10"):
        demo_dataset(cases=9)


def test_demo_refuses_a_work_folder_generated_with_other_settings(capsys, tmp_path):
    raw = tmp_path / "w" / "raw"
    raw.mkdir(parents=True)
    (raw / "dataset.json").write_text("{}")
    (raw / ".orthodiff_synthetic.json").write_text(json.dumps({"params": {"n_cases": 30, "size": "demo", "seed": 7}}))
    before = sorted(p.name for p in raw.iterdir())
    assert main(["demo", "--work", str(tmp_path / "w"), "--size", "standard"]) == 2
    err = capsys.readouterr().err
    assert str(raw) in err and "size 'demo' (asked 'standard')" in err
    assert sorted(p.name for p in raw.iterdir()) == before and not (tmp_path / "w" / "preprocessed").exists()


def test_orthodiff_demo_refuses_bad_folds_before_writing(capsys, tmp_path):
    assert main(["demo", "--work", str(tmp_path / "w"), "--folds", "7"]) == 2
    assert "fold" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_help_loads_nothing_heavy():
    code = ("import sys; from orthodiff_auto.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'SimpleITK', 'pandas', 'sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
