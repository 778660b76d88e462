"""Usage tracking and inference tables on a real server: rows compared field by field after
a burst, and no answered query lost when the server is killed with -9 mid-burst. Each test
starts its own server, once on SQLite and once on PostgreSQL (``store_url``)."""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.tables.query import query, usage_summary
from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled

API = "/api/2.0/serving-endpoints"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GATEWAY = {
    "usage_tracking_config": {"enabled": True},
    "inference_table_config": {
        "catalog_name": "main",
        "schema_name": "serving",
        "table_name_prefix": "chat_log",
        "enabled": True,
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def _create(url: str, fake: FakeOpenAI, name: str) -> None:
    config = {"custom_provider_url": f"{fake.url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    entity = {
        "name": "gpt",
        "external_model": {
            "provider": "custom",
            "name": "m",
            "task": "llm/v1/chat",
            "custom_provider_config": config,
        },
    }
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as http:
        r = http.post(
            API, json={"name": name, "config": {"served_entities": [entity]}, "ai_gateway": GATEWAY}
        )
        assert r.status_code == 200, r.text
        wait_settled(http, name)


def _rows(root: Path, sql: str) -> list[dict[str, Any]]:
    columns, rows = query(sql, str(root))
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_usage_and_inference_rows_after_a_burst(tmp_path: Path, fake: FakeOpenAI, store_url: str) -> None:
    server = ServerProcess(tmp_path / "data", store=store_url).start()
    answered: dict[str, dict[str, Any]] = {}
    try:
        _create(server.url, fake, "logged")

        def one(i: int) -> None:
            body = {
                "messages": [{"role": "user", "content": f"question number {i}"}],
                "client_request_id": f"client-{i}",
                "usage_context": {"team": "blue" if i % 2 else "red"},
            }
            with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
                began = time.monotonic()
                r = http.post("/serving-endpoints/logged/invocations", json=body)
                waited_ms = (time.monotonic() - began) * 1000
            assert r.status_code == 200, r.text
            answered[r.headers["x-request-id"]] = {
                "i": i,
                "request": body,
                "response": r.json(),
                "waited_ms": waited_ms,
            }

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(40)))
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
            bad = http.post("/serving-endpoints/logged/invocations", json={"prompt": "no messages"})
        assert bad.status_code == 400
        _read_through_the_server(server)
    finally:
        server.stop()  # a clean stop flushes the spool into the tables
    root = tmp_path / "data" / "tables"
    usage = _rows(root, "SELECT * FROM system.serving.endpoint_usage ORDER BY request_time")
    assert len(usage) == 41
    by_id = {row["request_id"]: row for row in usage}
    assert set(answered) <= set(by_id)
    for rid, sent in answered.items():
        row = by_id[rid]
        used = sent["response"]["usage"]
        assert row["endpoint_name"] == "logged"
        assert row["served_entity_name"] == "gpt"
        assert row["requester"] == "admin"
        assert row["status_code"] == 200
        assert row["client_request_id"] == f"client-{sent['i']}"
        assert dict(row["usage_context"]) == {"team": "blue" if sent["i"] % 2 else "red"}
        assert (row["input_token_count"], row["output_token_count"]) == (
            used["prompt_tokens"],
            used["completion_tokens"],
        )
        assert row["tokens_estimated"] is False
        assert 0 <= row["latency_ms"] <= sent["waited_ms"] + 5  # the server's part of the wait
    errors = [row for row in usage if row["status_code"] == 400]
    assert len(errors) == 1 and errors[0]["tokens_estimated"] is True

    payload = _rows(root, "SELECT * FROM main.serving.chat_log_payload")
    assert len(payload) == 41
    rows = {row["databricks_request_id"]: row for row in payload}
    for rid, sent in answered.items():
        row = rows[rid]
        assert json.loads(row["request"]) == sent["request"]
        assert json.loads(row["response"]) == sent["response"]
        assert row["status_code"] == 200 and row["served_entity_name"] == "gpt"
        assert row["request_truncated"] is False and row["response_truncated"] is False
    failed = next(row for row in payload if row["status_code"] == 400)
    assert failed["error_code"] and json.loads(failed["response"])["error_code"] == failed["error_code"]

    summary = {row["endpoint"]: row for row in usage_summary(str(root), by="endpoint")}
    assert summary["logged"]["requests"] == 41 and summary["logged"]["errors"] == 1


def test_kill_9_mid_burst_loses_no_answered_query(tmp_path: Path, fake: FakeOpenAI, store_url: str) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, store=store_url).start()
    _create(server.url, fake, "durable")
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=5) as http:
            while not stop.is_set():
                try:
                    r = http.post(
                        "/serving-endpoints/durable/invocations",
                        json={"messages": [{"role": "user", "content": "keep going"}]},
                    )
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        answered.append(r.headers["x-request-id"])

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(answered) < 200:  # a flush or two happens meanwhile (one every 2 s)
        assert time.monotonic() < deadline, len(answered)
        time.sleep(0.05)
    server.kill()  # SIGKILL: no shutdown, no flush
    stop.set()
    for t in threads:
        t.join()
    killed_with = len(answered)

    logged_before = server.log_path.stat().st_size  # the restart appends to the same log
    restarted = ServerProcess(data, store=store_url).start()  # replays the spool at start
    restarted.stop()
    with restarted.log_path.open("rb") as log:
        log.seek(logged_before)
        replay = re.search(rb"replayed recorded queries into their tables rows=(\d+)", log.read())
    assert replay and int(replay[1]) > 0, "the restart replayed no rows from the spool"
    root = data / "tables"
    ids = [row["request_id"] for row in _rows(root, "SELECT request_id FROM system.serving.endpoint_usage")]
    assert len(ids) == len(set(ids)), "a replayed query was written twice"
    missing = set(answered) - set(ids)
    assert not missing, f"{len(missing)} of {killed_with} answered queries are missing from the usage table"
    payload_ids = [
        row["databricks_request_id"]
        for row in _rows(root, "SELECT databricks_request_id FROM main.serving.chat_log_payload")
    ]
    assert set(answered) <= set(payload_ids)
    assert len(payload_ids) == len(set(payload_ids))
    print(f"kill -9 after {killed_with} answered: {len(ids)} usage rows, {len(payload_ids)} payload rows")


def _read_through_the_server(server: ServerProcess) -> None:
    """The usage route, the SQL route and the CLI on the same rows, while the server runs."""
    from typer.testing import CliRunner

    from modelport.client.cli.main import app
    from modelport.client.sdk import ModelportClient

    with ModelportClient(server.url, ADMIN_TOKEN) as client:
        deadline = time.monotonic() + 20
        while True:  # the flusher writes every 2 s
            rows = {r["endpoint"]: r for r in client.usage("endpoint")}
            if rows.get("logged", {}).get("requests") == 41:
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.3)
        assert rows["logged"]["errors"] == 1
        result = client.query_tables(
            "SELECT count(*) AS n, sum(output_token_count) AS out FROM system.serving.endpoint_usage"
        )
        assert result["columns"] == ["n", "out"] and result["rows"][0][0] == 41
    env = {"MODELPORT_HOST": server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}
    out = CliRunner().invoke(app, ["usage", "--by", "endpoint"], env=env)
    assert out.exit_code == 0, out.output
    assert "logged" in out.stdout and "TOTAL" in out.stdout
    out = CliRunner().invoke(
        app, ["tables", "query", "SELECT status_code FROM main.serving.chat_log_payload LIMIT 1"], env=env
    )
    assert out.exit_code == 0 and "STATUS_CODE" in out.stdout
    out = CliRunner().invoke(app, ["tables", "query", "SELECT * FROM no.such.table"], env=env)
    assert out.exit_code != 0 and "Query failed" in out.output
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
        user = http.post("/api/2.0/preview/scim/v2/Users", json={"userName": "viewer@example.com"})
        assert user.status_code == 201
        token = http.post(
            "/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": "viewer@example.com"}
        ).json()["token_value"]
    # A user with no grant on the usage table totals only their own requests: none here.
    r = httpx.get(f"{server.url}/api/2.0/modelport/usage", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["rows"] == [], r.text
