"""What a preprocessed folder holds beside the arrays, as the stages after preprocessing read it: its
``dataset.json`` (the raw dataset's description plus ``raw_dataset``, the raw folder's path) and its
``findings.csv`` (the validated training findings), both written by ``preprocessing.stages``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from orthodiff_auto.data.clinical import clinical_from_dicts
from orthodiff_auto.data.findings import read_findings_table
from orthodiff_auto.errors import DatasetError, Problem, UserInputError


def read_preprocessed_description(preprocessed_dir: Path) -> dict[str, Any]:
    """The preprocessed folder's dataset.json: the raw dataset's description plus ``raw_dataset``."""
    path = preprocessed_dir / "dataset.json"
    if not path.is_file():
        raise UserInputError(f"{path}: missing — run `orthodiff plan_and_preprocess` first")
    return json.loads(path.read_text())


def load_findings(preprocessed_dir: Path, planned_findings: Sequence[str], cases: Sequence[str]):
    """(findings in dataset.json's order, table indexed by case id) of the preprocessed folder's findings.csv,
    with a row for every one of ``cases``; ``planned_findings`` are the plans' (``Plans.findings``).

    UserInputError (exit 2) when the dataset has no findings, the plans are stale, or findings.csv is missing
    or bad (every problem listed, each naming the file).
    """
    description = read_preprocessed_description(preprocessed_dir)
    findings = [str(f) for f in (description.get("findings") or [])]
    if not findings:
        raise UserInputError(f"{preprocessed_dir / 'dataset.json'}: the dataset declares no findings; "
                             "classification needs a 'findings' list and findings.csv")
    if tuple(findings) != tuple(planned_findings):
        raise UserInputError(f"{preprocessed_dir / 'plans.json'}: planned for findings {list(planned_findings)}, but "
                             f"dataset.json declares {findings}; re-run `orthodiff plan_and_preprocess`")
    path = preprocessed_dir / "findings.csv"
    if not path.is_file():
        raise UserInputError(f"{path}: missing — `orthodiff preprocess` copies the raw dataset's findings.csv there")
    table, problems = read_findings_table(path, findings, clinical=clinical_from_dicts(description.get("clinical")))
    if problems or table is None:
        raise DatasetError(problems or [Problem(path, "unusable findings table")])
    lacking = sorted(set(cases) - set(table.index))
    if lacking:
        more = f" and {len(lacking) - 8} more" if len(lacking) > 8 else ""
        raise DatasetError([Problem(path, f"no row for training cases {lacking[:8]}{more}")])
    return findings, table


__all__ = ["load_findings", "read_preprocessed_description"]
