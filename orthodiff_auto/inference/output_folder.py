"""A prediction folder belongs to one model: the one its ``prediction_provenance.json`` names by the model
folder's digest. A run with another model is refused (its outputs would be mixed with the first model's, or
skipped as "already done") unless it may overwrite, and then every output of the earlier run goes first: label
maps, probabilities, findings, QC pictures and the evaluation of them. A run that fails before it writes leaves
no folder it created.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Iterator

from orthodiff_auto.data.file_names import split_image_name
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.provenance import PROVENANCE_JSON
from orthodiff_auto.utils.lock import LOCK_NAME, folder_lock

# What predict_folder and evaluate write into a prediction folder besides label maps and probabilities.
RUN_FILES = ("findings.csv", "thresholds.json", PROVENANCE_JSON, PROVENANCE_JSON + ".unreadable")
RUN_FOLDERS = (".findings", "qc", "evaluation")


def previous_model(output_dir: Path) -> dict | None:
    """The latest run record of ``output_dir``'s provenance (None when there is none, or it is unreadable)."""
    try:
        runs = json.loads((output_dir / PROVENANCE_JSON).read_text())["runs"]
        return runs[-1] if runs and runs[-1].get("model_sha256") else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        return None


def claim_for_model(output_dir: Path, model_sha256: str, overwrite: bool, log=print) -> None:
    """Refuse (exit 2) to write into a folder of another model's predictions unless ``overwrite``; with it, remove
    that run's outputs first."""
    previous = previous_model(output_dir)
    if previous is None or previous["model_sha256"] == model_sha256:
        return
    if not overwrite:
        raise UserInputError(
            f"{output_dir}: holds the predictions of another model ({previous.get('model_folder', '?')}, "
            f"sha256 {previous['model_sha256'][:12]}...); choose a new output folder, or add --overwrite to replace "
            "every output of that run (label maps, findings, qc/, evaluation/)")
    removed = remove_prediction_outputs(output_dir)
    log(f"{output_dir}: removed {removed} outputs of the other model {previous.get('model_folder', '?')} "
        "(--overwrite)")


def remove_prediction_outputs(output_dir: Path) -> int:
    """Delete what a prediction run and its evaluation wrote into ``output_dir`` (other files stay); the count."""
    removed = 0
    for path in sorted(output_dir.iterdir()):
        ours = (path.name in RUN_FOLDERS and path.is_dir()) or (path.is_file() and (
            path.name in RUN_FILES or path.suffix == ".npz" or split_image_name(path.name) is not None
            or (path.suffix == ".json" and path.with_suffix(".npz").is_file())))
        if not ours:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed += 1
    return removed


@contextlib.contextmanager
def output_folder(output_dir: Path, shared: bool = False) -> Iterator[Path]:
    """``folder_lock`` on the output folder; a folder this call created is removed again when the block raises
    before anything but the lock was written (a failed start leaves no empty folder behind)."""
    created = not output_dir.exists()
    try:
        with folder_lock(output_dir, shared=shared):
            yield output_dir
    except BaseException:
        if created and output_dir.is_dir() and {p.name for p in output_dir.iterdir()} <= {LOCK_NAME}:
            shutil.rmtree(output_dir, ignore_errors=True)
        raise
