"""One server for the package's modules (``tests/agents/world.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agents.world import World, started_world


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from started_world(tmp_path_factory.mktemp("agents"))
