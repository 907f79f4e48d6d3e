"""Arguments that several commands share. Not a command itself: the CLI skips modules whose name starts with
an underscore."""

from __future__ import annotations

import argparse
from pathlib import Path

from orthodiff_auto.errors import UserInputError

BUDGET_HELP = ("memory budget: 'gpu:<GB>' (e.g. gpu:8), 'gpu' (the detected GPU's memory, else 8 GB as nnU-Net) "
               "or 'cpu' (a small plan that trains in minutes on 2 cores); default: gpu")

SERIES_UID_HELP = ("VIEW=SERIES_UID: use this series for VIEW (sag, cor or ax) where a study has several series of "
                   "one view, or where its orientation says another view; repeat for each choice")


def add_dataset_and_out(p, out_help: str) -> None:
    """RAW_DATASET PREPROCESSED_DIR (the preprocessed folder is positional, as in every command that reads it;
    ``--out`` is its old spelling, kept hidden)."""
    p.add_argument("dataset", help="raw dataset folder (holds dataset.json)")
    p.add_argument("preprocessed_dir", nargs="?", type=Path, help=out_help)
    p.add_argument("--out", dest="preprocessed_out", type=Path, help=argparse.SUPPRESS)


def preprocessed_dir_of(args) -> Path:
    """The PREPROCESSED_DIR of ``add_dataset_and_out`` (or its hidden ``--out``); UserInputError without one."""
    if args.preprocessed_dir and args.preprocessed_out and args.preprocessed_dir != args.preprocessed_out:
        raise UserInputError(f"two preprocessed folders: {args.preprocessed_dir} and --out {args.preprocessed_out}")
    folder = args.preprocessed_dir or args.preprocessed_out
    if folder is None:
        raise UserInputError("name the preprocessed folder to write: RAW_DATASET PREPROCESSED_DIR")
    return folder


def add_worker_options(p, skip_validation: bool = True) -> None:
    """-np N, --skip-validation (when the command can skip it) and --no-progress-bar."""
    add_num_processes(p, 2, "parallel worker processes")
    if skip_validation:
        p.add_argument("--skip-validation", action="store_true", help="do not validate image contents first")
    add_no_progress_bar(p, "no bar over the cases (it is drawn only when stderr is a terminal)")


def add_num_processes(p, default: int, what: str) -> None:
    p.add_argument("-np", "--num-processes", type=int, default=default, help=f"{what} (default {default})")


def add_no_progress_bar(p, help_text: str) -> None:
    """--no-progress-bar, and its old spelling --no-progress kept hidden."""
    p.add_argument("--no-progress-bar", action="store_true", help=help_text)
    p.add_argument("--no-progress", dest="no_progress_bar", action="store_true", help=argparse.SUPPRESS)


def add_folds_option(p, default, help_text: str) -> None:
    """-f/--folds F [F ...], as nnU-Net's -f."""
    p.add_argument("-f", "--folds", nargs="+", type=int, default=default, help=help_text)


class ListSettings(argparse.Action):
    """``--list-settings``: print every --set key with its type and default, then exit (like --version: the
    command's positional arguments are not needed)."""

    def __init__(self, option_strings, dest, diffusion: bool = False, **kwargs):
        self.diffusion = diffusion
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="list every --set key with its type and default in each preset, then exit", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        # imported here: only --list-settings reads the config modules
        from orthodiff_auto.commands._settings import settings_table

        print(settings_table(diffusion=self.diffusion))
        parser.exit()


def add_monitor_options(p) -> None:
    """--no-progress-bar and --tensorboard: how a training run can be watched (config fields progress_bar and
    tensorboard, which change nothing that is learnt)."""
    add_no_progress_bar(p, "no bar over each epoch's iterations (it is drawn only when stderr is a terminal)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard scalars to <run folder>/tensorboard (needs the tensorboard extra: "
                   "pip install 'orthodiff_auto[tensorboard]')")


def monitor_overrides(args) -> list[str]:
    """The config overrides (``key=value``) that --no-progress-bar and --tensorboard stand for."""
    return (["progress_bar=false"] if args.no_progress_bar else []) + (["tensorboard=true"] if args.tensorboard else [])


def add_device_option(p) -> None:
    """--device: auto (default: cuda when available), cpu, cuda or cuda:N; under torchrun each process's GPU."""
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: cuda when available; under "
                   "torchrun each process takes its own GPU)")


def example(command_line: str) -> str:
    """A sub-command's epilog: one example line, the last line of its --help."""
    return f"example: {command_line}"


def add_export_arguments(p, source: str, source_help: str) -> None:
    """SOURCE, OUT.zip and --license of export_model and export_pretrained."""
    p.add_argument(source, type=Path, help=source_help)
    p.add_argument("out", type=Path, help="the zip file to write (replaced atomically if it exists)")
    p.add_argument("--license", default=None,
                   help="the terms you share it under, recorded in the manifest (e.g. CC-BY-4.0)")


def add_install_arguments(p, exporter: str, dest_help: str) -> None:
    """ARCHIVE and DEST of install_model and install_pretrained."""
    p.add_argument("archive", type=Path, help=f"zip written by `orthodiff {exporter}`")
    p.add_argument("dest", type=Path, help=dest_help)


def sharing_summary(manifest) -> str:
    """Who made a shared zip and under which terms, for the line an export or install prints."""
    return f"orthodiff_auto {manifest.package_version}, license {manifest.license or 'not stated'}"
