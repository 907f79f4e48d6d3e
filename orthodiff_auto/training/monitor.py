"""What a person watching a training run sees besides the log: the epoch's progress bar, the time left, and
TensorBoard scalars.

The bar is drawn on stderr only when stderr is a terminal (a redirected or piped log gets no carriage-return
noise) and the config allows it; TensorBoard is an optional extra (``pip install orthodiff_auto[tensorboard]``)
that is imported only when a run asks for it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from orthodiff_auto.errors import UserInputError

TENSORBOARD_FOLDER = "tensorboard"


def progress_bar_wanted(enabled: bool, stream: Any = None) -> bool:
    """True when the config allows a bar and ``stream`` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(enabled) and bool(getattr(stream, "isatty", lambda: False)())


def epoch_bar(epoch: int, iterations: int, enabled: bool) -> tqdm:
    """A bar over one epoch's iterations; it disappears when the epoch ends, leaving the log line (which numbers
    epochs from 0, as the bar does)."""
    return tqdm(total=iterations, desc=f"epoch {epoch}", unit="it", leave=False,
                disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``D d H:MM:SS`` beyond a day): what a person tailing a long run reads at a glance."""
    if not math.isfinite(seconds):
        return "?"
    total = max(0, int(round(seconds)))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def time_left(elapsed_s: float, epochs_done: int, epochs_left: int) -> float:
    """Seconds left at the mean wall time of the epochs this process ran (training, validation, checkpoints)."""
    if epochs_done <= 0:
        return float("nan")
    return elapsed_s / epochs_done * epochs_left


class ScalarWriter(Protocol):
    def add_scalar(self, tag: str, value: float, step: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def tensorboard_writer(output_dir: Path) -> ScalarWriter:
    """A TensorBoard ``SummaryWriter`` logging to ``output_dir/tensorboard``; a clear error when the optional
    ``tensorboard`` package is missing (torch's writer needs it)."""
    try:
        # imported only when asked for: TensorBoard is an optional extra, and this import is slow
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserInputError("tensorboard logging was asked for (--tensorboard or tensorboard=true) but the "
                             "'tensorboard' package is not installed: pip install 'orthodiff_auto[tensorboard]'"
                             ) from None
    return SummaryWriter(log_dir=str(Path(output_dir) / TENSORBOARD_FOLDER))


__all__ = ["TENSORBOARD_FOLDER", "ScalarWriter", "epoch_bar", "format_duration", "progress_bar_wanted",
           "tensorboard_writer", "time_left"]
