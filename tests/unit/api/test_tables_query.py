"""What the SQL route's progress lines report (``api/control/tables.py``): DuckDB's percent,
the time elapsed and the ``ai_query`` requests answered."""

from __future__ import annotations

import asyncio

import duckdb
import pytest

from modelport.api.control.tables import _counted, _Statement
from modelport.batch.ai_query import EndpointInfo, Endpoints
from modelport.errors import TemporarilyUnavailable


def test_requests_answered_are_counted_and_reported() -> None:
    async def call(endpoint: str, body: bytes) -> bytes:
        if body == b"busy":
            raise TemporarilyUnavailable("busy")
        return b"{}"

    def describe(endpoint: str) -> EndpointInfo:
        raise AssertionError("not asked")

    statement = _Statement()
    endpoints = _counted(Endpoints(call, describe, asyncio.run), statement)

    async def three_calls() -> None:
        assert await endpoints.call("e", b"{}") == b"{}"
        with pytest.raises(TemporarilyUnavailable):
            await endpoints.call("e", b"busy")  # not answered: not counted
        await endpoints.call("e", b"{}")

    asyncio.run(three_calls())
    assert statement.answered == 2
    assert statement.progress()["ai_query_requests"] == 2


def test_no_percent_before_the_statement_runs_nor_after_its_connection_closed() -> None:
    statement = _Statement()
    assert statement.progress()["percent"] is None
    assert "ai_query_requests" not in statement.progress()
    con = duckdb.connect(":memory:")
    statement.running_on(con)
    assert statement.progress()["percent"] is None  # nothing running: DuckDB says -1
    con.close()
    assert statement.progress()["percent"] is None
    statement.interrupt()  # a closed connection: nothing to stop, no error
