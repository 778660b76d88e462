"""Comparison reports and replays on the real server (``control/comparisons.py``,
``control/replays.py``, ``batch/replay_runner.py``).

One endpoint serves ``v1`` live and shadows every query to ``v2`` (copies beyond the shadow's
bound in flight are dropped: the pairs are the copies recorded); 250 queries with ``v2``
behaving as ``v1`` agree fully, 250 more with ``v2`` flipping its labels agree not at all; a
replay of the 500 logged requests against ``v2`` failing on x > 0.8 reports exactly those as
errors, its rows are marked ``replay_of`` (and its id) and never count as live traffic.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.rollouts.world import World, entity
from tests.serverproc import ADMIN_TOKEN

NAME = "cmp-main"
HALF = 250
BASE = f"/api/2.0/modelport/serving-endpoints/{NAME}"


def xs(offset: float) -> list[float]:
    """HALF distinct inputs in [0, 1): labels split about evenly, 49 of them above 0.8."""
    return [round(offset + i / HALF, 6) for i in range(HALF)]


def send(world: World, values: list[float]) -> None:
    # few in flight: the shadow's copies (bounded, dropped beyond) keep up with the live answers
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda x: world.query(NAME, x), values))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200][:3]


def settled_copies(world: World) -> int:
    """The shadow copies recorded once every copy sent is in the table (none more for 2.5 s): a copy
    is dropped when too many are in flight (``gateway/shadow.py``), so not every query has one."""
    seen, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2.5:
        count = sum(1 for row in world.wait_rows(NAME, 0) if row["shadow_of"] is not None)
        if count != seen:
            seen, stable_since = count, time.monotonic()
        time.sleep(0.3)
    return seen


def compare(world: World, **params: Any) -> dict[str, Any]:
    r = world.admin.get(f"{BASE}/compare", params={"candidate": "v2", **params})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[dict[str, int]]:
    """The endpoint after the two halves of traffic: the window start of each half (epoch ms)
    and the copies the shadow recorded of each (``copies1``, ``copies2``)."""
    world.behave(1)
    world.behave(2)
    world.endpoint(
        NAME,
        [entity(1), entity(2)],
        traffic={"v1": 100, "v2": 0},
        extra_config={"shadow": {"served_entity_name": "v2", "percentage": 100}},
    )
    try:
        for _ in range(3):  # both warm (a cold shadow entity would fall behind its copies)
            for served_name in ("v1", "v2"):
                r = world.admin.post(
                    f"/serving-endpoints/{NAME}/served-models/{served_name}/invocations",
                    json={"dataframe_records": [{"x": 0.5}]},
                )
                assert r.status_code == 200, r.text
        first = int(time.time() * 1000)
        send(world, xs(0.0))
        copies1 = settled_copies(world)
        world.behave(2, flip=True)
        second = int(time.time() * 1000)
        send(world, xs(0.0001))
        copies2 = settled_copies(world) - copies1
        assert min(copies1, copies2) >= 0.8 * HALF, (copies1, copies2)
        yield {"first": first, "second": second, "copies1": copies1, "copies2": copies2}
    finally:
        world.behave(2)
        world.admin.delete(f"/api/2.0/serving-endpoints/{NAME}")


def test_shadow_pairs_agree_then_disagree(world: World, served: dict[str, int]) -> None:
    before = compare(world, since=served["first"], until=served["second"])
    assert before["pairs"] == before["compared"] == served["copies1"]
    assert before["agreement"] == 1.0
    assert before["kind"] == "numbers"  # a label beside its score
    assert before["correlation"] == pytest.approx(1.0)
    assert before["incumbent"] == ["v1"] and before["source"] == "shadow"
    assert before["live"]["requests"] == served["copies1"] and before["candidate_stats"]["errors"] == 0
    assert before["live"]["p50_ms"] is not None and before["candidate_stats"]["p99_ms"] is not None

    after = compare(world, since=str(served["second"]))
    assert after["pairs"] == served["copies2"]
    assert after["agreement"] == 0.0  # every label flipped
    whole = compare(world, since="10m")
    copies = served["copies1"] + served["copies2"]
    assert whole["pairs"] == copies and whole["agreement"] == pytest.approx(served["copies1"] / copies)


def wait_replay(world: World, replay_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = world.admin.get(f"{BASE}/replays/{replay_id}")
        assert r.status_code == 200, r.text
        if r.json()["state"] not in ("QUEUED", "RUNNING"):
            return r.json()
        time.sleep(0.3)
    raise AssertionError(f"replay {replay_id} still running after {timeout} s: {r.json()}")


def test_replay_of_500_logged_requests(world: World, served: dict[str, int]) -> None:
    world.behave(2, fail_above=0.8)  # the flip is over; x > 0.8 fails
    try:
        r = world.admin.post(
            f"{BASE}/replays", json={"candidate": "v2", "limit": 500, "rate_per_second": 250, "since": "10m"}
        )
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["state"] == "QUEUED" and created["spec"]["limit"] == 500
        done = wait_replay(world, created["id"])
    finally:
        world.behave(2)
    failing = sum(1 for x in xs(0.0) + xs(0.0001) if x > 0.8)
    assert done["state"] == "SUCCEEDED", done
    assert done["progress"] == {"sent": 500, "total": 500, "errors": failing}
    report = done["report"]
    assert report["source"] == "replay" and report["replay_id"] == created["id"]
    assert report["pairs"] == 500 and report["compared"] == 500 - failing
    assert report["agreement"] == 1.0  # v2 answers as v1 again where it answers
    assert report["candidate_stats"]["errors"] == failing and report["live"]["errors"] == 0
    assert report["incumbent"] == ["v1"]

    rows = world.wait_rows(NAME, 3 * 500)  # live, shadow copies, replays
    replayed = [row for row in rows if row["replay_of"] is not None]
    assert len(replayed) == 500
    live_ids = {row["databricks_request_id"] for row in rows if row["served_entity_name"] == "v1"}
    assert all(row["shadow_of"] is None and row["replay_of"] for row in replayed)
    assert {row["replay_of"] for row in replayed} <= live_ids
    assert all(dict(row["request_metadata"]).get("replay_id") == created["id"] for row in replayed)

    # never live traffic: the shadow comparison is what it was
    whole = compare(world, since="10m")
    copies = served["copies1"] + served["copies2"]
    assert whole["pairs"] == copies and whole["live"]["requests"] == copies
    # the same report through the compare route, and the replay in the list
    again = compare(world, source="replay", replay_id=created["id"])
    assert again["pairs"] == 500 and again["agreement"] == 1.0
    listed = world.admin.get(f"{BASE}/replays").json()["replays"]
    assert listed[0]["id"] == created["id"]


def test_cancel_stops_a_replay(world: World, served: dict[str, int]) -> None:
    r = world.admin.post(f"{BASE}/replays", json={"candidate": "v2", "limit": 100, "rate_per_second": 2})
    assert r.status_code == 200, r.text
    replay_id = r.json()["id"]
    time.sleep(1.0)
    cancelled = world.admin.post(f"{BASE}/replays/{replay_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "CANCELED"
    time.sleep(1.5)
    final = world.admin.get(f"{BASE}/replays/{replay_id}").json()
    assert final["state"] == "CANCELED" and final["progress"]["sent"] < 10
    again = world.admin.post(f"{BASE}/replays/{replay_id}/cancel")
    assert again.status_code == 200  # cancelling a cancelled replay: no change


def test_a_replay_matching_nothing(world: World, served: dict[str, int]) -> None:
    body = {"candidate": "v2", "filter": {"status_code": 404}, "rate_per_second": 1000}
    r = world.admin.post(f"{BASE}/replays", json=body)
    assert r.status_code == 200, r.text
    done = wait_replay(world, r.json()["id"])
    assert done["state"] == "SUCCEEDED" and done["progress"] == {"sent": 0, "total": 0, "errors": 0}
    assert "No logged request matched" in done["message"] and done["report"]["pairs"] == 0


def test_permissions(world: World, served: dict[str, int]) -> None:
    r = world.alice.get(f"{BASE}/compare", params={"candidate": "v2"})
    assert r.status_code == 403, r.text
    r = world.alice.post(f"{BASE}/replays", json={"candidate": "v2"})
    assert r.status_code == 403, r.text
    assert world.alice.get(f"{BASE}/replays").status_code == 403
    # CAN_VIEW is not enough for a replay, and SELECT on the table is needed to compare
    acl = [{"user_name": "alice", "permission_level": "CAN_VIEW"}]
    endpoint_id = world.admin.get(f"/api/2.0/serving-endpoints/{NAME}").json()["id"]
    r = world.admin.patch(
        f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json={"access_control_list": acl}
    )
    assert r.status_code == 200, r.text
    assert world.alice.get(f"{BASE}/replays").status_code == 200
    r = world.alice.get(f"{BASE}/compare", params={"candidate": "v2"})
    assert r.status_code == 403 and "SELECT" in r.json()["message"], r.text
    assert world.alice.post(f"{BASE}/replays", json={"candidate": "v2"}).status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "candidate"),
        ({"candidate": "v9"}, "candidate"),
        ({"candidate": "v2", "source": "live"}, "source"),
        ({"candidate": "v2", "since": "yesterday"}, "since"),
        ({"candidate": "v2", "since": "1h", "until": "2h"}, "since"),
        ({"candidate": "v2", "replay_id": "x"}, "replay_id"),
    ],
)
def test_bad_compare_parameters(
    world: World, served: dict[str, int], params: dict[str, str], field: str
) -> None:
    r = world.admin.get(f"{BASE}/compare", params=params)
    assert r.status_code == 400, r.text
    assert f"'{field}'" in r.json()["message"], r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "candidate"),
        ({"candidate": "v9"}, "candidate"),
        ({"candidate": "v2", "limit": 0}, "limit"),
        ({"candidate": "v2", "limit": 10_001}, "limit"),
        ({"candidate": "v2", "rate_per_second": 0.01}, "rate_per_second"),
        ({"candidate": "v2", "rate_per_second": 5000}, "rate_per_second"),
        ({"candidate": "v2", "filter": {"model": "v1"}}, "filter.model"),
        ({"candidate": "v2", "filter": {"status_code": "ok"}}, "filter.status_code"),
        ({"candidate": "v2", "since": "soon"}, "since"),
        ({"candidate": "v2", "speed": 3}, "speed"),
    ],
)
def test_bad_replay_parameters(
    world: World, served: dict[str, int], body: dict[str, Any], field: str
) -> None:
    r = world.admin.post(f"{BASE}/replays", json=body)
    assert r.status_code == 400, r.text
    assert f"'{field}'" in r.json()["message"], r.text


def test_cli_compare_and_replay(world: World, served: dict[str, int]) -> None:
    from modelport.client.cli.main import app

    env = {"MODELPORT_HOST": world.server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}
    runner = CliRunner()
    shown = runner.invoke(app, ["compare", NAME, "--candidate", "v2", "--since", "10m"], env=env)
    assert shown.exit_code == 0, shown.output
    share = served["copies1"] / (served["copies1"] + served["copies2"])
    assert re.search(rf"Agreement +{100 * share:.1f}%", shown.output) and "p99 ms" in shown.output, (
        shown.output
    )
    replayed = runner.invoke(
        app,
        ["replay", NAME, "--candidate", "v2", "--limit", "20", "--rate", "200", "--wait", "--json"],
        env=env,
    )
    assert replayed.exit_code == 0, replayed.output
    assert '"state": "SUCCEEDED"' in replayed.output and '"pairs": 20' in replayed.output


def test_a_restart_resumes_a_replay(world: World, served: dict[str, int]) -> None:
    r = world.admin.post(f"{BASE}/replays", json={"candidate": "v2", "limit": 60, "rate_per_second": 30})
    assert r.status_code == 200, r.text
    replay_id = r.json()["id"]
    deadline = time.monotonic() + 30
    while world.admin.get(f"{BASE}/replays/{replay_id}").json()["progress"]["sent"] < 15:
        assert time.monotonic() < deadline, "the replay sent nothing"
        time.sleep(0.1)
    started = time.monotonic()
    world.server.stop()
    world.server.start()
    print(f"restarted in {time.monotonic() - started:.1f} s")
    done = wait_replay(world, replay_id, timeout=90)
    assert done["state"] == "SUCCEEDED", done
    assert done["progress"]["sent"] == done["progress"]["total"] == 60
    assert done["report"]["pairs"] == 60
    rows = [
        row
        for row in world.wait_rows(NAME, 1)
        if dict(row["request_metadata"] or []).get("replay_id") == replay_id
    ]
    assert len({row["replay_of"] for row in rows}) == 60
    # each logged request answered once, but for those in flight at the stop (sent again); the
    # 503s of the replicas starting again are recorded too, and sent again
    answered = Counter(row["replay_of"] for row in rows if row["status_code"] == 200)
    assert sum(answered.values()) <= 60 + 16 and max(answered.values()) <= 2, answered
