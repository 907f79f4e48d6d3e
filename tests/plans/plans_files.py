"""Plans files written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans


def assert_load_rejects(d: dict, folder: Path, message: str) -> None:
    """Plans.load of ``d`` written to ``folder/plans.json`` raises a UserInputError naming the file and ``message``."""
    path = Path(folder) / "plans.json"
    path.write_text(json.dumps(d))
    with pytest.raises(UserInputError) as e:
        Plans.load(path)
    assert str(path) in str(e.value) and message in str(e.value)
