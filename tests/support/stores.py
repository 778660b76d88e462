"""The metadata stores a real-server test runs on: a fresh PostgreSQL database per server, and
the bytes a store holds (for the tests that look for what must not be stored in clear).

PostgreSQL is the one on 127.0.0.1:5432 with trust auth (``MODELPORT_TEST_PG`` names another
admin URL). Without it a test skips, except in CI (``CI`` set), where that is an error: the
PostgreSQL runs of the suites must never disappear silently.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.serverproc import ServerProcess

__all__ = ["PG_ADMIN_URL", "STORES", "fresh_pg_database", "server_on_each_store", "stored_bytes"]

PG_ADMIN_URL = os.environ.get("MODELPORT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

#: The stores the storage-relevant suites run on (the ``server`` fixture's parameters).
STORES = ("sqlite", "postgresql")


def _connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=3
    )


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped (connections and all) at exit."""
    try:
        admin = _connect(PG_ADMIN_URL)
    except Exception as exc:  # no server here
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    name = f"modelport_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def server_on_each_store(request: pytest.FixtureRequest) -> ServerProcess:
    """The session server (``sqlite_server``, ``postgresql_server``) of the store that
    ``request.param`` names. A suite where storage matters runs on each store with::

        @pytest.fixture(scope="module", params=STORES)
        def server(request: pytest.FixtureRequest) -> ServerProcess:
            return server_on_each_store(request)

    and a test that does not touch the store stays on one with
    ``@pytest.mark.parametrize("server", ["sqlite"], indirect=True)``."""
    server: ServerProcess = request.getfixturevalue(f"{request.param}_server")
    return server


def stored_bytes(server: ServerProcess) -> bytes:
    """Everything the server's metadata store holds: the SQLite files (database, WAL) of its
    data directory, or every table of its PostgreSQL database in ``COPY`` text form."""
    if not (server.store or "").startswith("postgresql"):
        files = sorted(server.data_dir.glob("modelport.db*"))
        assert server.data_dir / "modelport.db" in files
        return b"".join(path.read_bytes() for path in files)
    out = io.BytesIO()
    with _connect(server.store or "") as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        assert tables, "the PostgreSQL store has no tables"
        for table in tables:
            with conn.cursor().copy(f'COPY "{table}" TO STDOUT') as copy:
                for block in copy:
                    out.write(bytes(block))
    return out.getvalue()
