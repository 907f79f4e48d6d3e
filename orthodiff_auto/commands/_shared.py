"""Arguments that several commands share. Not a command itself: the CLI skips modules whose name starts with
an underscore."""

from __future__ import annotations

from pathlib import Path

BUDGET_HELP = ("memory budget: 'gpu:<GB>' (e.g. gpu:8), 'gpu' (the detected GPU's memory, else 8 GB as nnU-Net) "
               "or 'cpu' (a small plan that trains in minutes on 2 cores); default: gpu")

SERIES_UID_HELP = ("VIEW=SERIES_UID: use this series for VIEW (sag, cor or ax) where a study has several series of "
                   "one view, or where its orientation says another view; repeat for each choice")


def add_dataset_and_out(p, out_help: str) -> None:
    """RAW_DATASET and --out PREPROCESSED_DIR."""
    p.add_argument("dataset", help="raw dataset folder (holds dataset.json)")
    p.add_argument("--out", required=True, help=out_help)


def add_worker_options(p, skip_validation: bool = True) -> None:
    """-np N, --skip-validation (when the command can skip it) and --no-progress."""
    p.add_argument("-np", "--num-processes", type=int, default=2, help="parallel worker processes (default 2)")
    if skip_validation:
        p.add_argument("--skip-validation", action="store_true", help="do not validate image contents first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_monitor_options(p) -> None:
    """--no-progress-bar and --tensorboard: how a training run can be watched (config fields progress_bar and
    tensorboard, which change nothing that is learnt)."""
    p.add_argument("--no-progress-bar", action="store_true",
                   help="no bar over each epoch's iterations (it is drawn only when stderr is a terminal)")
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
