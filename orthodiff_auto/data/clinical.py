"""Clinical (tabular) variables: what dataset.json declares and how findings.csv holds them.

dataset.json may declare ``"clinical": [{"name": "age", "type": "numeric"}, {"name": "sex", "type":
"categorical", "categories": ["F", "M"]}]`` (``categories`` optional). Each declared variable is a column of
findings.csv and findingsTs.csv (after the findings and metadata columns, in any order); an empty cell is a
missing value, always allowed. Numeric cells must be finite numbers; categorical cells must be one of the
declared ``categories`` when they are given, any text otherwise. Nothing requires a dataset to declare any.

The tables keep the cells as text (missing = ""); ``clinical_values`` turns a table's columns into numbers
and categories for the models, which fit their own normalisation on their training cases.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from orthodiff_auto.errors import Problem, UserInputError

CLINICAL_TYPES = ("numeric", "categorical")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ClinicalVariable:
    """One declared clinical column: ``numeric`` (a float) or ``categorical`` (a label from ``categories``,
    or any text when ``categories`` is empty)."""

    name: str
    type: str
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.categories:
            d["categories"] = list(self.categories)
        return d


def parse_clinical_declaration(raw: Any, path: Path, reserved: Sequence[str],
                               problems: list[Problem]) -> tuple[ClinicalVariable, ...]:
    """dataset.json's ``clinical`` list -> variables; appends a Problem per defect (naming ``path``).
    ``reserved``: column names a variable may not take (case_id, findings, metadata)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(Problem(path, f"clinical must be a list of {{name, type}} objects, got {raw!r}"))
        return ()
    out: list[ClinicalVariable] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"name", "type", "categories"}:
            problems.append(Problem(path, f"clinical[{i}] must be an object with name, type and optionally "
                                          f"categories, got {item!r}"))
            continue
        name, kind, cats = item.get("name"), item.get("type"), item.get("categories", [])
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(Problem(path, f"clinical[{i}]: name must be a column name (a letter, then letters, "
                                          f"digits or _), got {name!r}"))
            continue
        if name in reserved or name in (v.name for v in out):
            problems.append(Problem(path, f"clinical[{i}]: name {name!r} is already a finding, metadata column, "
                                          "case_id or another clinical variable"))
            continue
        if kind not in CLINICAL_TYPES:
            problems.append(Problem(path, f"clinical {name}: type must be one of {list(CLINICAL_TYPES)}, got {kind!r}"))
            continue
        if kind == "numeric" and cats:
            problems.append(Problem(path, f"clinical {name}: categories are for categorical variables only"))
            continue
        if not isinstance(cats, list) or not all(isinstance(c, str) and c.strip() for c in cats) \
                or len(set(cats)) != len(cats):
            problems.append(Problem(path, f"clinical {name}: categories must be a list of distinct non-empty "
                                          f"texts, got {cats!r}"))
            continue
        out.append(ClinicalVariable(name, kind, tuple(c.strip() for c in cats)))
    return tuple(out)


def clinical_from_dicts(raw: Sequence[dict] | None) -> tuple[ClinicalVariable, ...]:
    """Variables from an already validated declaration (a preprocessed folder's dataset.json, a checkpoint)."""
    return tuple(ClinicalVariable(str(d["name"]), str(d["type"]), tuple(d.get("categories", ()))) for d in raw or ())


def check_clinical_cells(path: Path, cells: pd.DataFrame, case_ids: pd.Series,
                         variables: Sequence[ClinicalVariable]) -> list[Problem]:
    """Problems of the (stripped, text) clinical columns of a findings table: non-numbers in numeric columns,
    undeclared categories. Empty cells are missing values and always fine."""
    problems: list[Problem] = []
    for var in variables:
        col = cells[var.name]
        filled = col != ""
        if var.type == "numeric":
            numbers = pd.to_numeric(col.where(filled), errors="coerce").to_numpy(dtype=float)
            bad = filled & ~np.isfinite(numbers)
        elif var.categories:
            bad = filled & ~col.isin(var.categories)
        else:
            continue
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            examples = [f"{case_ids.iloc[r]}={col.iloc[r]!r}" for r in rows[:5]]
            want = "finite numbers" if var.type == "numeric" else f"one of {list(var.categories)}"
            problems.append(Problem(path, f"clinical column {var.name} must hold {want} or be empty; "
                                          f"{len(rows)} cells are not, e.g. {examples}"))
    return problems


@dataclass(frozen=True)
class ClinicalValues:
    """A table's clinical columns as model inputs: ``numeric`` (N, n_numeric) float64 with NaN where missing,
    ``categorical`` per categorical variable its N texts ("" where missing)."""

    numeric_names: tuple[str, ...]
    numeric: np.ndarray
    categorical: dict[str, list[str]]


def _cells(column: pd.Series) -> pd.Series:
    """Stripped text cells, "" where missing (a table read with pandas' NaN for empty cells, or with text)."""
    return column.map(lambda x: "" if pd.isna(x) else str(x).strip())


def clinical_values(table: pd.DataFrame | None, cases: Sequence[str],
                    variables: Sequence[ClinicalVariable]) -> ClinicalValues:
    """The clinical columns of ``table`` (a checked findings table) for ``cases``, in ``variables``' order.
    A missing table, column, row or cell is a missing value (prediction may come without clinical data)."""
    numeric_vars = [v for v in variables if v.type == "numeric"]
    numeric = np.full((len(cases), len(numeric_vars)), math.nan)
    categorical: dict[str, list[str]] = {v.name: [""] * len(cases) for v in variables if v.type == "categorical"}
    if table is not None:
        rows = [table.index.get_loc(c) if c in table.index else None for c in cases]
        for j, var in enumerate(numeric_vars):
            if var.name in table.columns:
                col = pd.to_numeric(_cells(table[var.name]).replace("", math.nan), errors="coerce")
                numeric[:, j] = [col.iloc[r] if r is not None else math.nan for r in rows]
        for name in categorical:
            if name in table.columns:
                col = _cells(table[name])
                categorical[name] = [col.iloc[r] if r is not None else "" for r in rows]
    return ClinicalValues(tuple(v.name for v in numeric_vars), numeric, categorical)


def read_clinical_table(path: Path, variables: Sequence[ClinicalVariable]) -> dict[str, dict[str, str]]:
    """{case_id: {variable: cell}} from a CSV with a ``case_id`` column and any of the declared clinical columns
    (other columns, e.g. a findingsTs.csv's findings, are ignored; a column left out is missing for every
    case). Raises UserInputError naming the file and the problem."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path}: cannot parse CSV ({str(e).strip().splitlines()[0]})") from None
    except OSError as e:
        raise UserInputError(f"{path}: cannot read ({e.strerror or e})") from None
    raw.columns = [c.strip() for c in raw.columns]
    if "case_id" not in raw.columns:
        raise UserInputError(f"{path}: missing the case_id column")
    ids = raw["case_id"].str.strip()
    if ids.duplicated().any():
        raise UserInputError(f"{path}: duplicate case ids {sorted(ids[ids.duplicated()].unique())[:5]}")
    known = [v for v in variables if v.name in raw.columns]
    cells = pd.DataFrame({v.name: raw[v.name].str.strip() for v in known}, index=raw.index)
    problems = check_clinical_cells(path, cells, ids, known)
    if problems:
        raise UserInputError(f"{problems[0].path}: {problems[0].message}")
    return {c: {v.name: cells[v.name].iloc[i] for v in known} for i, c in enumerate(ids)}


def clinical_summary(table: pd.DataFrame, variables: Sequence[ClinicalVariable]) -> str:
    """One line per dataset for validate_dataset's summary: per variable its range and mean (numeric) or its
    categories' shares (categorical), and the share of missing values."""
    values = clinical_values(table, list(table.index), variables)
    parts = []
    for var in variables:
        if var.type == "numeric":
            col = values.numeric[:, values.numeric_names.index(var.name)]
            seen = col[np.isfinite(col)]
            text = (f"{seen.min():g}-{seen.max():g} (mean {seen.mean():.3g})" if seen.size else "no values")
            missing = 1.0 - seen.size / max(len(col), 1)
        else:
            col = values.categorical[var.name]
            filled = [c for c in col if c]
            cats = sorted(set(filled))
            text = " ".join(f"{c} {filled.count(c) / len(filled):.0%}" for c in cats) if filled else "no values"
            missing = 1.0 - len(filled) / max(len(col), 1)
        parts.append(f"{var.name} {text}, {missing:.0%} missing")
    return "; ".join(parts)


def case_clinical_values(cells: Mapping[str, Any] | None, variables: Sequence[ClinicalVariable]) -> ClinicalValues:
    """One case's values from its cells (name -> text or number; absent or empty: missing)."""
    row = pd.DataFrame({v.name: [(cells or {}).get(v.name, "")] for v in variables}, index=pd.Index(["case"]))
    return clinical_values(row, ["case"], variables)


__all__ = ["CLINICAL_TYPES", "ClinicalValues", "ClinicalVariable", "case_clinical_values", "check_clinical_cells",
           "clinical_from_dicts", "clinical_summary", "clinical_values", "parse_clinical_declaration",
           "read_clinical_table"]
