"""Refusal bursts in the endpoint event log (``gateway/refusal_bursts.py``) on real servers:
rate-limit refusals and guardrail blocks become one ``RATE_LIMITED`` / ``GUARDRAIL_BLOCKED``
event per burst once the burst has been quiet, accepted queries write none, an open burst is
written when the server stops, and with ``--workers 2`` each process writes its own burst.

The servers here end a burst after 2 s without a refusal (``--refusal-burst-quiet-seconds``)
instead of 30. Endpoints serve the loopback OpenAI fake through the ``custom`` provider (no
replicas): every query is cheap and every refusal is the gateway's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.principals import create_user, obo_token
from tests.support.private_services import PrivateRedis, services_missing
from tests.support.processes import live_processes, pinned
from tests.support.providers import custom_chat_entity

API = "/api/2.0/serving-endpoints"
HELLO = {"messages": [{"role": "user", "content": "hello there"}]}
QUIET = 2.0
#: No registered model is needed (external models only): up once the control plane is.
UP = ("/health", 180.0)
BURSTS = {"MODELPORT_REFUSAL_BURST_QUIET_SECONDS": str(QUIET), "MODELPORT_REFUSAL_BURST_MAX_SECONDS": "60"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("refusals"), env=dict(BURSTS)).start_until(*UP)
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop()


def admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)


def create(http: httpx.Client, name: str, fake: FakeOpenAI, gateway: dict[str, Any]) -> str:
    body = {
        "name": name,
        "config": {"served_entities": [custom_chat_entity(fake.url)]},
        "ai_gateway": gateway,
    }
    r = http.post(API, json=body)
    assert r.status_code == 200, r.text
    wait_settled(http, name, timeout=60)
    return str(http.get(f"{API}/{name}").json()["id"])


def query(client: httpx.Client, name: str, text: str = "hello there") -> int:
    r = client.post(
        f"/serving-endpoints/{name}/invocations", json={"messages": [{"role": "user", "content": text}]}
    )
    return r.status_code


def events(http: httpx.Client, name: str, *kinds: str) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"max_results": 1000}
    if kinds:
        params["kind"] = ",".join(kinds)
    r = http.get(f"{API}/{name}/events", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def wait_events(
    http: httpx.Client, name: str, kind: str, count: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = events(http, name, kind)
        if len(got) >= count:
            return got
        assert time.monotonic() < deadline, f"{len(got)} {kind} event(s) after {timeout} s: {got}"
        time.sleep(0.2)


def in_one_window(seconds: float = 20.0) -> None:
    """Wait for the next rate-limit window (clock minutes) when fewer than ``seconds`` are left."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.1)


def user_client(server: ServerProcess, http: httpx.Client, endpoint_id: str) -> tuple[str, httpx.Client]:
    user = f"{unique('bob')}@example.com"
    create_user(http, user)
    token = obo_token(http, user_name=user)["token_value"]
    acl = {"access_control_list": [{"user_name": user, "permission_level": "CAN_QUERY"}]}
    assert http.patch(f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=acl).status_code == 200
    return user, httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_a_burst_of_rate_limited_calls_is_one_event(server: ServerProcess, fake: FakeOpenAI) -> None:
    name = unique("rl-burst")
    with admin(server) as http:
        limits = {"rate_limits": [{"key": "user", "calls": 3, "renewal_period": "minute"}]}
        endpoint_id = create(http, name, fake, limits)
        user, bob = user_client(server, http, endpoint_id)
        with bob:
            in_one_window()
            # accepted queries write no event, even once the quiet period has passed
            assert [query(http, name) for _ in range(3)] == [200] * 3
            assert [query(bob, name) for _ in range(3)] == [200] * 3
            time.sleep(QUIET + 1)
            assert events(http, name, "RATE_LIMITED", "GUARDRAIL_BLOCKED") == []
            started = time.time()
            assert [query(http, name) for _ in range(7)] == [429] * 7
            assert [query(bob, name) for _ in range(2)] == [429] * 2
            ended = time.time()
        [event] = wait_events(http, name, "RATE_LIMITED", 1)
        time.sleep(QUIET + 1)  # and no second event for the same burst
        assert len(events(http, name, "RATE_LIMITED")) == 1
        d = event["details"]
        assert d["count"] == 9
        assert d["by_principal"] == [{"name": "admin", "count": 7}, {"name": user, "count": 2}]
        assert d["by_limit"] == [{"name": "user limit 3 calls/min", "count": 9}]
        assert d["closed"] == "quiet" and d["quiet_seconds"] == QUIET and d["principals"] == 2
        assert started * 1000 - 1 <= d["first"] <= d["last"] <= ended * 1000 + 1
        assert event["timestamp"] >= d["last"] + QUIET * 1000 - 50  # written once quiet
        # "at HH:MM:SS UTC" when the burst fits in one second, else "between ... and ..."
        assert re.match(
            r"9 requests refused by user limit 3 calls/min (at|between) \d\d:\d\d:\d\d", event["message"]
        )
        assert event["message"].endswith(f"(admin 7, {user} 2)")
        # the route's kind filter knows the new kinds; the others still work
        assert [e["kind"] for e in events(http, name, "RATE_LIMITED")] == ["RATE_LIMITED"]
        r = http.get(f"{API}/{name}/events", params={"kind": "RATE_LIMITD"})
        assert r.status_code == 400 and "GUARDRAIL_BLOCKED" in r.json()["message"]


def test_a_keyword_guardrail_block_is_an_event(server: ServerProcess, fake: FakeOpenAI) -> None:
    name = unique("gr-burst")
    with admin(server) as http:
        gateway = {"guardrails": {"input": {"invalid_keywords": ["forbidden"]}}}
        create(http, name, fake, gateway)
        assert query(http, name) == 200
        assert [query(http, name, "say the forbidden word") for _ in range(2)] == [400, 400]
        assert query(http, name) == 200
        [event] = wait_events(http, name, "GUARDRAIL_BLOCKED", 1)
        d = event["details"]
        assert d["count"] == 2
        assert d["by_guardrail"] == [{"name": "input invalid_keywords", "count": 2}]
        assert d["by_principal"] == [{"name": "admin", "count": 2}]
        assert "refused by the input invalid_keywords guardrail" in event["message"]
        assert events(http, name, "RATE_LIMITED") == []


def test_an_open_burst_is_written_when_the_server_stops(server: ServerProcess, fake: FakeOpenAI) -> None:
    name = unique("rl-stop")
    with admin(server) as http:
        create(
            http, name, fake, {"rate_limits": [{"key": "endpoint", "calls": 1, "renewal_period": "minute"}]}
        )
    server.stop()
    server.env = {**BURSTS, "MODELPORT_REFUSAL_BURST_QUIET_SECONDS": "600"}  # never quiet in time
    server.start_until(*UP)
    with admin(server) as http:
        wait_settled(http, name, timeout=60)
        in_one_window()
        assert [query(http, name) for _ in range(4)] == [200, 429, 429, 429]
        time.sleep(1)
        assert events(http, name, "RATE_LIMITED") == []  # still open
    server.stop()
    server.env = dict(BURSTS)
    server.start_until(*UP)
    with admin(server) as http:
        [event] = events(http, name, "RATE_LIMITED")
    assert event["details"]["count"] == 3 and event["details"]["closed"] == "shutdown"


@pytest.mark.skipif(services_missing() is not None, reason=str(services_missing()))
def test_each_process_writes_its_own_burst(tmp_path: Path, fake: FakeOpenAI) -> None:
    """``--workers 2`` sharing Redis counters: refusals taken by each process are that process's
    burst; together they count every refusal once."""
    redis = PrivateRedis(tmp_path)
    redis.start()
    proc = ServerProcess(
        tmp_path / "data", extra_args=["--workers", "2", "--redis", redis.url], env=dict(BURSTS)
    )
    try:
        proc.start_until(*UP)
        deadline = time.monotonic() + 180
        while len(live_processes(proc)) < 2:
            assert time.monotonic() < deadline, proc.log_tail()
            time.sleep(0.5)
        name = unique("rl-workers")
        with admin(proc) as http:
            create(
                http,
                name,
                fake,
                {"rate_limits": [{"key": "endpoint", "calls": 2, "renewal_period": "minute"}]},
            )
        in_one_window()
        with pinned(proc, "server") as first, pinned(proc, "worker") as second:
            first.get(f"{API}/{name}")  # both processes know the endpoint before the counts start
            second.get(f"{API}/{name}")
            assert [query(first, name) for _ in range(2)] == [200, 200]
            assert [query(first, name) for _ in range(3)] == [429] * 3
            assert [query(second, name) for _ in range(4)] == [429] * 4
        with admin(proc) as http:
            got = wait_events(http, name, "RATE_LIMITED", 2)
            time.sleep(QUIET + 1)
            got = events(http, name, "RATE_LIMITED")
        assert sorted(e["details"]["count"] for e in got) == [3, 4]
        assert len({e["details"]["process"] for e in got}) == 2
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop()
        redis.stop()
