"""findings.csv: one row per case, one 0/1 column per finding, optional site metadata, the declared clinical
columns (``data.clinical``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from orthodiff_auto.data.clinical import ClinicalVariable, check_clinical_cells
from orthodiff_auto.errors import Problem

METADATA_COLUMNS = ("site", "field_strength")


def read_findings_table(
    path: Path, findings: Sequence[str], expected_cases: Sequence[str] | None = None,
    clinical: Sequence[ClinicalVariable] = (), clinical_required: bool = True,
) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read and check a findings table.

    Returns (table, problems). The table is indexed by case_id; its finding columns come in the order of
    ``findings`` (dataset.json's order, never the CSV's), as int8 0/1, followed by any metadata columns, then
    the ``clinical`` columns as stripped text ("" = missing). ``clinical_required=False`` lets a declared
    clinical column be absent (all missing), as at prediction. The table is None when it cannot be used at all.
    """
    problems: list[Problem] = []
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        return None, [Problem(path, f"cannot parse CSV ({str(e).strip().splitlines()[0]})")]
    except OSError as e:
        return None, [Problem(path, f"cannot read ({e.strerror or e})")]
    raw.columns = [c.strip() for c in raw.columns]
    if "case_id" not in raw.columns:
        return None, [Problem(path, "missing the case_id column")]
    missing_cols = [f for f in findings if f not in raw.columns]
    if missing_cols:
        problems.append(Problem(path, f"missing finding columns {missing_cols}"))
    clinical_names = [v.name for v in clinical]
    unknown = [c for c in raw.columns
               if c != "case_id" and c not in findings and c not in METADATA_COLUMNS and c not in clinical_names]
    if unknown:
        declared = f"; clinical columns are {clinical_names}" if clinical_names else ""
        problems.append(Problem(path, f"unknown columns {unknown} (findings are {list(findings)}; metadata may be "
                                      f"{list(METADATA_COLUMNS)}{declared})"))
    lacking_clinical = [c for c in clinical_names if c not in raw.columns]
    if lacking_clinical and clinical_required:
        problems.append(Problem(path, f"missing clinical columns {lacking_clinical} (declared in dataset.json; "
                                      "leave a cell empty for a missing value)"))
    case_ids = raw["case_id"].str.strip()
    dup = sorted(case_ids[case_ids.duplicated()].unique())
    if dup:
        problems.append(Problem(path, f"duplicate case ids {dup}"))
    if (case_ids == "").any():
        problems.append(Problem(path, f"empty case_id in rows {[int(i) + 2 for i in np.flatnonzero(case_ids == '')]}"))
    if expected_cases is not None:
        expected = set(expected_cases)
        present = set(case_ids)
        lacking = sorted(expected - present)
        extra = sorted(present - expected - {""})
        if lacking:
            problems.append(Problem(path, f"no row for cases {_short(lacking)}"))
        if extra:
            problems.append(Problem(path, f"rows for cases without images {_short(extra)}"))
    present_findings = [f for f in findings if f in raw.columns]
    values = raw[present_findings].apply(lambda col: col.str.strip())
    bad = ~values.isin(["0", "1"])
    if bad.to_numpy().any():
        rows, cols = np.nonzero(bad.to_numpy())
        examples = [f"{case_ids.iloc[r]}/{present_findings[c]}={values.iat[r, c]!r}" for r, c in zip(rows[:5], cols[:5])]
        problems.append(Problem(path, f"finding values must be 0 or 1; {int(bad.to_numpy().sum())} are not, e.g. {examples}"))
    cells = pd.DataFrame({v.name: (raw[v.name].str.strip() if v.name in raw.columns else "") for v in clinical},
                         index=raw.index)
    problems.extend(check_clinical_cells(path, cells, case_ids, clinical))
    if problems:
        return None, problems
    table = values.astype(np.int8)
    table.index = pd.Index(case_ids, name="case_id")
    for col in METADATA_COLUMNS:
        if col in raw.columns:
            table[col] = raw[col].str.strip().to_numpy()
    for name in clinical_names:
        table[name] = cells[name].to_numpy()
    return table[list(findings) + [c for c in METADATA_COLUMNS if c in raw.columns] + clinical_names], []


def _short(items: list[str], n: int = 8) -> str:
    return str(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
