"""``prediction_provenance.json``: what made the files of a prediction folder, so that a result can be traced to
the exact model and settings months later.

One record per run into the folder (a rerun that resumes or overwrites adds one; earlier records stay, because
skipped cases keep the outputs an earlier run wrote): the model folder and the SHA-256 of its content (of every
file, listed, and one hash over them all), the folds, the checkpoint, TTA, the sliding window's step size, the
package and torch versions, the date (UTC) and the device. Written atomically when the run starts.
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from orthodiff_auto import __version__
from orthodiff_auto.utils.archive import sha256_of
from orthodiff_auto.utils.atomic import write_json_atomic

PROVENANCE_JSON = "prediction_provenance.json"
PROVENANCE_FORMAT = "orthodiff_auto.prediction_provenance/1"


def model_folder_digest(model_dir: Path) -> tuple[str, dict[str, str]]:
    """(one SHA-256 over the folder, {relative path: SHA-256} of every file): the folder hash is that of the sorted
    ``path sha256`` lines, so it changes when any file is added, removed, renamed or changed. Hidden files (a
    lock, a temporary file) are left out."""
    files = {p.relative_to(model_dir).as_posix(): sha256_of(p) for p in sorted(model_dir.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(model_dir).parts)}
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest(), files


def run_record(predictor, model_digest: tuple[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """The provenance of a run of ``predictor`` (an ``inference.predictor.Predictor``); ``model_digest``: what
    ``model_folder_digest`` returned for its model folder, when computed already."""
    digest, files = model_digest or model_folder_digest(predictor.model_dir)
    folds = predictor.folds
    if folds is None:  # every fold the model folder lists
        names = {Path(c).stem for choice in predictor.description.segmentation.values()
                 for stage in choice.stages() for c in stage.checkpoints}  # an ensemble's: its members'
        folds = sorted(int(n.removeprefix("fold_")) for n in names if n.removeprefix("fold_").isdigit())
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_folder": str(predictor.model_dir.resolve()),
        "model_sha256": digest,
        "model_files": files,
        "folds": folds,
        "checkpoint": predictor.checkpoint,
        "tta": predictor.tta,
        "step_size": round(1.0 - predictor.overlap, 6),
        "device": str(predictor.device),
        "orthodiff_auto_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def record_prediction_run(output_dir: Path, predictor,
                          model_digest: tuple[str, dict[str, str]] | None = None) -> Path:
    """Add this run's record to ``output_dir/prediction_provenance.json`` (atomically); an unreadable earlier
    file is kept aside as ``prediction_provenance.json.unreadable`` rather than lost."""
    path = output_dir / PROVENANCE_JSON
    runs: list = []
    if path.is_file():
        try:
            runs = list(json.loads(path.read_text())["runs"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            path.replace(path.with_name(PROVENANCE_JSON + ".unreadable"))
    runs.append(run_record(predictor, model_digest))
    write_json_atomic(path, {"format": PROVENANCE_FORMAT, "runs": runs})
    return path


__all__ = ["PROVENANCE_JSON", "model_folder_digest", "record_prediction_run", "run_record"]
