"""Class probabilities on the view's preprocessed grid: what a segmentation fold's validation keeps of each case
for model selection (nnU-Net's ``--npz``), and what an ensemble of two configurations averages.

Every configuration of a view is brought to one grid, the view's own (3d_fullres's): 2d and the cascade's second
stage predict on it already; 3d_lowres's scores are resampled linearly to it, as its labels are in prediction
(``cascade.stage_one_on_grid``), and the softmax is taken there. A fold's validation writes each case's
probabilities as ``<run>/fold_k/validation_probabilities/<case>.npz`` (``probabilities``: float16, channel-z-y-x,
compressed; written to a temporary file and renamed), so ``find_best_configuration`` can score the average of
two configurations' probabilities against the preprocessed reference labels without predicting again.

Values below ``PROBABILITY_FLOOR`` (0.01) are stored as 0: the float16 noise of a network's near-zero
probabilities left the files barely compressible (1.1-1.2x: about 15 MB per knee case of 12 classes on a
33x150x150 grid), the floor makes them 4-12x smaller. A voxel's most probable class is never changed by it (its
probability is at least 1/C, above the floor), and that of two members' average only where its two best classes
are within half the floor (measured: at most 3 voxels of about 700,000 per knee case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from orthodiff_auto.plans.schema import ViewPlan
from orthodiff_auto.preprocessing.resampling_torch import resample_tensor
from orthodiff_auto.utils.atomic import atomic_path

VALIDATION_PROBABILITIES = "validation_probabilities"
PROBABILITY_FLOOR = 0.01


def scores_on_view_grid(scores: np.ndarray | torch.Tensor, shape: Sequence[int], own: ViewPlan,
                        view: ViewPlan) -> torch.Tensor:
    """A configuration's class scores (C, *its grid) on the view's preprocessed grid ``shape`` (both grids span
    the same cropped region): unchanged where the configuration predicts on the view's grid, else resampled
    linearly (``own``: the configuration's plan, ``view``: the view's), on the scores' device."""
    scores = torch.as_tensor(scores).float()
    if tuple(own.target_spacing) == tuple(view.target_spacing) and tuple(scores.shape[1:]) == tuple(shape):
        return scores
    return resample_tensor(scores, shape, own.target_spacing, view.target_spacing, view.resampling, order=1)


def probabilities_on_view_grid(scores: np.ndarray | torch.Tensor, shape: Sequence[int], own: ViewPlan,
                               view: ViewPlan) -> np.ndarray:
    """The softmax of ``scores_on_view_grid``: (C, *shape) float32 on the host."""
    return torch.softmax(scores_on_view_grid(scores, shape, own, view), 0).cpu().numpy()


def probabilities_path(folder: Path | str, case_id: str) -> Path:
    return Path(folder) / f"{case_id}.npz"


def write_probabilities(folder: Path | str, case_id: str, probabilities: np.ndarray) -> Path:
    """Store a case's probabilities (C, z, y, x) as float16, values below the floor as 0 (``PROBABILITY_FLOOR``,
    lowered to half of 1/C for more than 50 classes, so the most probable class stays), compressed; atomically
    (temporary file, rename)."""
    stored = np.array(probabilities, dtype=np.float16)  # a copy: the caller's array stays as it was
    stored[stored < min(PROBABILITY_FLOOR, 0.5 / stored.shape[0])] = 0
    target = probabilities_path(folder, case_id)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:  # a file object: numpy would append .npz to the temporary's name
            np.savez_compressed(f, probabilities=stored)
    return target


def read_probabilities(folder: Path | str, case_id: str) -> np.ndarray:
    """A case's stored probabilities as float32 (C, z, y, x)."""
    with np.load(probabilities_path(folder, case_id)) as z:
        return z["probabilities"].astype(np.float32)


__all__ = ["PROBABILITY_FLOOR", "VALIDATION_PROBABILITIES", "probabilities_on_view_grid", "probabilities_path", "read_probabilities",
           "scores_on_view_grid", "write_probabilities"]
