"""One tiny dataset and one uninterrupted ``auto`` run for the whole reliability suite (the other commands'
inputs and references)."""

import pytest

from tests.reliability.harness import Suite


@pytest.fixture(scope="session")
def suite(tmp_path_factory) -> Suite:
    return Suite.build(tmp_path_factory.mktemp("reliability"))
