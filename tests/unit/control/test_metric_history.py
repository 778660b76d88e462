"""Metrics history (``control/metric_history.py``): the bucket math, the step and range rules,
the points summed over processes, and a process's recorder reading a real Prometheus registry
into minute rows of a SQLite store in a temporary folder."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelport.control.metric_history import (
    LATENCY_BOUNDS_S,
    HistoryRecorder,
    _Cumulative,
    choose_step,
    increase,
    parse_range,
    points,
    quantile,
)
from modelport.errors import InvalidParameterValue
from modelport.metrics import Metrics
from modelport.store import Database, open_database
from modelport.store.metric_history import MINUTE, Counts, HistoryRow, MetricHistoryRepository
from modelport.store.records import EndpointRecord

NOW = 1_800_000_000_000  # a whole hour, in ms
DAY = 86400_000


def _db(tmp_path: Path) -> Database:
    database = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    owner = database.principals.create("admin", "user", display_name=None, is_admin=True, now_ms=1).id
    for eid in ("e1", "e2"):
        record = EndpointRecord(
            id=eid,
            name=f"ep-{eid}",
            creator="admin",
            created_ms=1,
            updated_ms=1,
            config_update="NOT_UPDATING",
        )
        database.endpoints.create(record, None, owner)
    return database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = _db(tmp_path)
    yield database
    database.close()


# ---- bucket math --------------------------------------------------------------------------------------
def test_bounds_are_those_of_the_endpoint_latency_histogram() -> None:
    m = Metrics()
    m.endpoint_latency.labels("e", "s").observe(0.2)
    les = [
        s.labels["le"] for f in m.endpoint_latency.collect() for s in f.samples if s.name.endswith("_bucket")
    ]
    assert les[-1] == "+Inf"
    assert tuple(float(x) for x in les[:-1]) == tuple(float(b) for b in LATENCY_BOUNDS_S)


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile() -> None:
    n = len(LATENCY_BOUNDS_S) + 1
    counts = [0] * n
    counts[4] = 10  # (0.01, 0.025]
    assert quantile(counts, 0.5) == pytest.approx(0.01 + 0.015 * 0.5)
    assert quantile(counts, 0.99) == pytest.approx(0.01 + 0.015 * 0.99)
    counts[0] = 10  # (0, 0.001]: half of 20 below 0.001
    assert quantile(counts, 0.5) == pytest.approx(0.001)
    assert quantile(counts, 0.25) == pytest.approx(0.0005)
    assert quantile([0] * n, 0.5) is None
    inf = [0] * n
    inf[-1] = 3
    assert quantile(inf, 0.99) == 120.0


def test_quantile_of_summed_buckets_is_that_of_all_observations() -> None:
    m = Metrics()
    values = [0.003 * (i % 7 + 1) for i in range(50)] + [0.8, 1.7, 3.0]
    for v in values:
        m.endpoint_latency.labels("e", "s").observe(v)
    from modelport.control.metric_history import read_registry

    counts = increase(None, read_registry(m)[("e", "s")]).latency_counts
    assert sum(counts) == len(values)
    ordered = sorted(values)
    p50 = quantile(counts, 0.5)
    assert p50 is not None
    # the exact median lies in the bucket the estimate falls in
    bounds = (0.0, *LATENCY_BOUNDS_S)
    i = next(k for k in range(1, len(bounds)) if bounds[k] >= p50)
    assert bounds[i - 1] <= ordered[len(ordered) // 2] <= bounds[i]


def test_default_step_by_range() -> None:
    assert choose_step(3600) == 60
    assert choose_step(7200) == 60
    assert choose_step(7201) == 300
    assert choose_step(48 * 3600) == 300
    assert choose_step(48 * 3600 + 1) == 3600
    assert choose_step(14 * 86400) == 3600


def test_parse_range_defaults_validation_and_hourly_old_ranges() -> None:
    kw: dict[str, Any] = {"days": 14, "minute_hours": 48}
    assert parse_range(None, None, None, NOW, **kw) == (NOW - 3600_000, NOW, 60)
    assert parse_range(str(NOW - DAY), None, None, NOW, **kw) == (NOW - DAY, NOW, 300)
    assert parse_range(str(NOW - DAY), None, "60", NOW, **kw) == (NOW - DAY, NOW, 60)
    # a week: only hour rows before 48 h, so steps of an hour even when asked for minutes
    assert parse_range(str(NOW - 7 * DAY), None, "60", NOW, **kw)[2] == 3600
    # the start is raised to the retention's
    assert parse_range(str(NOW - 30 * DAY), None, None, NOW, **kw)[0] == NOW - 14 * DAY
    for since, until, step in (
        ("yesterday", None, None),
        ("-5", None, None),
        (None, None, "90"),
        (None, None, "30"),
        (None, None, "x"),
        (str(NOW), str(NOW - 1), None),
        (None, str(NOW - 20 * DAY), None),  # entirely before the retention
        (str(NOW), str(NOW + 10 * DAY), "60"),  # 14,400 steps
    ):
        with pytest.raises(InvalidParameterValue):
            parse_range(since, until, step, NOW, **kw)


# ---- increases of the registry's counters -----------------------------------------------------------
def _cum(statuses: dict[str, float], buckets: dict[int, float], total: float) -> _Cumulative:
    c = _Cumulative(statuses=statuses)
    running = 0.0
    for i in range(len(c.buckets)):
        running += buckets.get(i, 0.0)
        c.buckets[i] = running
    c.latency_sum = total
    return c


def test_increase_counts_statuses_classes_and_buckets_since_the_last_read() -> None:
    before = _cum({"200": 5, "404": 1}, {3: 6}, 0.05)
    now = _cum({"200": 8, "404": 1, "500": 2, "rerouted": 4}, {3: 8, 5: 3, 16: 1}, 0.5)
    d = increase(before, now)
    assert d.statuses == {"200": 3, "500": 2}
    assert (d.requests, d.errors_4xx, d.errors_5xx) == (5, 0, 2)
    assert d.latency_counts[3] == 2 and d.latency_counts[5] == 3 and d.latency_counts[16] == 1
    assert sum(d.latency_counts) == 6
    assert d.latency_sum_s == pytest.approx(0.45)


def test_increase_after_a_reset_counts_everything_read() -> None:
    before = _cum({"200": 9}, {2: 9}, 1.0)
    now = _cum({"200": 2, "429": 1}, {2: 3}, 0.1)  # the series was dropped and made again
    d = increase(before, now)
    assert d.statuses == {"200": 2, "429": 1} and d.errors_4xx == 1
    assert sum(d.latency_counts) == 3 and d.latency_sum_s == pytest.approx(0.1)


# ---- points --------------------------------------------------------------------------------------------
def _counts(
    requests: int, *, replicas: float | None = None, latency_s: float = 0.01, status: str = "200"
) -> Counts:
    c = Counts(
        requests=requests, statuses={status: requests}, latency_counts=[0] * (len(LATENCY_BOUNDS_S) + 1)
    )
    i = next(k for k, b in enumerate(LATENCY_BOUNDS_S) if b >= latency_s)
    c.latency_counts[i] = requests
    c.latency_sum_s = latency_s * requests
    if status.startswith("5"):
        c.errors_5xx = requests
    elif status.startswith("4"):
        c.errors_4xx = requests
    c.replicas = replicas
    return c


def test_points_sum_processes_and_entities_and_take_the_most_replicas_over_time() -> None:
    m0 = NOW - 3600_000
    rows = [
        HistoryRow("a", MINUTE, m0, "p1", _counts(10, replicas=2)),
        HistoryRow("a", MINUTE, m0, "p2", _counts(5, replicas=1)),  # same minute, another process
        HistoryRow("a", MINUTE, m0 + 60_000, "p1", _counts(3, replicas=1)),
        HistoryRow("b", MINUTE, m0 + 60_000, "p2", _counts(4, status="503", latency_s=2.0)),
    ]
    flat = [r.flat() for r in rows]
    overall, entities = points(flat, m0, m0 + 300_000, 300, NOW)
    assert len(overall) == 1
    p = overall[0]
    assert p["time_ms"] == m0 and p["requests"] == 22
    assert p["requests_per_second"] == pytest.approx(22 / 300)
    assert p["errors_5xx"] == 4 and p["errors"] == {"503": 4} and p["errors_4xx"] == 0
    assert p["replicas"] == 3  # 2 + 1 in the first minute, 1 in the second
    assert p["concurrency"] == pytest.approx((18 * 0.01 + 4 * 2.0) / 300, abs=1e-6)
    assert p["latency_p99_ms"] is not None and 1000 < p["latency_p99_ms"] <= 2500
    assert set(entities) == {"a", "b"}
    assert entities["a"][0]["requests"] == 18 and entities["b"][0]["requests"] == 4
    assert entities["b"][0]["replicas"] is None
    # by minute: every step has a point, those without rows have no requests
    overall, _ = points(flat, m0, m0 + 300_000, 60, NOW)
    assert [p["requests"] for p in overall] == [15, 7, 0, 0, 0]
    assert overall[2]["latency_p50_ms"] is None


def test_points_of_the_current_step_are_rates_over_its_elapsed_part() -> None:
    now = NOW + 30_000  # half of the minute gone
    overall, _ = points([HistoryRow("a", MINUTE, NOW, "p", _counts(30)).flat()], NOW - 60_000, now, 60, now)
    assert [p["requests_per_second"] for p in overall] == [0.0, pytest.approx(1.0)]


# ---- a process's recorder -----------------------------------------------------------------------------
class _Set:
    def __init__(self, name: str, replicas: int) -> None:
        self.name, self.replicas = name, replicas

    def stats(self) -> dict[str, Any]:
        return {"replicas": self.replicas, "in_flight": 0}


class _Backend:
    def __init__(self) -> None:
        self.sets: list[tuple[str, int, _Set]] = []

    def all_sets(self) -> list[tuple[str, int, _Set]]:
        return self.sets


def _query(m: Metrics, endpoint: str, entity: str, status: str, seconds: float) -> None:
    m.endpoint_requests.labels(endpoint, entity, status).inc()
    m.endpoint_latency.labels(endpoint, entity).observe(seconds)


def _minute_rows(repo: MetricHistoryRepository, endpoint_id: str) -> list[HistoryRow]:
    return [r for r in repo.rows(endpoint_id, 0, 2**62) if r.step_s == MINUTE]


def test_recorder_writes_each_minute_once_with_its_totals(db: Database) -> None:
    repo = MetricHistoryRepository(db.engine)
    m = Metrics()
    backend = _Backend()
    rec = HistoryRecorder(repo, m, "proc-1", replicas=backend, interval=10)
    t0 = NOW / 1000  # a minute boundary, in seconds
    for _ in range(3):
        _query(m, "ep-e1", "a", "200", 0.02)
    _query(m, "ep-e1", "a", "rerouted", 0.02)
    backend.sets = [("e1", 1, _Set("a", 1))]
    rec.tick(t0 + 10, rec.sample_replicas())
    _query(m, "ep-e1", "a", "404", 0.004)
    backend.sets = [("e1", 1, _Set("a", 2)), ("e1", 2, _Set("a", 1))]  # two config versions
    rec.tick(t0 + 20, rec.sample_replicas())
    rows = _minute_rows(repo, "e1")
    assert len(rows) == 1
    r = rows[0]
    assert (r.start_ms, r.process, r.served_entity) == (NOW, "proc-1", "a")
    assert r.counts.requests == 4 and r.counts.statuses == {"200": 3, "404": 1} and r.counts.errors_4xx == 1
    assert r.counts.replicas == 3
    # the tick at the minute's end closes it; the next minute is a row of its own
    _query(m, "ep-e1", "a", "200", 0.02)
    rec.tick(t0 + 60, rec.sample_replicas())
    _query(m, "ep-e1", "a", "500", 0.02)
    backend.sets = [("e1", 2, _Set("a", 1))]
    rec.tick(t0 + 70, rec.sample_replicas())
    rows = _minute_rows(repo, "e1")
    assert [(r.start_ms, r.counts.requests, r.counts.replicas) for r in rows] == [
        (NOW, 5, 3),
        (NOW + 60_000, 1, 1),
    ]
    assert rows[1].counts.errors_5xx == 1
    assert sum(sum(r.counts.latency_counts) for r in rows) == 7  # the rerouted call's latency too
    assert rec.flush_seconds and all(s >= 0 for s in rec.flush_seconds)


def test_recorders_of_two_processes_write_rows_of_their_own(db: Database) -> None:
    repo = MetricHistoryRepository(db.engine)
    m1, m2 = Metrics(), Metrics()
    r1, r2 = HistoryRecorder(repo, m1, "p1"), HistoryRecorder(repo, m2, "p2")
    for _ in range(4):
        _query(m1, "ep-e1", "a", "200", 0.01)
    for _ in range(6):
        _query(m2, "ep-e1", "a", "200", 0.01)
    t = NOW / 1000 + 10
    r1.tick(t, {})
    r2.tick(t, {})
    overall, _ = points(repo.flat_rows("e1", NOW, NOW + 60_000), NOW, NOW + 60_000, 60, NOW + 60_000)
    assert overall[0]["requests"] == 10


def test_a_failed_write_is_made_whole_by_the_next(db: Database) -> None:
    class Flaky(MetricHistoryRepository):
        fail = True

        def save(self, *args: Any, **kwargs: Any) -> None:
            if self.fail:
                self.fail = False
                raise OSError("store away")
            super().save(*args, **kwargs)

    repo = Flaky(db.engine)
    m = Metrics()
    rec = HistoryRecorder(repo, m, "p")
    _query(m, "ep-e2", "x", "200", 0.01)
    with pytest.raises(OSError):
        rec.tick(NOW / 1000 + 10, {})
    _query(m, "ep-e2", "x", "200", 0.01)
    rec.tick(NOW / 1000 + 20, {})
    rows = _minute_rows(repo, "e2")
    assert [r.counts.requests for r in rows] == [2]


def test_a_deleted_endpoints_rows_go_and_later_writes_are_dropped(db: Database) -> None:
    repo = MetricHistoryRepository(db.engine)
    m = Metrics()
    rec = HistoryRecorder(repo, m, "p")
    _query(m, "ep-e2", "x", "200", 0.01)
    rec.tick(NOW / 1000 + 10, {})
    assert len(_minute_rows(repo, "e2")) == 1
    db.endpoints.delete("e2")
    assert _minute_rows(repo, "e2") == []
    _query(m, "ep-e2", "x", "200", 0.01)
    rec.tick(NOW / 1000 + 20, {("e2", "x"): 1.0})  # no error, nothing written
    assert _minute_rows(repo, "e2") == []


def test_the_registry_is_read_at_minute_boundaries(db: Database) -> None:
    """The loop's ticks are wall-clock multiples of the interval, so a minute's row gets what
    was counted up to its end (the tick closing a minute is attributed to it)."""
    repo = MetricHistoryRepository(db.engine)
    m = Metrics()
    rec = HistoryRecorder(repo, m, "p", interval=15)
    _query(m, "ep-e1", "a", "200", 0.01)
    rec.tick(NOW / 1000 + 60, {})  # the tick at the boundary: still the first minute
    assert [r.start_ms for r in _minute_rows(repo, "e1")] == [NOW]
    assert math.isclose(60 % 15, 0)
