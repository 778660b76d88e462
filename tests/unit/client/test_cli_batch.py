"""``modelport batch ...`` through typer's CliRunner against a MockTransport: the request a run
sends (a file uploaded first, or a table named), following a job to its summary, and the
progress line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelport.client.cli import batch
from modelport.client.cli.batch import Progress, summary
from modelport.client.cli.main import app
from modelport.client.sdk import ModelportClient

runner = CliRunner()
JOBS = "/api/2.0/modelport/batch/jobs"


def _job(status: str, done: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": "bjob-1",
        "status": status,
        "owner": "alice",
        "endpoint": "m",
        "input": {"name": "t.csv", "fingerprint": "sha256:x"},
        "output_table": "main.s.out",
        "rows": {"total": 10, "done": done, "failed": 2 if done else 0},
        "top_errors": [{"message": "boom", "count": 2}] if done else [],
        "error": None,
        "created_at": 1,
        **extra,
    }


class Server:
    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.states = states
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/serving-endpoints/files":
            return httpx.Response(200, json={"id": "file-1", "object": "file"})
        if request.method == "POST" and request.url.path == JOBS:
            return httpx.Response(200, json={**self.states[0], "action": "created"})
        if request.url.path == f"{JOBS}/bjob-1":
            return httpx.Response(200, json=self.states.pop(0) if len(self.states) > 1 else self.states[0])
        return httpx.Response(404, json={"error_code": "NOT_FOUND", "message": "no"})

    def invoke(self, *args: str) -> Any:
        client = ModelportClient("http://modelport.test", "t", transport=httpx.MockTransport(self.handle))
        return runner.invoke(app, list(args), obj=lambda host, token: client)


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "POLL_SECONDS", 0.0)


def test_a_file_is_uploaded_and_the_job_followed_to_its_summary(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a\n1\n")
    server = Server([_job("queued", 0), _job("running", 4), _job("completed", 10)])
    result = server.invoke("batch", "run", "--endpoint", "m", "--input", str(path), "--output", "main.s.out")
    assert result.exit_code == 0, result.output
    created = next(r for r in server.requests if r.method == "POST" and r.url.path == JOBS)
    assert json.loads(created.content) == {
        "endpoint": "m",
        "input": {"file_id": "file-1"},
        "output_table": "main.s.out",
    }
    assert "10 of 10 (8 answered, 2 failed)" in result.stdout
    assert "2  boom" in result.stdout


def test_a_table_is_named_and_detach_prints_the_id() -> None:
    server = Server([_job("queued", 0)])
    result = server.invoke(
        "batch",
        "run",
        "--endpoint",
        "m",
        "--input",
        "main.a.t",
        "--output",
        "main.s.out",
        "--column",
        "x",
        "--detach",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "bjob-1"
    body = json.loads(server.requests[-1].content)
    assert (body["input"], body["columns"]) == ({"table": "main.a.t"}, ["x"])


def test_a_failed_job_exits_1_and_says_why() -> None:
    server = Server([_job("failed", 0, error="PERMISSION_DENIED: no")])
    result = server.invoke("batch", "run", "--endpoint", "m", "--input", "main.a.t", "--output", "main.s.out")
    assert result.exit_code == 1
    assert "PERMISSION_DENIED: no" in result.stdout


def test_an_input_that_is_neither_a_file_nor_a_table_is_refused() -> None:
    result = Server([]).invoke("batch", "run", "--endpoint", "m", "--input", "nope.csv", "--output", "a.b.c")
    assert result.exit_code == 1
    assert "INVALID_PARAMETER_VALUE" in result.output


def test_the_progress_line_says_rate_and_eta() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = Progress(lines.append, tty=False, clock=lambda: now[0], every=5.0)
    progress.show(_job("running", 0) | {"rows": {"total": 1000, "done": 0, "failed": 0}})
    now[0] = 2.0
    progress.show(_job("running", 0) | {"rows": {"total": 1000, "done": 200, "failed": 0}})  # within 5 s
    now[0] = 10.0
    progress.show(_job("running", 0) | {"rows": {"total": 1000, "done": 500, "failed": 3}})
    assert lines == [
        "0/1,000 rows   0.0%  0 rows/s  ETA ?\n",
        "500/1,000 rows  50.0%  50 rows/s  ETA 0:00:10  3 failed\n",
    ]


def test_on_a_terminal_the_line_is_redrawn_with_a_bar() -> None:
    written: list[str] = []
    progress = Progress(written.append, tty=True, clock=lambda: 0.0)
    progress.show(_job("running", 0) | {"rows": {"total": 4, "done": 2, "failed": 0}})
    progress.end_line()
    assert written == ["\r[############............] 2/4 rows  50.0%  0 rows/s  ETA ?", "\n"]


def test_the_summary_names_the_output_and_the_errors() -> None:
    text = summary(_job("completed", 10))
    assert "main.s.out" in text and "10 of 10 (8 answered, 2 failed)" in text and "boom" in text
