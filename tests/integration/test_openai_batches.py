"""Bulk jobs end to end: OpenAI's Files and Batch APIs on a real ``modelport serve``, called with
the official ``openai`` client (``base_url=<host>/serving-endpoints``), each request answered
by an external chat endpoint on the loopback OpenAI fake, through the data plane as the job's
owner (so ``CAN_QUERY`` applies line by line).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from modelport.tables.query import query
from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.principals import create_user, obo_token
from tests.support.providers import create_external

CHAT = "batch-chat"
PERMS = "/api/2.0/permissions/serving-endpoints"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    started = FakeOpenAI().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def batch_server(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("modelport-batches"), env={"MODELPORT_OPENAI_BASE_URL": f"{fake.url}/v1"}
    ).start()
    try:
        with httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            ext = {
                "provider": "openai",
                "name": "gpt-4o-mini",
                "task": "llm/v1/chat",
                "openai_config": {"openai_api_key_plaintext": API_KEY},
            }
            create_external(http, CHAT, ext)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def admin_http(batch_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=batch_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        yield http


def _client(server: ServerProcess, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/serving-endpoints", api_key=token, max_retries=0)


@pytest.fixture(scope="module")
def users(batch_server: ServerProcess, admin_http: httpx.Client) -> dict[str, openai.OpenAI]:
    """``alice`` may query the chat endpoint, ``carol`` may not."""
    clients = {}
    for name in ("alice@example.com", "carol@example.com"):
        create_user(admin_http, name)
        clients[name.split("@")[0]] = _client(
            batch_server, obo_token(admin_http, user_name=name)["token_value"]
        )
    endpoint_id = admin_http.get(f"/api/2.0/serving-endpoints/{CHAT}").json()["id"]
    grant = {"access_control_list": [{"user_name": "alice@example.com", "permission_level": "CAN_QUERY"}]}
    assert admin_http.patch(f"{PERMS}/{endpoint_id}", json=grant).status_code == 200
    return clients


def _line(custom_id: str, text: str, model: str = CHAT) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def _upload(client: openai.OpenAI, tmp_path: Path, lines: list[dict[str, Any]]) -> str:
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    with open(path, "rb") as f:
        created = client.files.create(file=f, purpose="batch")
    assert created.purpose == "batch" and created.bytes == path.stat().st_size
    return created.id


def _wait(client: openai.OpenAI, batch_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.2)


def _by_custom_id(client: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    lines = [orjson.loads(raw) for raw in client.files.content(file_id).content.splitlines() if raw.strip()]
    found = {line["custom_id"]: line for line in lines}
    assert len(found) == len(lines), "a custom_id answered twice"
    return found


def test_batch_answers_every_line_by_custom_id(
    users: dict[str, openai.OpenAI], fake: FakeOpenAI, tmp_path: Path
) -> None:
    alice = users["alice"]
    lines = [_line(f"req-{i}", f"question {i}") for i in range(20)]
    lines.append(_line("bad-endpoint", "hi", model="no-such-endpoint"))
    lines.append({**_line("no-messages", "x"), "body": {"model": CHAT, "messages": []}})
    file_id = _upload(alice, tmp_path, lines)

    batch = alice.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.object == "batch" and batch.input_file_id == file_id
    assert batch.status in ("validating", "in_progress") and batch.metadata == {"job": "nightly"}
    done = _wait(alice, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
        22,
        20,
        2,
    )
    assert done.completed_at is not None and done.in_progress_at is not None

    answers = _by_custom_id(alice, done.output_file_id)
    assert set(answers) == {f"req-{i}" for i in range(20)}
    for i in range(20):
        line = answers[f"req-{i}"]
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
        assert line["response"]["body"]["choices"][0]["message"]["content"] == f"You said: question {i}"

    errors = _by_custom_id(alice, done.error_file_id)
    assert set(errors) == {"bad-endpoint", "no-messages"}
    assert errors["bad-endpoint"]["response"]["status_code"] == 404
    assert errors["bad-endpoint"]["response"]["body"]["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert errors["no-messages"]["response"]["status_code"] == 400
    # The fake saw each question once, without the usage_context the runner adds for the usage table.
    asked = [r.json() for r in fake.requests if r.path.endswith("/chat/completions")]
    questions = [r["messages"][0]["content"] for r in asked if r["messages"]]
    assert sorted(q for q in questions if q.startswith("question")) == sorted(
        f"question {i}" for i in range(20)
    )
    assert all("usage_context" not in r for r in asked)

    assert batch.id in {b.id for b in alice.batches.list()}
    output = alice.files.retrieve(done.output_file_id)
    assert output.purpose == "batch_output"


def test_without_can_query_every_line_is_403(users: dict[str, openai.OpenAI], tmp_path: Path) -> None:
    carol = users["carol"]
    file_id = _upload(carol, tmp_path, [_line("a", "one"), _line("b", "two")])
    done = _wait(
        carol,
        carol.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id,
    )
    assert done.status == "completed" and done.output_file_id is None
    assert done.request_counts is not None and done.request_counts.failed == 2
    errors = _by_custom_id(carol, done.error_file_id)
    assert {line["response"]["status_code"] for line in errors.values()} == {403}


def test_another_user_sees_neither_the_batch_nor_its_files(
    users: dict[str, openai.OpenAI], batch_server: ServerProcess, tmp_path: Path
) -> None:
    alice, carol = users["alice"], users["carol"]
    file_id = _upload(alice, tmp_path, [_line("only", "mine")])
    batch = alice.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    with pytest.raises(openai.NotFoundError):
        carol.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        carol.files.retrieve(file_id)
    with pytest.raises(openai.NotFoundError):
        carol.files.content(file_id)
    with pytest.raises(openai.NotFoundError):
        carol.batches.cancel(batch.id)
    assert batch.id not in {b.id for b in carol.batches.list()}
    assert file_id not in {f.id for f in carol.files.list()}
    # A job over someone else's file is refused as if the file did not exist.
    with pytest.raises(openai.NotFoundError):
        carol.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    listed = {b.id: b for b in _client(batch_server, ADMIN_TOKEN).batches.list()}  # admins see all
    assert listed[batch.id].model_extra == {"owner": "alice@example.com"}
    assert _wait(alice, batch.id).status == "completed"


def test_upload_names_the_bad_line(users: dict[str, openai.OpenAI], tmp_path: Path) -> None:
    alice = users["alice"]
    bad = {"custom_id": "x", "method": "POST", "url": "/v1/images", "body": {"model": CHAT}}
    with pytest.raises(openai.BadRequestError) as refused:
        _upload(alice, tmp_path, [_line("ok", "fine"), bad])
    assert "Line 2" in str(refused.value) and "url" in str(refused.value)
    file_id = _upload(alice, tmp_path, [_line("ok", "fine")])
    assert alice.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        alice.files.retrieve(file_id)


def test_cancel_stops_a_job(users: dict[str, openai.OpenAI], fake: FakeOpenAI, tmp_path: Path) -> None:
    alice = users["alice"]
    fake.faults.delay = 0.3
    try:
        file_id = _upload(alice, tmp_path, [_line(f"c-{i}", f"slow {i}") for i in range(200)])
        batch = alice.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        cancelling = alice.batches.cancel(batch.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        done = _wait(alice, batch.id)
    finally:
        fake.faults.delay = 0
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts is not None and done.request_counts.completed < 200
    assert len(_by_custom_id(alice, done.output_file_id)) == done.request_counts.completed
    with pytest.raises(openai.BadRequestError):
        alice.batches.cancel(batch.id)


def test_a_429_is_tried_again(users: dict[str, openai.OpenAI], fake: FakeOpenAI, tmp_path: Path) -> None:
    alice = users["alice"]
    fake.faults.fail(429, times=2)
    file_id = _upload(alice, tmp_path, [_line("retried", "again")])
    done = _wait(
        alice,
        alice.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id,
    )
    assert done.request_counts is not None and (
        done.request_counts.completed,
        done.request_counts.failed,
    ) == (1, 0)
    answer = _by_custom_id(alice, done.output_file_id)["retried"]
    assert answer["response"]["body"]["choices"][0]["message"]["content"] == "You said: again"


def test_a_job_killed_with_minus_9_resumes_and_answers_each_line_once(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    """The leader is killed mid-job; restarted on the same data directory it resumes the job:
    every custom_id ends up answered exactly once, each usage row names the batch, and the
    upload and the job's creation are in the audit log."""
    proc = ServerProcess(tmp_path / "data", env={"MODELPORT_OPENAI_BASE_URL": f"{fake.url}/v1"}).start()
    n = 240
    fake.faults.delay = 0.2
    try:
        with httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            ext = {
                "provider": "openai",
                "name": "gpt-4o-mini",
                "task": "llm/v1/chat",
                "openai_config": {"openai_api_key_plaintext": API_KEY},
            }
            create_external(http, "kept", ext)
            gateway = {"usage_tracking_config": {"enabled": True}}
            assert http.put("/api/2.0/serving-endpoints/kept/ai-gateway", json=gateway).status_code == 200
        admin = _client(proc, ADMIN_TOKEN)
        file_id = _upload(admin, tmp_path, [_line(f"k-{i}", f"line {i}", model="kept") for i in range(n)])
        batch = admin.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        deadline = time.monotonic() + 60
        while True:
            counts = admin.batches.retrieve(batch.id).request_counts
            if counts is not None and counts.completed >= n // 4:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()
        assert counts.completed < n, "the job ended before the kill"
        proc.start()
        done = _wait(admin, batch.id)
        assert done.status == "completed", done
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed) == (n, n)
        answers = _by_custom_id(admin, done.output_file_id)  # no custom_id twice
        assert set(answers) == {f"k-{i}" for i in range(n)}
        assert all(
            a["response"]["body"]["choices"][0]["message"]["content"]
            == f"You said: line {a['custom_id'][2:]}"
            for a in answers.values()
        )
    finally:
        fake.faults.delay = 0
        proc.stop()  # a clean stop flushes the spool into the tables
    columns, rows = query(
        "SELECT request_id, usage_context FROM system.serving.endpoint_usage",
        str(tmp_path / "data" / "tables"),
    )
    usage = [dict(zip(columns, row, strict=True)) for row in rows]
    assert {a["response"]["request_id"] for a in answers.values()} <= {row["request_id"] for row in usage}
    assert all(dict(row["usage_context"]) == {"batch_id": batch.id} for row in usage)
    # Bulk jobs' writes are audited like the control plane's (their lines, like queries, are not).
    columns, rows = query(
        "SELECT service_name, action_name, http_method, path FROM system.access.audit"
        " WHERE path LIKE '/serving-endpoints/%'",
        str(tmp_path / "data" / "tables"),
    )
    audited = {tuple(row) for row in rows}
    assert audited == {
        ("serving", "uploadFile", "POST", "/serving-endpoints/files"),
        ("serving", "createBatch", "POST", "/serving-endpoints/batches"),
    }
