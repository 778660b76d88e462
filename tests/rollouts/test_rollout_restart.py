"""A server restarted in the middle of a rollout resumes it where it was (``control/rollout_runner.py``):
the step, when it started and the tallies are in the store, so the new leader goes on at the same
step, holds it until the step has its minimum of candidate requests, then promotes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.rollouts.canary import Load, current, events, rollout_update, wait_state
from tests.rollouts.world import World, entity

NAME = "can-restart"


@pytest.fixture(scope="module")
def endpoint(world: World) -> Iterator[World]:
    try:
        world.behave(3)
        world.endpoint(NAME, [entity(1)], inference_table=False)
        yield world
    finally:
        world.admin.delete(f"/api/2.0/serving-endpoints/{NAME}")


def test_a_restart_mid_rollout_resumes_at_the_same_step(endpoint: World) -> None:
    world = endpoint
    with Load(world, NAME, threads=2, pause=0.02):
        r = rollout_update(world, NAME, step_seconds=2, min_requests_per_step=20)
        assert r.status_code == 200, r.text
        wait_state(world, NAME, "RUNNING", timeout=90, step=1)
    before = current(world, NAME)
    started = time.monotonic()
    world.server.stop()
    world.server.start()
    print(f"restarted in {time.monotonic() - started:.1f} s")
    after = current(world, NAME)
    assert (after["id"], after["state"], after["step"]) == (before["id"], "RUNNING", 1)
    assert after["step_started_timestamp"] == before["step_started_timestamp"]
    with Load(world, NAME):
        done = wait_state(world, NAME, "SUCCEEDED", "ROLLED_BACK", "FAILED", "CANCELED", timeout=90)
        time.sleep(1.0)
    assert done["state"] == "SUCCEEDED", (done, events(world, NAME))
    print(f"promoted {time.monotonic() - started:.1f} s after the restart began")
    kinds = [e["kind"] for e in events(world, NAME)]
    assert kinds == ["ROLLOUT_STARTED", "ROLLOUT_STEP", "ROLLOUT_PROMOTED"], kinds
    promoted = events(world, NAME)[-1]
    assert promoted["details"]["step"] == 1 and promoted["details"]["measured"]["candidate"]["requests"] >= 20
