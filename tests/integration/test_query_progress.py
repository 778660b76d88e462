"""Progress of a long SQL statement: ``POST /api/2.0/modelport/tables/query`` with
``Accept: application/x-ndjson`` and the ``modelport tables query`` progress line, on the
session's real server.

The slow statement is DuckDB's own work (a cross join of 240M rows with a count: about two
seconds on two cores), so no endpoint is needed; the progress lines come every half second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from modelport.client.cli.main import app
from tests.serverproc import ADMIN_TOKEN, ServerProcess

ROUTE = "/api/2.0/modelport/tables/query"
NDJSON = "application/x-ndjson"
JOIN = "FROM range(120000) a, range(2000) b WHERE (a.range * 31 + b.range) % 7 = 3"
SLOW = f"SELECT count(*) AS n {JOIN}"
COUNT = 34_285_715  # what SLOW counts
FAILS_LATE = f"SELECT error('boom after ' || n) AS e FROM (SELECT count(*) AS n {JOIN})"


def _lines(http: httpx.Client, sql: str) -> tuple[httpx.Response, list[dict[str, Any]]]:
    with http.stream("POST", ROUTE, json={"sql": sql}, headers={"Accept": NDJSON}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    return response, lines


def test_a_long_statement_streams_progress_then_its_result(http: httpx.Client) -> None:
    response, lines = _lines(http, SLOW)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(NDJSON)
    *progress, last = lines
    assert last == {"columns": ["n"], "rows": [[COUNT]], "truncated": False}
    assert progress and all(set(p) == {"progress"} for p in progress)
    reports = [p["progress"] for p in progress]
    elapsed = [r["elapsed_s"] for r in reports]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 0.5
    percents = [r["percent"] for r in reports if r["percent"] is not None]
    assert percents and all(0 <= p <= 100 for p in percents)  # DuckDB's query_progress()
    assert all("ai_query_requests" not in r for r in reports)  # no ai_query in this statement


def test_an_error_after_the_lines_began_is_the_last_line(http: httpx.Client) -> None:
    response, lines = _lines(http, FAILS_LATE)
    assert response.status_code == 200  # already sent with the first progress line
    *progress, last = lines
    assert progress and all("progress" in p for p in progress)
    assert last["error_code"] == "INVALID_PARAMETER_VALUE"
    assert f"boom after {COUNT}" in last["message"]


def test_a_quick_statement_answers_one_line_and_a_quick_error_keeps_its_status(
    http: httpx.Client,
) -> None:
    response, lines = _lines(http, "SELECT 42 AS answer")
    assert response.status_code == 200
    assert lines == [{"columns": ["answer"], "rows": [[42]], "truncated": False}]
    with http.stream(
        "POST", ROUTE, json={"sql": "SELECT * FROM no.such.table"}, headers={"Accept": NDJSON}
    ) as response:
        response.read()
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_the_json_answer_is_unchanged(http: httpx.Client) -> None:
    r = http.post(ROUTE, json={"sql": "SELECT 42 AS answer"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"columns": ["answer"], "rows": [[42]], "truncated": False}


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_client_that_leaves_interrupts_the_statement(http: httpx.Client, server: ServerProcess) -> None:
    huge = "SELECT count(*) FROM range(3000000) a, range(2000) b WHERE (a.range * 31 + b.range) % 7 = 3"
    with http.stream("POST", ROUTE, json={"sql": huge}, headers={"Accept": NDJSON}) as response:
        lines = response.iter_lines()
        assert "progress" in json.loads(next(lines))
        assert "progress" in json.loads(next(lines))  # DuckDB is at work (minutes of it)
    assert server.proc is not None
    time.sleep(0.5)  # the next progress line finds the client gone
    before = _cpu_seconds(server.proc.pid)
    time.sleep(1.5)
    assert _cpu_seconds(server.proc.pid) - before < 0.5  # still running, it would take ~1.5 s a core


def test_cli_prints_progress_lines_on_stderr_when_it_is_not_a_terminal(server: ServerProcess) -> None:
    env = {**os.environ, "MODELPORT_HOST": server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "modelport", "tables", "query", SLOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["N", str(COUNT)]
    progress = done.stderr.splitlines()
    assert progress and all(line.startswith("query running: ") for line in progress)
    assert "\r" not in done.stderr and "\x1b" not in done.stderr  # plain lines off a terminal
    assert " s elapsed" in progress[0]


def test_cli_quiet_shows_no_progress(server: ServerProcess) -> None:
    env = {"MODELPORT_HOST": server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}
    out = CliRunner().invoke(app, ["tables", "query", "--quiet", "-o", "json", SLOW], env=env)
    assert out.exit_code == 0, out.output
    assert out.stderr == ""
    assert json.loads(out.stdout)["rows"] == [[COUNT]]
