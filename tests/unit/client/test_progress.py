"""The ``tables query`` progress line (``client/cli/progress.py``) and the SDK's JSON-lines
answer of the SQL route (``ModelportClient.query_tables(on_progress=...)``)."""

from __future__ import annotations

import io

import pytest

from modelport.client.cli.progress import ProgressLine, describe
from modelport.errors import InvalidParameterValue
from tests.unit.client.conftest import FakeServer

ROUTE = "/api/2.0/modelport/tables/query"
RESULT = {"columns": ["n"], "rows": [[3]], "truncated": False}


def _report(elapsed: float, percent: float | None = 40.0, **more: int) -> dict[str, object]:
    return {"percent": percent, "elapsed_s": elapsed, **more}


def test_describe_says_percent_elapsed_and_requests_answered() -> None:
    assert describe(_report(3.14, 42.26, ai_query_requests=7)) == (
        "query running: 42% done, 3.1 s elapsed, 7 ai_query requests answered"
    )
    assert describe(_report(2.0, None)) == "query running: 2.0 s elapsed"


def test_a_terminal_line_is_rewritten_in_place_and_erased_at_the_end() -> None:
    out = io.StringIO()
    with ProgressLine(out, tty=True) as line:
        line.update(_report(0.5))  # under a second: nothing
        line.update(_report(1.0, 10.0))
        line.update(_report(1.5, 20.0))
    erase = "\r\x1b[2K"
    assert out.getvalue() == (
        f"{erase}query running: 10% done, 1.0 s elapsed{erase}query running: 20% done, 1.5 s elapsed{erase}"
    )


def test_off_a_terminal_a_plain_line_every_five_seconds() -> None:
    out = io.StringIO()
    with ProgressLine(out, tty=False) as line:
        for tenths in range(5, 125, 5):  # reports every half second up to 12 s
            line.update(_report(tenths / 10))
    assert out.getvalue().splitlines() == [
        "query running: 40% done, 1.0 s elapsed",
        "query running: 40% done, 6.0 s elapsed",
        "query running: 40% done, 11.0 s elapsed",
    ]


def test_a_quick_query_shows_nothing() -> None:
    out = io.StringIO()
    with ProgressLine(out, tty=True) as line:
        line.update(_report(0.5))
    assert out.getvalue() == ""


def _ndjson(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def test_sdk_hands_progress_over_and_returns_the_last_line() -> None:
    fake = FakeServer()
    progress = '{"progress": {"percent": 50.0, "elapsed_s": 0.5}}'
    fake.on("POST", ROUTE, (200, _ndjson(progress, '{"columns": ["n"], "rows": [[3]], "truncated": false}')))
    seen: list[dict[str, object]] = []
    assert fake.client().query_tables("SELECT 3 AS n", on_progress=seen.append) == RESULT
    assert seen == [{"percent": 50.0, "elapsed_s": 0.5}]
    assert fake.requests[-1].headers["accept"] == "application/x-ndjson"
    assert fake.body() == {"sql": "SELECT 3 AS n"}


def test_sdk_raises_an_error_line_as_its_class() -> None:
    fake = FakeServer()
    error = '{"error_code": "INVALID_PARAMETER_VALUE", "message": "Query failed: boom"}'
    fake.on("POST", ROUTE, (200, _ndjson('{"progress": {"percent": null, "elapsed_s": 0.5}}', error)))
    with pytest.raises(InvalidParameterValue, match="Query failed: boom"):
        fake.client().query_tables("SELECT 1", on_progress=lambda _: None)


def test_sdk_raises_an_error_answer_before_the_lines() -> None:
    fake = FakeServer()
    fake.on("POST", ROUTE, (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "no such table"}))
    with pytest.raises(InvalidParameterValue, match="no such table"):
        fake.client().query_tables("SELECT * FROM a.b.c", on_progress=lambda _: None)


def test_sdk_without_on_progress_asks_for_json() -> None:
    fake = FakeServer()
    fake.on("POST", ROUTE, (200, RESULT))
    assert fake.client().query_tables("SELECT 3 AS n") == RESULT
    assert fake.requests[-1].headers["accept"] == "application/json"
