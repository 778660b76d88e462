"""Fixtures of the table tests; their helpers (reading a Delta table back, starting a recorder
process) are in :mod:`tests.support.tables`."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[str, str]:
    """(tables root, spool folder) in a fresh temporary folder."""
    return str(tmp_path / "tables"), str(tmp_path / "spool")
