"""Arguments that several commands share. Not a command itself: the CLI skips modules whose name starts with
an underscore."""

from __future__ import annotations

BUDGET_HELP = ("memory budget: 'gpu:<GB>' (e.g. gpu:8), 'gpu' (the detected GPU's memory, else 8 GB as nnU-Net) "
               "or 'cpu' (a small plan that trains in minutes on 2 cores); default: gpu")


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
