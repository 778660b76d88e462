"""The endpoint event log on the shared server: ``GET /api/2.0/serving-endpoints/{name}/events``
and ``modelport endpoints events``.

One endpoint (``ev-main``) lives through a create, an update, a cancelled update, an update
that fails at deploy time, an AI-gateway change and a replica that crashes; each left its
events, in order, with who did it and which config version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelport.client.cli.endpoint_events import follow
from modelport.client.cli.main import app
from modelport.client.sdk import ModelportClient
from modelport.runtime.gpus import gpu_ids
from modelport.store.events import KINDS
from tests.rollouts.world import World, entity
from tests.serverproc import ADMIN_TOKEN
from tests.support.endpoints import wait_settled

NAME = "ev-main"
BASE = f"/api/2.0/serving-endpoints/{NAME}"
EVENTS, CONFIG, GATEWAY = f"{BASE}/events", f"{BASE}/config", f"{BASE}/ai-gateway"
LIFE = {"CONFIG_UPDATE_STARTED", "CONFIG_UPDATE_SUCCEEDED", "REPLICA_STARTED", "REPLICA_STOPPED"}


def all_events(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every event of ``ev-main`` (newest first), page by page."""
    out: list[dict[str, Any]] = []
    token = None
    while True:
        r = client.get(EVENTS, params={**params, **({"page_token": token} if token else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body["events"])
        token = body["next_page_token"]
        if not token:
            return out


def wait_events(
    client: httpx.Client, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60
) -> list[dict[str, Any]]:
    """The events (oldest first) once ``done`` holds of them."""
    deadline = time.monotonic() + timeout
    while True:
        got = list(reversed(all_events(client, max_results=1000)))
        if done(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"events after {timeout} s: {[(e['kind'], e['message']) for e in got]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def main(world: World) -> Iterator[World]:
    """``ev-main``, created with v1 and updated to v2 (deleted at the end)."""
    world.endpoint(NAME, [entity(1)], inference_table=False)
    try:
        r = world.admin.put(CONFIG, json={"served_entities": [entity(2)]})
        assert r.status_code == 200, r.text
        assert wait_settled(world.admin, NAME, poll=0.1)["state"]["config_update"] == "NOT_UPDATING"
        yield world
    finally:
        world.behave(2)
        world.admin.delete(BASE)


def admin_name(world: World) -> str:
    return str(world.admin.get("/api/2.0/preview/scim/v2/Me").json()["userName"])


def test_create_and_update_leave_their_events_in_order(main: World) -> None:
    me = admin_name(main)
    got = wait_events(
        main.admin, lambda evs: any(e["kind"] == "REPLICA_STOPPED" and e["config_version"] == 1 for e in evs)
    )
    life = [(e["kind"], e["config_version"], e["served_entity"]) for e in got if e["kind"] in LIFE]
    assert life == [
        ("CONFIG_UPDATE_STARTED", 1, None),
        ("REPLICA_STARTED", 1, "v1"),
        ("CONFIG_UPDATE_SUCCEEDED", 1, None),
        ("CONFIG_UPDATE_STARTED", 2, None),
        ("REPLICA_STARTED", 2, "v2"),
        ("CONFIG_UPDATE_SUCCEEDED", 2, None),
        ("REPLICA_STOPPED", 1, "v1"),
    ]
    updates = [e for e in got if e["kind"].startswith("CONFIG_UPDATE")]
    assert {e["actor"] for e in updates} == {me}
    assert [e["timestamp"] for e in got] == sorted(e["timestamp"] for e in got)
    assert [e["id"] for e in got] == sorted(e["id"] for e in got)
    started = next(e for e in got if e["kind"] == "REPLICA_STARTED")
    assert started["details"]["seconds"] > 0 and started["details"]["pid"] > 0
    stopped = next(e for e in got if e["kind"] == "REPLICA_STOPPED")
    assert stopped["details"]["reason"] == "config version 2 serves"


def test_cancelled_failed_and_gateway_changes_are_events(main: World) -> None:
    admin = main.admin
    r = admin.put(CONFIG, json={"served_entities": [entity(3)]})
    assert r.status_code == 200, r.text
    r = admin.post(f"{BASE}/cancel-update")  # the replica is still starting
    assert r.status_code == 200, r.text
    assert wait_settled(admin, NAME)["state"]["config_update"] == "UPDATE_CANCELED"
    gateway = {"usage_tracking_config": {"enabled": True}}
    assert admin.put(GATEWAY, json=gateway).status_code == 200
    if not gpu_ids():  # a GPU workload fails at deploy time on a machine without one
        r = admin.put(CONFIG, json={"served_entities": [entity(2, workload_type="GPU_SMALL")]})
        assert r.status_code == 200, r.text
        assert wait_settled(admin, NAME)["state"]["config_update"] == "UPDATE_FAILED"
    got = wait_events(admin, lambda evs: evs[-1]["kind"] in {"CONFIG_UPDATE_FAILED", "AI_GATEWAY_UPDATED"})
    me = admin_name(main)
    canceled = [e for e in got if e["kind"] == "CONFIG_UPDATE_CANCELED"]
    assert [(e["config_version"], e["actor"]) for e in canceled] == [(3, me)]
    assert not any(e["kind"] == "CONFIG_UPDATE_SUCCEEDED" and e["config_version"] == 3 for e in got)
    gw = next(e for e in got if e["kind"] == "AI_GATEWAY_UPDATED")
    assert gw["details"] == gateway and gw["actor"] == me
    if not gpu_ids():
        failed = got[-1]
        assert (failed["kind"], failed["config_version"], failed["served_entity"]) == (
            "CONFIG_UPDATE_FAILED",
            4,
            "v2",
        )
        assert "needs a GPU" in failed["message"] and "needs a GPU" in failed["details"]["reason"]
    assert main.query(NAME, 0.7).json()["predictions"][0]["label"] == 1  # v2 still serves


def test_a_crashed_replica_is_an_event_and_is_replaced(main: World) -> None:
    main.behave(2, crash=True)
    r = main.query(NAME, 0.3)
    assert r.status_code >= 500
    main.behave(2)
    got = wait_events(
        main.admin,
        lambda evs: any(e["kind"] == "REPLICA_CRASHED" for e in evs) and evs[-1]["kind"] == "REPLICA_STARTED",
    )
    crashed = next(e for e in got if e["kind"] == "REPLICA_CRASHED")
    assert (crashed["served_entity"], crashed["config_version"]) == ("v2", 2)
    assert crashed["details"]["exit_code"] in (3, None)  # None: the connection closed first
    assert "pid" in crashed["details"] and crashed["message"].startswith("Replica")
    replaced = got[-1]
    assert replaced["id"] > crashed["id"] and replaced["details"]["pid"] != crashed["details"]["pid"]
    assert not any(e["kind"] == "REPLICA_SCALED" for e in got)  # a replacement is not scaling
    assert main.query(NAME, 0.3).status_code == 200


def test_pages_filters_and_refusals(main: World) -> None:
    admin = main.admin
    whole = all_events(admin, max_results=1000)
    paged = all_events(admin, max_results=2)
    assert [e["id"] for e in paged] == [e["id"] for e in whole] and len(whole) >= 7
    first = admin.get(EVENTS, params={"max_results": 2}).json()
    assert len(first["events"]) == 2 and first["next_page_token"]
    only = all_events(admin, kind="REPLICA_STARTED,REPLICA_STOPPED")
    assert only == [e for e in whole if e["kind"] in {"REPLICA_STARTED", "REPLICA_STOPPED"}]
    assert all_events(admin, kind=["CONFIG_UPDATE_STARTED", "config_update_succeeded"]) == [
        e for e in whole if e["kind"] in {"CONFIG_UPDATE_STARTED", "CONFIG_UPDATE_SUCCEEDED"}
    ]
    bad = admin.get(EVENTS, params={"kind": "REPLICA_EXPLODED"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "REPLICA_EXPLODED" in bad.json()["message"] and all(k in bad.json()["message"] for k in KINDS)
    for params in ({"max_results": 0}, {"max_results": 1001}, {"max_results": "x"}, {"page_token": "zz"}):
        r = admin.get(EVENTS, params=params)
        assert r.status_code == 400, (params, r.text)
    denied = main.alice.get(EVENTS)
    assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
    assert admin.get("/api/2.0/serving-endpoints/ev-nothing/events").status_code == 404


def test_the_cli_prints_and_follows_the_events(main: World) -> None:
    env = {"MODELPORT_HOST": main.server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}
    runner = CliRunner()
    table = runner.invoke(app, ["endpoints", "events", NAME, "--limit", "5"], env=env)
    assert table.exit_code == 0, table.output
    lines = table.output.strip().splitlines()
    assert lines[0].split() == ["TIME", "KIND", "ENTITY", "VERSION", "MESSAGE"] and len(lines) == 6
    newest = all_events(main.admin, max_results=1)[0]
    assert newest["kind"] in lines[-1] and newest["message"] in lines[-1]  # oldest first, as a log
    started = runner.invoke(
        app, ["endpoints", "events", NAME, "--kind", "REPLICA_STARTED", "--json"], env=env
    )
    assert started.exit_code == 0, started.output
    events = json.loads(started.output)["events"]
    assert events and {e["kind"] for e in events} == {"REPLICA_STARTED"}
    bad = runner.invoke(app, ["endpoints", "events", NAME, "--kind", "NOPE"], env=env)
    assert bad.exit_code != 0 and "NOPE" in bad.output

    # --follow: what comes after the last event printed, until Ctrl-C.
    seen: list[list[dict[str, Any]]] = []
    polls = 0

    def sleep(seconds: float) -> None:  # the first poll finds a new event, the second is Ctrl-C
        nonlocal polls
        polls += 1
        assert seconds == 2.0
        if polls > 1:
            raise KeyboardInterrupt
        assert main.admin.put(GATEWAY, json={"usage_tracking_config": {"enabled": False}}).status_code == 200

    with ModelportClient(main.server.url, token=ADMIN_TOKEN) as client:
        follow(client, NAME, None, newest["id"], seen.append, sleep=sleep)
    assert [[e["kind"] for e in batch] for batch in seen] == [["AI_GATEWAY_UPDATED"]]
