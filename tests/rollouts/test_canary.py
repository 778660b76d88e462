"""Canary rollouts on the real server (``control/rollouts.py``, ``control/rollout_runner.py``,
``gateway/rollout_tally.py``): a healthy candidate promoted step by step to 100 %, a failing one
and a slow one rolled back at once with few failed live queries, pause, resume and cancel, and
the 400 of a rollout with nothing to roll from.

Every endpoint starts as version 1 alone; its update to [v1, v3] with all the traffic to v3
carries the rollout. Version 3's behaviour is set before the update (``world.behave``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from modelport.client.cli.main import app
from tests.rollouts.canary import Load, current, events, rollout_update, wait_state, webhook
from tests.rollouts.world import World, entity
from tests.serverproc import ADMIN_TOKEN
from tests.support.endpoints import wait_settled

HEALTHY, FAILING, SLOW, STEERED = "can-healthy", "can-failing", "can-slow", "can-steered"
FLIPPED = "can-flipped"
NAMES = (HEALTHY, FAILING, SLOW, STEERED, FLIPPED)


@pytest.fixture(scope="module")
def endpoints(world: World) -> Iterator[World]:
    try:
        with ThreadPoolExecutor(len(NAMES)) as pool:
            list(pool.map(lambda n: world.endpoint(n, [entity(1)], inference_table=False), NAMES))
        yield world
    finally:
        world.behave(3)
        for name in NAMES:
            world.admin.delete(f"/api/2.0/serving-endpoints/{name}")


def test_a_healthy_candidate_is_promoted_step_by_step(endpoints: World) -> None:
    world = endpoints
    world.behave(3)
    with webhook() as (url, posted), Load(world, HEALTHY) as load:
        r = rollout_update(world, HEALTHY, webhook_url=url)
        assert r.status_code == 200, r.text
        done = wait_state(world, HEALTHY, "SUCCEEDED", "ROLLED_BACK", "FAILED", "CANCELED")
        time.sleep(1.5)
    assert done["state"] == "SUCCEEDED", done
    assert (done["candidate"], done["incumbents"], done["steps"]) == ("v3", ["v1"], [25.0, 50.0, 100.0])
    assert done["percentage"] == 100.0 and done["last_evaluation"]["verdict"] == "PROMOTE"
    assert done["last_evaluation"]["candidate"]["requests"] >= 20
    kinds = [e["kind"] for e in events(world, HEALTHY)]
    assert kinds == ["ROLLOUT_STARTED", "ROLLOUT_STEP", "ROLLOUT_PROMOTED"], kinds
    started, step, promoted = events(world, HEALTHY)
    assert step["details"]["percentage"] == 50.0 and step["details"]["measured"]["candidate"]["errors"] == 0
    # the served split moved: about 25 % v3, then about 50 %, then all of it
    first = load.between(started["timestamp"] + 300, step["timestamp"])
    second = load.between(step["timestamp"] + 300, promoted["timestamp"])
    after = load.between(promoted["timestamp"] + 500, int(time.time() * 1000))
    share = lambda sent: sum(s.served == "v3" for s in sent) / max(1, len(sent))  # noqa: E731
    assert 0.1 < share(first) < 0.45, (len(first), share(first))
    assert 0.3 < share(second) < 0.7, (len(second), share(second))
    assert after and share(after) == 1.0
    assert all(s.status == 200 for s in load.sent)
    # each decision was POSTed to the webhook, with what was measured
    assert [p["event"] for p in posted] == kinds
    assert posted[-1]["endpoint"] == HEALTHY and posted[-1]["measured"]["candidate"]["requests"] >= 20
    endpoint = world.admin.get(f"/api/2.0/serving-endpoints/{HEALTHY}").json()
    assert {
        r["served_entity_name"]: r["traffic_percentage"]
        for r in endpoint["config"]["traffic_config"]["routes"]
    } == {
        "v3": 100,
        "v1": 0,
    }


def test_a_candidate_that_fails_a_fifth_of_its_queries_is_rolled_back(endpoints: World) -> None:
    world = endpoints
    world.behave(3, fail_above=0.8)
    try:
        with Load(world, FAILING) as load:
            r = rollout_update(world, FAILING, step_seconds=30)
            assert r.status_code == 200, r.text
            before = r.json()["pending_config"]["config_version"]
            done = wait_state(world, FAILING, "ROLLED_BACK", "SUCCEEDED", "FAILED", "CANCELED")
            time.sleep(2.0)  # queries sent after the decision
    finally:
        world.behave(3)
    assert done["state"] == "ROLLED_BACK", done
    evaluation = done["last_evaluation"]
    assert evaluation["verdict"] == "ROLL_BACK" and evaluation["breached"] == "max_error_rate"
    rolled = [e for e in events(world, FAILING) if e["kind"] == "ROLLOUT_ROLLED_BACK"]
    assert len(rolled) == 1
    measured = rolled[0]["details"]["measured"]["candidate"]
    assert measured["errors"] > 0 and measured["error_rate"] > 0.05, measured
    assert "error rate" in rolled[0]["message"]
    # live failures bounded: fewer than max_error_rate * requests + 10
    failed = [s for s in load.sent if s.status != 200]
    assert failed and all(s.served in (None, "v3") and s.x > 0.8 for s in failed)
    assert len(failed) < 0.05 * len(load.sent) + 10, (len(failed), len(load.sent))
    # after the decision, nothing reached the candidate
    late = load.between(rolled[0]["timestamp"] + 500, int(time.time() * 1000))
    assert late and all(s.served == "v1" for s in late)
    # the previous config was restored as a new version
    settled = wait_settled(world.admin, FAILING, timeout=90, poll=0.2)
    assert settled["config"]["config_version"] == before + 1
    assert [e["name"] for e in settled["config"]["served_entities"]] == ["v1"]
    assert "restored as version" in current(world, FAILING)["message"]


def test_a_slow_candidate_is_rolled_back_on_its_p99(endpoints: World) -> None:
    world = endpoints
    world.behave(3, sleep_ms=300)
    try:
        with Load(world, SLOW, threads=4):
            r = rollout_update(world, SLOW, step_seconds=30, max_error_rate=None, max_p99_ms=200)
            assert r.status_code == 200, r.text
            done = wait_state(world, SLOW, "ROLLED_BACK", "SUCCEEDED", "FAILED", "CANCELED")
    finally:
        world.behave(3)
    assert done["state"] == "ROLLED_BACK", done
    assert done["last_evaluation"]["breached"] == "max_p99_ms"
    assert done["last_evaluation"]["candidate"]["p99_ms"] > 200
    assert done["last_evaluation"]["incumbent"]["p99_ms"] < 200


def test_a_candidate_that_disagrees_with_the_incumbent_is_rolled_back(endpoints: World) -> None:
    world = endpoints
    world.behave(3, flip=True)  # the other label for every row
    try:
        with Load(world, FLIPPED):
            r = rollout_update(world, FLIPPED, step_seconds=30, max_error_rate=None, min_agreement=0.9)
            assert r.status_code == 200, r.text
            done = wait_state(world, FLIPPED, "ROLLED_BACK", "SUCCEEDED", "FAILED", "CANCELED")
    finally:
        world.behave(3)
    assert done["state"] == "ROLLED_BACK", done
    measured = done["last_evaluation"]["candidate"]
    assert done["last_evaluation"]["breached"] == "min_agreement"
    assert measured["compared"] > 0 and measured["agreement"] < 0.9, measured
    assert measured["errors"] == 0


def test_pause_resume_and_cancel(endpoints: World) -> None:
    world = endpoints
    world.behave(3)
    base = f"/api/2.0/serving-endpoints/{STEERED}/rollouts/current"
    assert world.admin.post(f"{base}/pause").status_code == 404  # no rollout yet
    r = rollout_update(world, STEERED, step_seconds=2, min_requests_per_step=3)
    assert r.status_code == 200, r.text
    wait_state(world, STEERED, "RUNNING", timeout=90)
    assert world.alice.post(f"{base}/pause").status_code == 403
    paused = world.admin.post(f"{base}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "PAUSED" and paused.json()["step"] == 0
    assert world.admin.post(f"{base}/pause").json()["error_code"] == "INVALID_STATE"
    versions = world.admin.get(f"/api/2.0/serving-endpoints/{STEERED}/config-versions").json()
    another = rollout_update(world, STEERED, candidate=4, incumbent=3)
    assert another.status_code == 409 and "rollout in progress" in another.json()["message"], another.text
    after = world.admin.get(f"/api/2.0/serving-endpoints/{STEERED}/config-versions").json()
    assert after == versions  # refused before anything was recorded
    with Load(world, STEERED, threads=2) as load:
        time.sleep(1.0)
        frozen = current(world, STEERED)["last_evaluation"]
        time.sleep(2.5)  # longer than a step: a paused rollout neither evaluates nor advances
    still = current(world, STEERED)
    assert still["state"] == "PAUSED" and still["step"] == 0
    assert still["last_evaluation"] == frozen
    assert {s.served for s in load.sent} == {"v1", "v3"}  # the step's split stays
    env = {"MODELPORT_HOST": world.server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}
    shown = CliRunner().invoke(app, ["rollouts", "status", STEERED], env=env)
    assert shown.exit_code == 0, shown.output
    assert "PAUSED" in shown.stdout and "v3" in shown.stdout and "25% (25% → 50% → 100%)" in shown.stdout
    resumed = CliRunner().invoke(app, ["rollouts", "resume", STEERED, "-o", "json"], env=env)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["state"] == "RUNNING"
    canceled = world.admin.post(f"{base}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["state"] == "CANCELED"
    watched = CliRunner().invoke(app, ["rollouts", "watch", STEERED], env=env)
    assert watched.exit_code == 1 and "CANCELED" in watched.stdout, watched.output
    kinds = [e["kind"] for e in events(world, STEERED)]
    assert kinds == ["ROLLOUT_STARTED", "ROLLOUT_PAUSED", "ROLLOUT_RESUMED", "ROLLOUT_CANCELED"], kinds
    with Load(world, STEERED, threads=2) as after:
        time.sleep(1.0)
    assert {s.served for s in after.sent} == {"v1"}  # cancel rolled the traffic back at once
    rollback = events(world, STEERED, "CONFIG_ROLLBACK")
    assert len(rollback) == 1 and rollback[0]["details"]["to_version"] == 1
    listed = world.admin.get(f"/api/2.0/serving-endpoints/{STEERED}/rollouts").json()["rollouts"]
    assert [x["state"] for x in listed] == ["CANCELED"]
    wait_settled(world.admin, STEERED, timeout=90, poll=0.2)


def test_a_rollout_needs_an_incumbent(endpoints: World) -> None:
    world = endpoints
    config = {"served_entities": [entity(3)], "rollout": {"steps": [50, 100]}}
    r = world.admin.put(f"/api/2.0/serving-endpoints/{STEERED}/config", json=config)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'config.rollout'" in r.json()["message"] and "incumbent" in r.json()["message"]
    r = world.admin.post(
        "/api/2.0/serving-endpoints",
        json={"name": "can-new", "config": {"served_entities": [entity(3)], "rollout": {"steps": [50]}}},
    )
    assert r.status_code == 400 and "'config.rollout'" in r.json()["message"], r.text
    assert world.admin.get("/api/2.0/serving-endpoints/can-new").status_code == 404
