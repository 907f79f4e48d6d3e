"""A scan's class probabilities as ``predict_folder --save-probabilities`` writes them, for users who ensemble,
calibrate or study uncertainty: ``<name>.npz`` beside the segmentation ``<name>.<ext>``, and ``<name>.json``
saying how to read it.

The npz holds one array, ``probabilities``: float16, (channels, z, y, x) on the input image's own voxel grid (the
array order of ``SimpleITK.GetArrayFromImage``), each voxel's channels summing to 1 up to float16 rounding; the
segmentation is their argmax mapped to label values. The JSON gives the geometry in SimpleITK's order (spacing,
origin and direction as ``GetSpacing``, ``GetOrigin``, ``GetDirection`` return them), so a channel becomes an image
with ``GetImageFromArray`` and those three setters, and the channel order: channel i is the i-th smallest label
value of dataset.json, named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from orthodiff_auto.data.file_names import split_image_name
from orthodiff_auto.data.image_io import ImageGeometry
from orthodiff_auto.data.label_values import label_values
from orthodiff_auto.utils.atomic import atomic_path, write_json_atomic

PROBABILITIES_FORMAT = "orthodiff_auto.probabilities/1"
PROBABILITIES_KEY = "probabilities"


def probability_paths(segmentation: Path) -> tuple[Path, Path]:
    """(``<name>.npz``, ``<name>.json``) beside a segmentation ``<name>.<ext>``."""
    name = (split_image_name(segmentation.name) or (segmentation.name, ""))[0]
    return segmentation.with_name(f"{name}.npz"), segmentation.with_name(f"{name}.json")


def write_probabilities(segmentation: Path, probabilities: np.ndarray, geometry: ImageGeometry,
                        labels: Mapping[str, int]) -> tuple[Path, Path]:
    """Write the (C, z, y, x) ``probabilities`` of the scan whose segmentation is ``segmentation`` (each file
    atomically, the JSON last, so a present JSON means a complete pair)."""
    values = label_values(labels)
    if probabilities.shape != (len(values), *geometry.shape):
        raise ValueError(f"probabilities of shape {probabilities.shape} for {len(values)} labels on a "
                         f"{geometry.shape} grid")
    npz, description = probability_paths(segmentation)
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:  # a file object: numpy would append .npz to a name
        np.savez_compressed(f, **{PROBABILITIES_KEY: probabilities.astype(np.float16)})
    names = {int(v): name for name, v in labels.items()}
    write_json_atomic(description, {
        "format": PROBABILITIES_FORMAT,
        "file": npz.name,
        "array": PROBABILITIES_KEY,
        "dtype": "float16",
        "axes": ["channel", "z", "y", "x"],
        "shape": [len(values), *geometry.shape],
        "segmentation": segmentation.name,
        # SimpleITK's order (x, y, z), as GetSpacing / GetOrigin / GetDirection return them
        "spacing": list(reversed(geometry.spacing)),
        "origin": list(geometry.origin),
        "direction": list(geometry.direction),
        "channels": [{"channel": i, "label_value": v, "label_name": names[v]} for i, v in enumerate(values)],
    })
    return npz, description


def read_probabilities(description: Path) -> tuple[np.ndarray, dict]:
    """(probabilities, description) of a pair written by ``write_probabilities``, from its JSON's path."""
    meta = json.loads(Path(description).read_text())
    with np.load(Path(description).with_name(meta["file"])) as data:
        return data[meta["array"]], meta


__all__ = ["PROBABILITIES_FORMAT", "probability_paths", "read_probabilities", "write_probabilities"]
