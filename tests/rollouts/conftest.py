"""One server for the package's modules (``tests/rollouts/world.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rollouts.world import World, started_world


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from started_world(tmp_path_factory.mktemp("rollouts"))
