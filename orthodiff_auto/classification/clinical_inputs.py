"""The clinical columns as a model's input: normalisation fitted on a model's training cases, missing values
imputed and flagged.

Numeric variable: standardised with the training cases' mean and standard deviation (a constant column gets
standard deviation 1); a missing value becomes 0 (the mean) and a missingness indicator column is 1.
Categorical variable: one-hot over its categories (the declared ones, else those seen in training, sorted); a
missing value or a category never seen is all zeros in the one-hot columns with the indicator at 1. So a case
without any clinical value still gets a well-defined input (zeros plus indicators), and the indicators let a
model learn what missingness itself says.

The encoding is fitted per fitted model on its own training cases (never on the cases it is validated on) and
saved with it (``to_dict``), so prediction encodes new cases exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from orthodiff_auto.data.clinical import ClinicalValues, ClinicalVariable

#: standard deviations below this count as a constant column
MIN_STD = 1e-8


@dataclass(frozen=True)
class ClinicalEncoding:
    """Per numeric variable its mean and standard deviation, per categorical one its categories."""

    numeric: dict[str, tuple[float, float]]  # name -> (mean, std), in declaration order
    categorical: dict[str, tuple[str, ...]]  # name -> categories, in declaration order

    @property
    def columns(self) -> list[str]:
        """Names of the encoded columns, in order."""
        cols = [c for name in self.numeric for c in (name, f"{name}_missing")]
        for name, cats in self.categorical.items():
            cols += [f"{name}={c}" for c in cats] + [f"{name}_missing"]
        return cols

    def encode(self, values: ClinicalValues) -> np.ndarray:
        """(N, len(columns)) float64 inputs of ``values`` (``data.clinical.clinical_values``)."""
        n = values.numeric.shape[0]
        parts = []
        for name, (mean, std) in self.numeric.items():
            col = values.numeric[:, values.numeric_names.index(name)] if name in values.numeric_names \
                else np.full(n, np.nan)
            missing = ~np.isfinite(col)
            parts += [np.where(missing, 0.0, (col - mean) / std), missing.astype(np.float64)]
        for name, cats in self.categorical.items():
            col = np.asarray(values.categorical.get(name, [""] * n), dtype=object)
            onehot = np.stack([col == c for c in cats], axis=1).astype(np.float64) if cats else np.zeros((n, 0))
            parts += list(onehot.T) + [(onehot.sum(1) == 0).astype(np.float64)]
        return np.stack(parts, axis=1) if parts else np.zeros((n, 0))

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": {k: list(v) for k, v in self.numeric.items()},
                "categorical": {k: list(v) for k, v in self.categorical.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ClinicalEncoding":
        return cls({k: (float(v[0]), float(v[1])) for k, v in d["numeric"].items()},
                   {k: tuple(str(c) for c in v) for k, v in d["categorical"].items()})


def fit_clinical_encoding(variables: Sequence[ClinicalVariable], values: ClinicalValues) -> ClinicalEncoding:
    """The encoding of ``variables`` fitted on ``values`` (a model's training cases)."""
    numeric: dict[str, tuple[float, float]] = {}
    categorical: dict[str, tuple[str, ...]] = {}
    for var in variables:
        if var.type == "numeric":
            col = values.numeric[:, values.numeric_names.index(var.name)]
            seen = col[np.isfinite(col)]
            mean = float(seen.mean()) if seen.size else 0.0
            std = float(seen.std()) if seen.size > 1 else 1.0
            numeric[var.name] = (mean, std if std > MIN_STD else 1.0)
        else:
            seen_cats = sorted({c for c in values.categorical[var.name] if c})
            categorical[var.name] = tuple(var.categories) if var.categories else tuple(seen_cats)
    return ClinicalEncoding(numeric, categorical)


__all__ = ["ClinicalEncoding", "fit_clinical_encoding"]
