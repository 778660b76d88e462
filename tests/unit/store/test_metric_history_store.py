"""Metrics history rows (``store/metric_history.py``) on SQLite in a temporary folder: minute rows
of several processes, the leader's downsampling into hour rows (sums kept exactly, replicas the
most of any minute, twice changes nothing) and the retention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.control.metric_history import LATENCY_BOUNDS_S, HistoryKeeper, history
from modelport.store import Database, open_database
from modelport.store.metric_history import HOUR, MINUTE, Counts, MetricHistoryRepository, hour_rows
from modelport.store.records import EndpointRecord

NOW = 1_800_000_000_000  # a whole hour, in ms
H_MS = HOUR * 1000
DAY = 86400_000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    owner = database.principals.create("admin", "user", display_name=None, is_admin=True, now_ms=1).id
    record = EndpointRecord(
        id="e1", name="ep", creator="admin", created_ms=1, updated_ms=1, config_update="NOT_UPDATING"
    )
    database.endpoints.create(record, None, owner)
    yield database
    database.close()


def _c(requests: int, replicas: float | None = None, status: str = "200") -> Counts:
    counts = [0] * (len(LATENCY_BOUNDS_S) + 1)
    counts[6] = requests
    return Counts(
        requests=requests,
        errors_5xx=requests if status.startswith("5") else 0,
        statuses={status: requests},
        latency_counts=counts,
        latency_sum_s=0.07 * requests,
        replicas=replicas,
    )


def _fill(repo: MetricHistoryRepository, start: int, minutes: int) -> int:
    """Minute rows of two processes for ``minutes`` minutes from ``start``; returns the requests."""
    total = 0
    for i in range(minutes):
        at = start + i * 60_000
        repo.save("p1", {("e1", "a", at): _c(i + 1, replicas=1 + i % 3)}, at)
        repo.save("p2", {("e1", "a", at): _c(2, replicas=1), ("e1", "b", at): _c(1, status="500")}, at)
        total += i + 1 + 2 + 1
    return total


def test_hour_rows_sum_processes_then_take_the_most_replicas() -> None:
    minutes = [
        ("a", 0, _c(1, replicas=2)),
        ("a", 0, _c(1, replicas=2)),  # another process, same minute: 4 replicas
        ("a", 60_000, _c(5, replicas=3)),
        ("a", H_MS, _c(7, replicas=1)),
    ]
    hours = hour_rows(minutes)
    assert hours[("a", 0)].requests == 7 and hours[("a", 0)].replicas == 4
    assert hours[("a", H_MS)].requests == 7 and hours[("a", H_MS)].replicas == 1


def test_downsampling_keeps_totals_and_takes_only_old_whole_hours(db: Database) -> None:
    repo = MetricHistoryRepository(db.engine)
    old_start = NOW - 3 * DAY  # 72 h ago: two hours of minute rows, then recent ones
    old_total = _fill(repo, old_start, 120)
    recent_total = _fill(repo, NOW - 3600_000, 30)
    since, until = NOW - 4 * DAY, NOW
    before = history(repo, "e1", since, until, 3600, NOW)
    keeper = HistoryKeeper(repo, leading=lambda: True, clock=lambda: NOW)
    taken, pruned = keeper.run_once()
    assert taken == 120 * 3 and pruned == 0
    rows = repo.rows("e1", 0, 2**62)
    hours = [r for r in rows if r.step_s == HOUR]
    assert {(r.served_entity, r.start_ms, r.process) for r in hours} == {
        ("a", old_start, ""),
        ("a", old_start + H_MS, ""),
        ("b", old_start, ""),
        ("b", old_start + H_MS, ""),
    }
    assert sum(r.counts.requests for r in hours) == old_total
    assert all(r.start_ms >= NOW - 3600_000 for r in rows if r.step_s == MINUTE)
    assert sum(r.counts.requests for r in rows if r.step_s == MINUTE) == recent_total
    a0 = next(r for r in hours if r.served_entity == "a" and r.start_ms == old_start)
    assert a0.counts.replicas == 4  # p1's 3 + p2's 1, the most of any minute
    assert a0.counts.statuses == {"200": sum(range(1, 61)) + 120}
    b0 = next(r for r in hours if r.served_entity == "b" and r.start_ms == old_start)
    assert b0.counts.errors_5xx == 60 and b0.counts.replicas is None
    # the route's answer over the range is the same before and after, point by point
    after = history(repo, "e1", since, until, 3600, NOW)
    assert [p["requests"] for p in after["points"]] == [p["requests"] for p in before["points"]]
    assert [p["replicas"] for p in after["points"]] == [p["replicas"] for p in before["points"]]
    assert [p["latency_p99_ms"] for p in after["points"]] == [p["latency_p99_ms"] for p in before["points"]]
    assert keeper.run_once() == (0, 0)  # again: nothing to take
    assert sum(r.counts.requests for r in repo.rows("e1", 0, 2**62)) == old_total + recent_total


def test_minutes_of_the_48th_hour_wait_for_the_whole_hour(db: Database) -> None:
    repo = MetricHistoryRepository(db.engine)
    now = NOW + 30 * 60_000  # half past: the cutoff is 48 h before the last whole hour
    repo.save("p", {("e1", "a", NOW - 48 * H_MS): _c(1)}, 0)  # in the hour 48 h before NOW
    repo.save("p", {("e1", "a", NOW - 48 * H_MS - 60_000): _c(1)}, 0)  # the hour before it
    keeper = HistoryKeeper(repo, leading=lambda: True, clock=lambda: now)
    assert keeper.run_once() == (1, 0)
    steps = sorted((r.step_s, r.start_ms) for r in repo.rows("e1", 0, 2**62))
    assert steps == [(MINUTE, NOW - 48 * H_MS), (HOUR, NOW - 49 * H_MS)]


def test_a_late_minute_row_is_added_to_its_hour_row(db: Database) -> None:
    repo = MetricHistoryRepository(db.engine)
    at = NOW - 3 * DAY
    repo.save("p", {("e1", "a", at): _c(3, replicas=2)}, 0)
    keeper = HistoryKeeper(repo, leading=lambda: True, clock=lambda: NOW)
    keeper.run_once()
    repo.save("q", {("e1", "a", at + 60_000): _c(4, replicas=5)}, 0)
    keeper.run_once()
    (row,) = repo.rows("e1", 0, 2**62)
    assert (row.step_s, row.counts.requests, row.counts.replicas) == (HOUR, 7, 5)


def test_retention_deletes_rows_older_than_the_days_kept(db: Database) -> None:
    repo = MetricHistoryRepository(db.engine)
    repo.save("p", {("e1", "a", NOW - 15 * DAY): _c(1), ("e1", "a", NOW - 13 * DAY): _c(2)}, 0)
    keeper = HistoryKeeper(repo, leading=lambda: True, clock=lambda: NOW, days=14)
    taken, pruned = keeper.run_once()
    assert (taken, pruned) == (2, 1)
    (row,) = repo.rows("e1", 0, 2**62)
    assert row.start_ms == NOW - 13 * DAY and row.counts.requests == 2


def test_rows_go_with_their_endpoint(db: Database) -> None:
    repo = MetricHistoryRepository(db.engine)
    repo.save("p", {("e1", "a", NOW): _c(1)}, 0)
    repo.save("p", {("missing", "a", NOW): _c(1)}, 0)  # an endpoint deleted meanwhile: dropped
    assert len(repo.rows("e1", 0, 2**62)) == 1
    db.endpoints.delete("e1")
    assert repo.rows("e1", 0, 2**62) == []
