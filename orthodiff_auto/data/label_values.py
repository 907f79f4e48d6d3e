"""Label values and class indices: one convention for every stage.

dataset.json may declare any distinct non-negative values (e.g. {0, 1, 5}). The networks have one output
channel per declared label, and channel k is the k-th smallest value. Preprocessing stores the class index
(0 .. C-1) in its label arrays, so training's losses and metrics index channels directly; prediction maps the
channel back to the declared value. The ignore label keeps its value: it is larger than every class value, so
it never collides with an index.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def label_values(labels: Mapping[str, int]) -> tuple[int, ...]:
    """The declared values in channel order (ascending)."""
    return tuple(sorted(int(v) for v in labels.values()))


def to_class_indices(label: np.ndarray, values: Sequence[int], ignore_label: int | None = None) -> np.ndarray:
    """Declared label values -> class indices (the ignore label unchanged); ValueError naming any other value."""
    values = np.asarray(values, dtype=np.int64)
    if np.array_equal(values, np.arange(values.size)):
        return label  # consecutive values are their own indices
    lab = np.asarray(label).astype(np.int64, copy=False)
    index = np.searchsorted(values, lab).clip(0, values.size - 1)
    known = values[index] == lab
    if ignore_label is not None:
        is_ignore = lab == ignore_label
        index = np.where(is_ignore, ignore_label, index)
        known |= is_ignore
    if not known.all():
        raise ValueError(f"label values {sorted(set(np.unique(lab[~known]).tolist()))} are not declared "
                         f"(declared: {values.tolist()}, ignore: {ignore_label})")
    top = max(int(values.size - 1), ignore_label or 0)
    return index.astype(np.uint8 if top < 256 else np.uint16)


def to_label_values(indices: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Class indices -> declared label values (anything beyond the last index, the ignore label, unchanged):
    uint8, or uint16 when a value reaches 256."""
    values = np.asarray(values, dtype=np.int64)
    idx = np.asarray(indices)
    if idx.size and np.issubdtype(idx.dtype, np.unsignedinteger) and int(idx.max()) < values.size:
        out = values[idx]  # one lookup: what every exported label map takes
    else:
        idx = idx.astype(np.int64, copy=False)
        out = np.where(idx < values.size, values[np.minimum(idx, values.size - 1)], idx)
    return out.astype(np.uint8 if out.size == 0 or out.max() < 256 else np.uint16)


__all__ = ["label_values", "to_class_indices", "to_label_values"]
