"""Canary rollouts: the plan of an update (``plan_rollout``), the verdict on a step (``decide``) and
the repository's transitions and tallies (``store/rollouts.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelport.control.rollouts import (
    ADVANCE,
    FAST_MARGIN,
    HOLD,
    PROMOTE,
    ROLL_BACK,
    decide,
    minus,
    plan_rollout,
    quantile,
    step_traffic,
)
from modelport.errors import InvalidParameterValue
from modelport.store import Database, open_database
from modelport.store.records import EndpointRecord
from modelport.store.rollouts import LATENCY_BOUNDS_MS, RolloutRecord, Tally


def _entity(name: str, version: int) -> dict[str, Any]:
    return {"name": name, "entity_name": "m", "entity_version": str(version)}


def _body(entities: list[dict[str, Any]], traffic: dict[str, float], rollout: dict[str, Any] | None = None):
    body: dict[str, Any] = {
        "served_entities": entities,
        "traffic_config": {
            "routes": [{"served_entity_name": k, "traffic_percentage": v} for k, v in traffic.items()]
        },
    }
    if rollout is not None:
        body["rollout"] = {"candidate": None, "steps": [5.0, 25.0, 50.0, 100.0], **rollout}
    return body


SERVING = _body([_entity("v1", 1), _entity("v2", 2)], {"v1": 80, "v2": 20})


# ---- plan_rollout -----------------------------------------------------------------------------------


def test_no_rollout_block_is_no_plan() -> None:
    assert plan_rollout(SERVING, _body([_entity("v1", 1)], {"v1": 100})) is None


def test_the_candidate_is_the_entity_whose_traffic_rises_and_incumbents_keep_their_proportions() -> None:
    new = _body([_entity("v1", 1), _entity("v2", 2), _entity("v3", 3)], {"v3": 100, "v1": 0, "v2": 0}, {})
    plan = plan_rollout(SERVING, new)
    assert plan is not None
    assert plan["candidate"] == "v3"
    assert plan["incumbents"] == {"v1": 80.0, "v2": 20.0}
    assert plan["steps"] == [5.0, 25.0, 50.0, 100.0]
    assert plan["first_traffic"] == [
        {"served_entity_name": "v3", "traffic_percentage": 5.0},
        {"served_entity_name": "v1", "traffic_percentage": 76.0},
        {"served_entity_name": "v2", "traffic_percentage": 19.0},
    ]


def test_step_shares_always_sum_to_100() -> None:
    for p in (1.0, 5.0, 33.33, 50.0, 99.99):
        routes = step_traffic("c", {"a": 1.0, "b": 1.0, "d": 1.0}, p)
        assert round(sum(r["traffic_percentage"] for r in routes), 6) == 100.0


def test_a_named_candidate_may_already_take_traffic() -> None:
    serving = _body([_entity("v1", 1), _entity("v3", 3)], {"v1": 80, "v3": 20})
    new = _body([_entity("v1", 1), _entity("v3", 3)], {"v3": 100, "v1": 0}, {"candidate": "v3"})
    plan = plan_rollout(serving, new)
    assert plan is not None and plan["candidate"] == "v3" and plan["incumbents"] == {"v1": 80.0}


@pytest.mark.parametrize(
    ("serving", "new", "field"),
    [
        # a new endpoint: nothing serves to roll from
        (None, _body([_entity("v1", 1)], {"v1": 100}, {}), "config.rollout"),
        # no incumbent left in the new config
        (SERVING, _body([_entity("v3", 3)], {"v3": 100}, {}), "config.rollout"),
        # an incumbent whose model changed is no incumbent
        (
            _body([_entity("v1", 1)], {"v1": 100}),
            _body([_entity("v1", 9), _entity("v3", 3)], {"v3": 100, "v1": 0}, {"candidate": "v3"}),
            "config.rollout",
        ),
        # two entities raised: which one is the candidate?
        (
            _body([_entity("v1", 1)], {"v1": 100}),
            _body([_entity("v1", 1), _entity("v3", 3), _entity("v4", 4)], {"v3": 50, "v4": 50}, {}),
            "config.rollout.candidate",
        ),
        # none raised
        (
            SERVING,
            _body([_entity("v1", 1), _entity("v2", 2)], {"v1": 80, "v2": 20}, {}),
            "config.rollout.candidate",
        ),
        # the named candidate takes no traffic in the config
        (
            SERVING,
            _body([_entity("v1", 1), _entity("v2", 2), _entity("v3", 3)], {"v1": 100}, {"candidate": "v3"}),
            "config.rollout.candidate",
        ),
        # only the last step: nothing to canary
        (
            SERVING,
            _body([_entity("v1", 1), _entity("v3", 3)], {"v3": 100}, {"steps": [100.0]}),
            "config.rollout.steps",
        ),
    ],
)
def test_plans_that_cannot_roll_out_are_refused_naming_the_field(
    serving: dict[str, Any] | None, new: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidParameterValue) as err:
        plan_rollout(serving, new)
    assert f"'{field}" in err.value.message


# ---- decide -----------------------------------------------------------------------------------------

POLICY = {
    "steps": [25.0, 50.0, 100.0],
    "step_seconds": 10,
    "evaluation_seconds": 2,
    "max_error_rate": 0.05,
    "max_p99_ms": None,
    "min_agreement": None,
    "min_requests_per_step": 20,
}


def _tally(
    requests: int, errors: int = 0, latency_ms: float = 3.0, compared: int = 0, agreed: int = 0
) -> Tally:
    bounds = list(LATENCY_BOUNDS_MS)
    counts = [0] * (len(bounds) + 1)
    counts[next((i for i, b in enumerate(bounds) if latency_ms <= b), len(bounds))] = requests
    return Tally(requests, errors, bounds, counts, compared, agreed)


def test_a_healthy_step_holds_until_its_time_is_up_then_advances_then_promotes() -> None:
    assert decide(POLICY, 0, 5, _tally(30), _tally(90)).verdict == HOLD
    advance = decide(POLICY, 0, 10, _tally(30), _tally(90))
    assert advance.verdict == ADVANCE and "50%" in advance.reason
    promote = decide(POLICY, 1, 10.5, _tally(30), _tally(30))
    assert promote.verdict == PROMOTE
    assert promote.measured["candidate"]["requests"] == 30
    assert promote.measured["incumbent"]["error_rate"] == 0


def test_a_step_without_its_minimum_requests_holds_and_says_so() -> None:
    d = decide(POLICY, 0, 60, _tally(7), _tally(20))
    assert d.verdict == HOLD
    assert "7 of the 20" in d.reason


def test_error_rate_above_the_limit_rolls_back_once_the_sample_is_big_enough() -> None:
    assert (
        decide(POLICY, 0, 1, _tally(19, errors=2), _tally(50)).verdict == HOLD
    )  # 2 errors: not above 0.05 * 20 + 3
    d = decide(POLICY, 0, 1, _tally(40, errors=3), _tally(50))  # 7.5 % of 40
    assert d.verdict == ROLL_BACK and d.breached == "max_error_rate"
    assert d.measured["candidate"]["error_rate"] == 0.075
    assert decide(POLICY, 0, 1, _tally(40, errors=2), _tally(50)).verdict == HOLD  # 5 %: not above


def test_many_failures_roll_back_before_the_minimum_sample() -> None:
    limit = int(0.05 * 20 + FAST_MARGIN)  # errors above this breach with any sample size
    assert decide(POLICY, 0, 1, _tally(10, errors=limit), _tally(50)).verdict == HOLD
    d = decide(POLICY, 0, 1, _tally(10, errors=limit + 1), _tally(50))
    assert d.verdict == ROLL_BACK and "5 of 10" in d.reason


def test_a_candidate_that_starts_failing_late_in_a_step_is_caught_by_the_recent_window() -> None:
    before = _tally(1000)
    now = _tally(1040, errors=10)  # 1 % over the step, 25 % of the last 40
    recent = minus(now, before)
    assert recent.requests == 40 and recent.errors == 10
    assert decide(POLICY, 0, 5, now, _tally(100)).verdict == HOLD
    d = decide(POLICY, 0, 5, now, _tally(100), recent)
    assert d.verdict == ROLL_BACK and "since the last evaluation" in d.reason
    assert d.measured["recent"]["errors"] == 10


def test_a_slow_candidate_rolls_back_on_p99() -> None:
    policy = {**POLICY, "max_error_rate": None, "max_p99_ms": 200.0}
    assert decide(policy, 0, 1, _tally(25, latency_ms=150), _tally(25)).verdict == HOLD
    d = decide(policy, 0, 1, _tally(25, latency_ms=320), _tally(25))
    assert d.verdict == ROLL_BACK and d.breached == "max_p99_ms"
    assert d.measured["candidate"]["p99_ms"] > 200
    # before the minimum sample: when enough requests alone are certainly slower than the limit
    assert decide(policy, 0, 1, _tally(3, latency_ms=320), _tally(25)).verdict == HOLD
    assert decide(policy, 0, 1, _tally(5, latency_ms=320), _tally(25)).verdict == ROLL_BACK


def test_low_agreement_rolls_back() -> None:
    policy = {**POLICY, "max_error_rate": None, "min_agreement": 0.9}
    assert decide(policy, 0, 1, _tally(30, compared=25, agreed=24), _tally(30)).verdict == HOLD
    d = decide(policy, 0, 1, _tally(30, compared=25, agreed=20), _tally(30))
    assert d.verdict == ROLL_BACK and d.breached == "min_agreement"
    assert d.measured["candidate"]["agreement"] == 0.8


def test_quantiles_of_the_histogram() -> None:
    assert quantile([10, 20], [0, 0, 0], 0.5) is None
    assert quantile([10, 20], [10, 0, 0], 0.5) == 5.0
    assert quantile([10, 20], [0, 10, 0], 0.99) == pytest.approx(19.9)
    assert quantile([10, 20], [0, 0, 4], 0.99) == 20.0  # above every bound: the last bound


# ---- the repository -----------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'r.db'}")
    database.principals.create("admin", "user", display_name=None, is_admin=True, now_ms=1)
    yield database
    database.close()


def _setup(db: Database) -> RolloutRecord:
    endpoint = EndpointRecord(
        id="e1", name="ep", creator="a", created_ms=1, updated_ms=1, config_update="NOT_UPDATING"
    )
    owner = db.principals.get("admin")
    assert owner is not None
    db.endpoints.create(endpoint, None, owner_id=owner.id)
    rollout = RolloutRecord(
        id="r1",
        endpoint_id="e1",
        config_version=2,
        from_version=1,
        policy=POLICY,
        candidate="v3",
        incumbents={"v1": 100.0},
        state="WAITING",
        step=0,
        step_started_ms=None,
        creator="a",
        created_ms=10,
        updated_ms=10,
    )
    db.rollouts.create(rollout, {"id": "r1", "config_version": 2, "traffic": []})
    return rollout


def test_a_transition_wins_once_and_writes_the_endpoint_column_with_a_new_marker(db: Database) -> None:
    _setup(db)
    before = db.endpoints.get_by_id("e1")
    assert before is not None and before.rollout == {"id": "r1", "config_version": 2, "traffic": []}
    changed = db.rollouts.transition(
        "r1",
        ["WAITING"],
        20,
        state="RUNNING",
        step_started_ms=20,
        endpoint_rollout={"id": "r1", "state": "RUNNING"},
    )
    assert changed is not None and changed.state == "RUNNING"
    assert db.rollouts.transition("r1", ["WAITING"], 21, state="RUNNING") is None  # lost: not WAITING
    after = db.endpoints.get_by_id("e1")
    assert after is not None and after.rollout == {"id": "r1", "state": "RUNNING"}
    assert after.updated_ms > before.updated_ms
    # a step condition: only the evaluation that saw step 0 advances it
    assert db.rollouts.transition("r1", ["RUNNING"], 30, at_step=1, step=2) is None
    advanced = db.rollouts.transition("r1", ["RUNNING"], 30, at_step=0, step=1, step_started_ms=30)
    assert advanced is not None and advanced.step == 1
    # paused at 40, resumed at 100: the step goes on for the time it had left
    db.rollouts.transition("r1", ["RUNNING"], 40, state="PAUSED")
    resumed = db.rollouts.transition("r1", ["PAUSED"], 100, resume=True, state="RUNNING")
    assert resumed is not None and resumed.step_started_ms == 90
    # another rollout's column is left alone
    db.endpoints.update_fields("e1", rollout={"id": "other"})
    db.rollouts.transition("r1", ["RUNNING"], 110, state="SUCCEEDED", endpoint_rollout=None)
    still = db.endpoints.get_by_id("e1")
    assert still is not None and still.rollout == {"id": "other"}
    assert [r.id for r in db.rollouts.active()] == []
    current = db.rollouts.current("e1")
    assert current is not None and current.state == "SUCCEEDED"


def test_tallies_are_per_process_and_summed_per_step(db: Database) -> None:
    _setup(db)
    db.rollouts.save_tallies("p1", {("r1", 0, "v3"): _tally(10, errors=1)}, 1)
    db.rollouts.save_tallies("p1", {("r1", 0, "v3"): _tally(12, errors=2)}, 2)  # rewritten, not added
    db.rollouts.save_tallies("p2", {("r1", 0, "v3"): _tally(5), ("r1", 0, "v1"): _tally(40)}, 2)
    db.rollouts.save_tallies("p2", {("r1", 1, "v3"): _tally(3), ("gone", 0, "v3"): _tally(3)}, 2)
    sums = db.rollouts.step_tallies("r1", 0)
    assert (sums["v3"].requests, sums["v3"].errors, sums["v1"].requests) == (17, 2, 40)
    assert sum(sums["v3"].counts) == 17
    assert db.rollouts.step_tallies("r1", 1)["v3"].requests == 3
