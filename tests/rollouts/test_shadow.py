"""Shadow traffic on the real server (``gateway/shadow.py``): a share of the live queries copied to
the shadow entity and recorded beside them, live answers unchanged, a crashing or hung shadow
harmless to live traffic, shadows outside the rate limits, and the config's check.

The faults come last: copies that wait on a hung replica hold their places in the process's
bound (``--shadow-max-in-flight``) until the endpoint is deleted (or the served timeout)."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rollouts.world import World, entity

QUARTER = "sh-quarter"
FAULTY = "sh-faulty"


def shadowed(name: str, live: int, shadow: int, percentage: float) -> dict[str, Any]:
    """``extra_config`` and ``traffic`` of an endpoint: version ``live`` takes the traffic, version
    ``shadow`` gets ``percentage`` % of the queries as copies."""
    return {
        "entities": [entity(live), entity(shadow)],
        "traffic": {f"v{live}": 100, f"v{shadow}": 0},
        "extra_config": {"shadow": {"served_entity_name": f"v{shadow}", "percentage": percentage}},
    }


@pytest.fixture(scope="module")
def endpoints(world: World) -> Iterator[World]:
    try:
        for name, live, shadow, percentage in ((QUARTER, 1, 2, 25.0), (FAULTY, 1, 3, 100.0)):
            spec = shadowed(name, live, shadow, percentage)
            world.endpoint(name, spec["entities"], traffic=spec["traffic"], extra_config=spec["extra_config"])
        yield world
    finally:
        world.behave(3)
        for name in (QUARTER, FAULTY):
            world.admin.delete(f"/api/2.0/serving-endpoints/{name}")


def expected(x: float) -> dict[str, Any]:
    return {"predictions": [{"label": int(x > 0.5), "score": x}]}


def shadow_count(world: World, name: str, outcome: str) -> int:
    """``modelport_shadow_requests_total`` of endpoint ``name`` for ``outcome`` (0 when absent)."""
    r = world.admin.get(f"/api/2.0/serving-endpoints/{name}/metrics")
    assert r.status_code == 200, r.text
    found = re.search(rf'modelport_shadow_requests_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} (\S+)', r.text)
    return int(float(found[1])) if found else 0


def settled_count(world: World, name: str) -> int:
    """The shadow copies answered, once none is in flight (the count stops moving)."""
    last = -1
    for _ in range(50):
        now = shadow_count(world, name, "sent") + shadow_count(world, name, "error")
        if now == last:
            return shadow_count(world, name, "sent")
        last = now
        time.sleep(0.2)
    raise AssertionError(f"shadow copies of {name} still moving: {last}")


def test_a_quarter_of_the_queries_is_shadowed_and_recorded_beside_the_live_ones(endpoints: World) -> None:
    world = endpoints
    xs = [i / 1000 for i in range(1000)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda x: world.query(QUARTER, x), xs))
    assert [r.status_code for r in answers] == [200] * 1000
    assert [r.json() for r in answers] == [expected(x) for x in xs]  # as v1 answers without a shadow
    assert {r.headers["served-model-name"] for r in answers} == {"v1"}

    sent = settled_count(world, QUARTER)
    assert 200 <= sent <= 300, sent  # 25 % ± 5 % of 1,000
    assert shadow_count(world, QUARTER, "error") == 0
    live = world.wait_rows(QUARTER, 1000, served_entity_name="v1")
    copies = world.wait_rows(QUARTER, sent, served_entity_name="v2")
    assert len(live) == 1000 and len(copies) == sent
    assert all(row["shadow_of"] is None for row in live)
    by_id = {row["databricks_request_id"]: row for row in live}
    assert len({row["shadow_of"] for row in copies}) == sent  # one copy per live query at most
    for row in copies:
        original = by_id[row["shadow_of"]]  # a live query's id
        assert row["databricks_request_id"] != original["databricks_request_id"]
        assert (row["status_code"], row["request"], row["requester"]) == (
            200,
            original["request"],
            original["requester"],
        )
        assert row["response"] == original["response"]  # v2 is the same model as v1


def niceness(pid: int) -> int:
    """A process's nice value (field 19 of /proc/<pid>/stat, after the command in parentheses)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_the_shadows_replicas_run_at_a_lower_cpu_priority_than_the_live_ones(endpoints: World) -> None:
    world = endpoints
    endpoint_id = world.admin.get(f"/api/2.0/serving-endpoints/{QUARTER}").json()["id"]
    status = world.admin.get("/api/2.0/modelport/status")
    assert status.status_code == 200, status.text
    pids = {
        r["served_entity"]: r["pid"] for r in status.json()["replicas"] if r["endpoint_id"] == endpoint_id
    }
    assert set(pids) == {"v1", "v2"}, pids
    assert niceness(pids["v1"]) == niceness(world.server.proc.pid)  # live: as the server
    assert niceness(pids["v2"]) == niceness(world.server.proc.pid) + 10  # the shadow yields the CPU


def test_shadow_copies_never_count_against_rate_limits(endpoints: World) -> None:
    world = endpoints
    gateway = world.admin.get(f"/api/2.0/serving-endpoints/{QUARTER}").json()["ai_gateway"]
    limits = {**gateway, "rate_limits": [{"calls": 40, "key": "user", "renewal_period": "minute"}]}
    r = world.admin.put(f"/api/2.0/serving-endpoints/{QUARTER}/ai-gateway", json=limits)
    assert r.status_code == 200, r.text
    before = settled_count(world, QUARTER)
    for _ in range(2):  # the windows are minutes of the clock: one burst within one of them
        if time.time() % 60 > 55:
            time.sleep(61 - time.time() % 60)
        window = int(time.time() // 60)
        statuses = [world.query(QUARTER, 0.75).status_code for _ in range(41)]
        if int(time.time() // 60) == window:
            break
        time.sleep(61 - time.time() % 60)  # it crossed one: again, in a fresh window
    assert statuses == [200] * 40 + [429]  # the 41st live call is refused: the limit is on
    assert settled_count(world, QUARTER) > before  # copies were sent meanwhile (P(none) = 1e-5)


def test_a_shadow_that_takes_traffic_is_refused(world: World) -> None:
    body = {
        "name": "sh-refused",
        "config": {
            "served_entities": [entity(1), entity(2)],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "v1", "traffic_percentage": 50},
                    {"served_entity_name": "v2", "traffic_percentage": 50},
                ]
            },
            "shadow": {"served_entity_name": "v2", "percentage": 25},
        },
    }
    r = world.admin.post("/api/2.0/serving-endpoints", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "config.shadow" in r.json()["message"]


def latencies(client: httpx.Client, path: str, count: int) -> list[float]:
    """Milliseconds of ``count`` sequential queries to ``path``, every one answered 200."""
    spent = []
    for i in range(count):
        started = time.perf_counter()
        r = client.post(path, json={"dataframe_records": [{"x": (i % 10) / 10}]})
        spent.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.text
        assert r.json() == expected((i % 10) / 10)
    return spent


@pytest.mark.parametrize("fault", ["crash", "hang"])
def test_a_crashing_or_hung_shadow_leaves_live_answers_and_latency_alone(
    endpoints: World, fault: str
) -> None:
    world = endpoints
    live, baseline = (
        f"/serving-endpoints/{FAULTY}/invocations",
        f"/serving-endpoints/{FAULTY}/served-models/v1/invocations",
    )
    errors_before = shadow_count(world, FAULTY, "error")
    world.behave(3, **{fault: True})
    try:
        plain: list[float] = []
        shadowed_ms: list[float] = []
        for _ in range(3):  # interleaved: the same live replica, with and without copies (a named
            plain += latencies(world.admin, baseline, 40)  # entity's query is never copied)
            shadowed_ms += latencies(world.admin, live, 40)
    finally:
        world.behave(3)
    p50, base = statistics.median(shadowed_ms), statistics.median(plain)
    assert p50 <= 2 * base + 20, (p50, base)
    if fault == "crash":  # the copies failed (and were counted), the live queries did not
        deadline = time.monotonic() + 30
        while shadow_count(world, FAULTY, "error") == errors_before and time.monotonic() < deadline:
            time.sleep(0.3)
        assert shadow_count(world, FAULTY, "error") > errors_before
    else:  # at most 64 copies wait on the hung replica: the rest were dropped
        assert shadow_count(world, FAULTY, "dropped") >= 120 - 64
