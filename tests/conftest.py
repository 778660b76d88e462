"""Fixtures shared by all suites: database URLs (SQLite and PostgreSQL); how ``make test``
splits the suite over pytest-xdist workers (``--dist loadgroup``: see tests/support/parallel.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stores import fresh_pg_database


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist loadgroup`` (``make test``), and under ``load`` (plain ``pytest -n N``): whole
    files, the packages of ``PACKAGE_UNITS`` and ``xdist_group`` marks as units of work, heaviest
    first. This suite never hands single tests to workers: a file's tests share its servers, and
    some build on each other in file order. Other ``--dist`` modes as xdist has them."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from tests.support.parallel import SuiteScheduling

    return SuiteScheduling(config, log)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))
