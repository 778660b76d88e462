"""Metrics history (``GET /api/2.0/serving-endpoints/{name}/metrics/history``) on real servers:
the queries a test sends are counted exactly, by status code, with latency and replicas; the
history survives a restart; several processes (``--workers 2``, and two servers on one
PostgreSQL store) still add up exactly; the leader turns old minute rows into hour rows; and
the route's permissions and parameter checks.

Each process writes its rows every second here (``MODELPORT_METRIC_HISTORY_FLUSH_SECONDS``) and
the leader downsamples every second, so the waits are short.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from modelport.store import open_database
from modelport.store.metric_history import HOUR, MINUTE, Counts, MetricHistoryRepository
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.models import log_sklearn_model
from tests.support.names import unique
from tests.support.principals import create_user, obo_token
from tests.support.processes import admin_client, live_processes, pinned
from tests.support.stores import fresh_pg_database

#: Servers start, a model is logged and its replica started in the fixtures: on a loaded machine
#: that takes minutes, counted in the first test's time.
pytestmark = pytest.mark.timeout(900)

API = "/api/2.0/serving-endpoints"
ROW = {"dataframe_records": [{"f0": 0.9, "f1": 0.1, "f2": 0.2, "f3": 0.3}]}
BAD_ROW = {"dataframe_records": [{"nope": "x"}]}
REDIS = os.environ.get("MODELPORT_TEST_REDIS", "redis://127.0.0.1:6379/0")
FAST = {"MODELPORT_METRIC_HISTORY_FLUSH_SECONDS": "1", "MODELPORT_METRIC_HISTORY_DOWNSAMPLE_SECONDS": "1"}
DAY_MS = 86400_000


@dataclass
class Served:
    server: ServerProcess
    endpoint: str
    endpoint_id: str


def create_iris(server: ServerProcess, model: str, name: str) -> str:
    entity = {"name": "iris", "entity_name": model, "entity_version": "1", "workload_size": "Small"}
    with admin_client(server) as http:
        created = http.post(API, json={"name": name, "config": {"served_entities": [entity]}})
        assert created.status_code == 200, created.text
        settled = wait_settled(http, name, timeout=180)
    assert settled["state"]["ready"] == "READY", settled
    return str(settled["id"])


def history(server: ServerProcess, name: str, token: str = ADMIN_TOKEN, **params: Any) -> httpx.Response:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        return http.get(f"{API}/{name}/metrics/history", params=params)


def totals(answer: dict[str, Any]) -> tuple[int, Counter[str]]:
    codes: Counter[str] = Counter()
    for p in answer["points"]:
        codes.update(p["errors"])
    return sum(p["requests"] for p in answer["points"]), codes


def wait_for_requests(
    server: ServerProcess, name: str, want: int, timeout: float = 30.0, **params: Any
) -> dict[str, Any]:
    """The history once it counts ``want`` requests (it never counts more: checked after)."""
    deadline = time.monotonic() + timeout
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = history(server, name, **params)
        assert r.status_code == 200, r.text
        answer = r.json()
        if totals(answer)[0] >= want:
            break
        time.sleep(0.3)
    assert totals(answer)[0] == want, (totals(answer), answer)
    return answer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = ServerProcess(tmp_path_factory.mktemp("history"), env=FAST).start(timeout=240)
    try:
        model = unique("hist-iris")
        log_sklearn_model(server.url, ADMIN_TOKEN, model)
        name = unique("hist")
        yield Served(server, name, create_iris(server, model, name))
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()


def query(server: ServerProcess, name: str, ok: int, bad: int) -> Counter[int]:
    seen: Counter[int] = Counter()
    with admin_client(server) as http:
        http.timeout = httpx.Timeout(240)  # after a restart the first query starts the replica
        for i in range(ok + bad):
            r = http.post(f"/serving-endpoints/{name}/invocations", json=ROW if i < ok else BAD_ROW)
            seen[r.status_code] += 1
    return seen


def test_the_queries_sent_are_counted_exactly_with_their_statuses(served: Served) -> None:
    seen = query(served.server, served.endpoint, ok=7, bad=3)
    assert seen[200] == 7 and sum(seen.values()) == 10
    errors = {str(code): n for code, n in seen.items() if code >= 400}
    assert errors and all(c.startswith("4") for c in errors), seen  # the model refuses bad input
    answer = wait_for_requests(served.server, served.endpoint, 10)
    time.sleep(2.5)  # two more writes of every process: still counted once
    answer = history(served.server, served.endpoint).json()
    requests, codes = totals(answer)
    assert requests == 10 and dict(codes) == errors
    assert answer["step"] == 60 and answer["until"] - answer["since"] == 3600_000
    assert len(answer["points"]) in (60, 61)
    busy = [p for p in answer["points"] if p["requests"]]
    assert sum(p["errors_4xx"] for p in busy) == sum(errors.values()) and all(
        p["errors_5xx"] == 0 for p in busy
    )
    assert all(p["latency_p50_ms"] > 0 and p["latency_p99_ms"] >= p["latency_p50_ms"] for p in busy)
    assert any((p["replicas"] or 0) >= 1 for p in answer["points"])
    (entity,) = answer["served_entities"]
    assert entity["name"] == "iris" and sum(p["requests"] for p in entity["points"]) == 10
    only = history(served.server, served.endpoint, served_entity="iris").json()
    assert totals(only)[0] == 10
    other = history(served.server, served.endpoint, served_entity="nobody").json()
    assert totals(other)[0] == 0 and other["served_entities"] == []
    day = history(
        served.server, served.endpoint, since=answer["until"] - DAY_MS, until=answer["until"]
    ).json()
    assert day["step"] == 300 and totals(day)[0] == 10


def test_permissions_missing_endpoints_and_bad_parameters(served: Served) -> None:
    with admin_client(served.server) as http:
        user = unique("hist-user") + "@example.com"
        create_user(http, user)
        token = obo_token(http, user_name=user)["token_value"]
        refused = history(served.server, served.endpoint, token=token)
        assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED"
        acl = {"access_control_list": [{"user_name": user, "permission_level": "CAN_VIEW"}]}
        granted = http.patch(f"/api/2.0/permissions/serving-endpoints/{served.endpoint_id}", json=acl)
        assert granted.status_code == 200, granted.text
    allowed = history(served.server, served.endpoint, token=token)
    assert allowed.status_code == 200 and allowed.json()["endpoint_name"] == served.endpoint
    missing = history(served.server, unique("no-such"))
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for params in ({"since": "yesterday"}, {"step": "90"}, {"step": "0"}, {"since": "2000", "until": "1000"}):
        bad = history(served.server, served.endpoint, **params)
        assert bad.status_code == 400, (params, bad.text)
        assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE" and bad.json()["message"]


def test_the_leader_turns_old_minute_rows_into_hour_rows(served: Served) -> None:
    now = int(time.time() * 1000)
    hour = now - now % (HOUR * 1000) - 3 * DAY_MS  # 72 hours ago
    db = open_database(f"sqlite:///{served.server.data_dir / 'modelport.db'}", migrate=False)
    repo = MetricHistoryRepository(db.engine)
    try:
        latency = [0] * 17
        latency[5] = 1
        for minute in range(90):  # an hour and a half, two processes that are long gone
            at = hour + minute * MINUTE * 1000
            for process, replicas in (("old-a", 1.0 + minute % 2), ("old-b", 1.0)):
                one = Counts(1, 0, 0, {"200": 1}, list(latency), 0.04, replicas)
                repo.save(process, {(served.endpoint_id, "iris", at): one}, now)

        def downsampled() -> bool:  # the keeper may run between two saves: wait for all
            rows = repo.rows(served.endpoint_id, hour, hour + 2 * HOUR * 1000)
            return len(rows) == 2 and all(r.step_s == HOUR for r in rows)

        deadline = time.monotonic() + 20
        while not downsampled() and time.monotonic() < deadline:
            time.sleep(0.3)
        rows = repo.rows(served.endpoint_id, hour, hour + 2 * HOUR * 1000)
    finally:
        db.close()
    assert [(r.step_s, r.start_ms, r.process, r.counts.requests, r.counts.replicas) for r in rows] == [
        (HOUR, hour, "", 120, 3.0),
        (HOUR, hour + HOUR * 1000, "", 60, 3.0),
    ]
    week = history(served.server, served.endpoint, since=now - 7 * DAY_MS, step=60).json()
    assert week["step"] == 3600  # only hour rows before 48 h: asked-for minutes become hours
    at = {p["time_ms"]: p for p in week["points"]}
    assert at[hour]["requests"] == 120 and at[hour + HOUR * 1000]["requests"] == 60
    assert at[hour]["replicas"] == 3.0 and at[hour]["latency_p50_ms"] is not None
    assert totals(week)[0] >= 180 + 10


def test_the_history_survives_a_restart(served: Served) -> None:
    before = totals(
        history(served.server, served.endpoint, since=int(time.time() * 1000) - 2 * 3600_000).json()
    )[0]
    assert before >= 10
    served.server.stop()
    served.server.start(timeout=240)
    with admin_client(served.server) as http:
        wait_settled(http, served.endpoint, timeout=180)
    after = totals(
        history(served.server, served.endpoint, since=int(time.time() * 1000) - 2 * 3600_000).json()
    )[0]
    assert after == before
    query(served.server, served.endpoint, ok=4, bad=0)
    wait_for_requests(
        served.server, served.endpoint, before + 4, since=int(time.time() * 1000) - 2 * 3600_000
    )


# ---- several processes ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two servers on one PostgreSQL store: the first with ``--workers 2``."""
    from cryptography.fernet import Fernet

    env = {**FAST, "MODELPORT_SECRETS_KEY": Fernet.generate_key().decode()}  # one store, one key
    artifacts = tmp_path_factory.mktemp("history-artifacts")
    started: list[ServerProcess] = []
    try:
        with fresh_pg_database() as url:
            for label, workers in (("history-a", "2"), ("history-b", "1")):
                args = ["--workers", workers, "--redis", REDIS, "--artifacts-root", str(artifacts)]
                server = ServerProcess(tmp_path_factory.mktemp(label), store=url, extra_args=args, env=env)
                started.append(server.start(timeout=240))
            wait_until(lambda: len(live_processes(started[0])) == 3, 120, "three live processes")
            yield started
    finally:
        for server in started:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_every_process_of_two_servers_on_one_store_adds_up_exactly(pair: list[ServerProcess]) -> None:
    one, two = pair
    model = unique("hist-pg-iris")
    log_sklearn_model(one.url, ADMIN_TOKEN, model)
    name = unique("hist-pg")
    create_iris(one, model, name)
    sent = 0
    for server, role, count in ((one, "server", 5), (one, "worker", 7), (two, "server", 3)):
        with pinned(server, role) as http:
            for _ in range(count):
                r = http.post(f"/serving-endpoints/{name}/invocations", json=ROW)
                assert r.status_code == 200, r.text
        sent += count
    answer = wait_for_requests(two, name, sent)
    time.sleep(2.5)
    for server in pair:  # any process of either server answers the same totals
        assert totals(history(server, name).json())[0] == sent == 15
    assert totals(answer)[1] == Counter()
