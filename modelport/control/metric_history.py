"""Metrics history: what each endpoint and served entity answered, kept in the store for 14 days
(``store/metric_history.py``), and the points of ``GET .../metrics/history``.

- :class:`HistoryRecorder` runs in every server process (``serve --workers N`` and several
  servers on one PostgreSQL store alike). Every ``interval`` seconds, at wall-clock multiples of
  it (so minute boundaries are ticks when it divides 60), it reads this process's Prometheus
  counters of endpoint queries (``modelport_endpoint_requests`` by status,
  ``modelport_endpoint_request_duration_seconds``), takes the increase since its last read and
  adds it to this process's row of the minute the tick closes; in the process that runs
  replicas it also samples each served entity's ready replicas (the most seen in the minute).
  It then rewrites its rows that changed with their totals so far, off the event loop. A query
  costs nothing more: the registry is read on a worker thread, the counters are those
  ``/metrics`` shows. Queries whose call was re-sent to a new config (status ``rerouted``) are
  counted once, by the call that answered.
- :class:`HistoryKeeper` runs on the leader: minute rows older than ``minute_hours`` (48) become
  hour rows, and rows older than ``days`` (14) are deleted.
- :func:`history` answers the route: rows summed over processes into points of ``step``
  seconds, overall and per served entity, with requests per second, errors by status, latency
  p50/p99 (from the summed histogram buckets, interpolated within a bucket as Prometheus'
  ``histogram_quantile`` does), the most replicas and the mean concurrency (the sum of the
  queries' latencies over the period's length: Little's law).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelport.clock import now_ms
from modelport.control.leader_work import LeaderWork
from modelport.errors import InvalidParameterValue
from modelport.metrics import Metrics, histogram_quantile
from modelport.store.metric_history import HOUR, MINUTE, Counts, FlatRow, MetricHistoryRepository

__all__ = [
    "LATENCY_BOUNDS_S",
    "HistoryKeeper",
    "HistoryRecorder",
    "choose_step",
    "history",
    "points",
    "quantile",
]

log = logging.getLogger("modelport.metrics")

#: The bounds of the latency histogram's buckets, in seconds (those of ``modelport.metrics``; a
#: unit test checks they are the same): ``latency_counts`` has one more count, for ``+Inf``.
LATENCY_BOUNDS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
)  # fmt: skip

#: Most points one answer holds (14 days of minutes is 20,160).
MAX_POINTS = 5000
#: Statuses of calls that are not answers (sent again to the new config: counted by that call).
_NOT_ANSWERS = frozenset({"rerouted"})
#: A process whose store is away keeps its rows of at most this many past minutes.
_KEEP_MINUTES = 60


# ---- bucket math ---------------------------------------------------------------------------------
def quantile(counts: Sequence[int], q: float, bounds: Sequence[float] = LATENCY_BOUNDS_S) -> float | None:
    """The ``q`` quantile (0 to 1) of a histogram (``counts``: one per bucket, ``+Inf`` last, not
    cumulative), in the bounds' unit: linear within the bucket where it falls, as Prometheus'
    ``histogram_quantile``; the largest bound when it falls in ``+Inf``; None when empty."""
    return histogram_quantile(bounds, counts, q)


def choose_step(range_s: float) -> int:
    """The default step of a range: a minute up to 2 hours, 5 minutes up to 48 hours, an hour
    beyond (older rows are hourly anyway)."""
    if range_s <= 2 * 3600:
        return MINUTE
    if range_s <= 48 * 3600:
        return 300
    return HOUR


class _Sum:
    """One point being summed: counts added up, and replicas per period (summed over processes
    and entities) of which the point keeps the most."""

    __slots__ = ("errors_4xx", "errors_5xx", "latency", "latency_sum", "periods", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = self.errors_4xx = self.errors_5xx = 0
        self.statuses: dict[str, int] = {}
        self.latency = [0] * (len(LATENCY_BOUNDS_S) + 1)
        self.latency_sum = 0.0
        self.periods: dict[tuple[int, int], float] = {}

    def add(self, row: FlatRow) -> None:
        _, step_s, start_ms, requests, e4, e5, statuses, latency, latency_sum, replicas = row
        self.requests += requests
        self.errors_4xx += e4
        self.errors_5xx += e5
        mine = self.statuses
        for status, n in statuses.items():
            mine[status] = mine.get(status, 0) + n
        into = self.latency
        if len(latency) > len(into):
            into.extend([0] * (len(latency) - len(into)))
        for i, n in enumerate(latency):
            if n:
                into[i] += n
        self.latency_sum += latency_sum
        if replicas is not None:
            key = (step_s, start_ms)
            self.periods[key] = self.periods.get(key, 0.0) + replicas

    def total(self) -> Counts:
        return Counts(
            self.requests,
            self.errors_4xx,
            self.errors_5xx,
            self.statuses,
            self.latency,
            self.latency_sum,
            max(self.periods.values()) if self.periods else None,
        )


def _point(start_ms: int, counts: Counts, seconds: float) -> dict[str, Any]:
    p50 = quantile(counts.latency_counts, 0.5)
    p99 = quantile(counts.latency_counts, 0.99)
    errors = {s: n for s, n in sorted(counts.statuses.items()) if s.isdigit() and int(s) >= 400 and n}
    return {
        "time_ms": start_ms,
        "requests": counts.requests,
        "requests_per_second": counts.requests / seconds if seconds > 0 else 0.0,
        "errors_4xx": counts.errors_4xx,
        "errors_5xx": counts.errors_5xx,
        "errors": errors,
        "latency_p50_ms": None if p50 is None else round(p50 * 1000, 3),
        "latency_p99_ms": None if p99 is None else round(p99 * 1000, 3),
        "latency_mean_ms": round(counts.latency_sum_s * 1000 / counts.requests, 3)
        if counts.requests
        else None,
        "replicas": counts.replicas,
        "concurrency": round(counts.latency_sum_s / seconds, 6) if seconds > 0 else 0.0,
    }


def points(
    rows: Iterable[FlatRow], since_ms: int, until_ms: int, step_s: int, now: int
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The points of ``[since_ms, until_ms)`` every ``step_s`` seconds (aligned to multiples of
    it since the epoch), overall and per served entity; ``now`` (ms) bounds the last point's
    length for its rates. Every step has a point; one without rows has no requests."""
    step_ms = step_s * 1000
    first = since_ms - since_ms % step_ms
    starts = list(range(first, until_ms, step_ms))
    overall: dict[int, _Sum] = defaultdict(_Sum)
    entities: dict[str, dict[int, _Sum]] = defaultdict(lambda: defaultdict(_Sum))
    for row in rows:
        at = row[2] - row[2] % step_ms
        overall[at].add(row)
        entities[row[0]][at].add(row)

    def series(buckets: Mapping[int, _Sum]) -> list[dict[str, Any]]:
        out = []
        for start in starts:
            seconds = max(0.0, min(step_ms, now - start)) / 1000
            bucket = buckets.get(start)
            out.append(_point(start, bucket.total() if bucket else Counts(), seconds))
        return out

    return series(overall), {name: series(b) for name, b in sorted(entities.items())}


# ---- the route -------------------------------------------------------------------------------------
def _time(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidParameterValue(f"{name} must be a time in milliseconds since the epoch, not '{raw}'.")
    return value


def parse_range(
    since: str | None, until: str | None, step: str | None, now: int, *, days: int, minute_hours: int
) -> tuple[int, int, int]:
    """(since ms, until ms, step s) of the route's parameters: ``until`` defaults to now,
    ``since`` to an hour before ``until`` (and is raised to the retention's start), ``step``
    (seconds, a multiple of 60) to :func:`choose_step`'s; a step under an hour is raised to an
    hour when the range reaches rows older than ``minute_hours`` (only hourly ones exist)."""
    until_ms = _time(until, "until", now)
    since_ms = _time(since, "since", until_ms - 3600_000)
    if since_ms >= until_ms:
        raise InvalidParameterValue(f"since ({since_ms}) must be before until ({until_ms}).")
    since_ms = max(since_ms, now - days * 86400_000)
    if since_ms >= until_ms:
        raise InvalidParameterValue(f"the range ends before the {days} days of metrics history kept.")
    if step is None or step == "":
        step_s = choose_step((until_ms - since_ms) / 1000)
    else:
        try:
            step_s = int(step)
        except ValueError:
            step_s = 0
        if step_s < MINUTE or step_s % MINUTE:
            raise InvalidParameterValue(
                f"step must be a whole number of minutes in seconds (60, 300, 3600, ...), not '{step}'."
            )
    if step_s < HOUR and since_ms < now - minute_hours * 3600_000:
        step_s = HOUR
    if (until_ms - since_ms) / (step_s * 1000) > MAX_POINTS:
        raise InvalidParameterValue(
            f"the range holds more than {MAX_POINTS} steps of {step_s} s; give a larger step."
        )
    return since_ms, until_ms, step_s


def history(
    repo: MetricHistoryRepository,
    endpoint_id: str,
    since_ms: int,
    until_ms: int,
    step_s: int,
    now: int,
    served_entity: str | None = None,
) -> dict[str, Any]:
    """The route's answer (without the endpoint's name): see :func:`points`."""
    step_ms = step_s * 1000
    rows = repo.flat_rows(endpoint_id, since_ms - since_ms % step_ms, until_ms, served_entity)
    overall, entities = points(rows, since_ms, until_ms, step_s, now)
    return {
        "since": since_ms,
        "until": until_ms,
        "step": step_s,
        "points": overall,
        "served_entities": [{"name": name, "points": pts} for name, pts in entities.items()],
    }


# ---- each process: reading the registry into minute rows ----------------------------------------------
class _StatsSource(Protocol):
    name: str

    def stats(self) -> Mapping[str, Any]: ...


class ReplicaSource(Protocol):
    """What runs replicas (``runtime.local.LocalBackend``)."""

    def all_sets(self) -> Sequence[tuple[str, int, _StatsSource]]: ...


@dataclass
class _Cumulative:
    """One (endpoint, served entity)'s counters as read: by status, latency buckets (cumulative,
    ``+Inf`` last) and the latency sum."""

    statuses: dict[str, float] = field(default_factory=dict)
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BOUNDS_S) + 1))
    latency_sum: float = 0.0


def read_registry(metrics: Metrics) -> dict[tuple[str, str], _Cumulative]:
    """This process's endpoint query counters, per (endpoint name, served entity) (thread-safe:
    prometheus_client copies its children under a lock)."""
    out: dict[tuple[str, str], _Cumulative] = {}
    index = {bound: i for i, bound in enumerate(LATENCY_BOUNDS_S)}
    for family in metrics.endpoint_requests.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                key = (s.labels["endpoint"], s.labels["served_entity"])
                out.setdefault(key, _Cumulative()).statuses[s.labels["status"]] = s.value
    for family in metrics.endpoint_latency.collect():
        for s in family.samples:
            key = (s.labels.get("endpoint", ""), s.labels.get("served_entity", ""))
            if s.name.endswith("_bucket"):
                le = s.labels["le"]
                i = len(LATENCY_BOUNDS_S) if le == "+Inf" else index.get(float(le))
                if i is not None:
                    out.setdefault(key, _Cumulative()).buckets[i] = s.value
            elif s.name.endswith("_sum"):
                out.setdefault(key, _Cumulative()).latency_sum = s.value
    return out


def increase(before: _Cumulative | None, now: _Cumulative) -> Counts:
    """What was counted between two reads (everything, when there was none before or a counter
    went back: the series was dropped and made again)."""
    if before is not None and (
        any(now.statuses.get(k, 0.0) < v for k, v in before.statuses.items())
        or any(a < b for a, b in zip(now.buckets, before.buckets, strict=True))
        or now.latency_sum < before.latency_sum - 1e-9
    ):
        before = None
    base = before or _Cumulative()
    counts = Counts()
    for status, value in now.statuses.items():
        n = round(value - base.statuses.get(status, 0.0))
        if n <= 0 or status in _NOT_ANSWERS:
            continue
        counts.statuses[status] = n
        counts.requests += n
        if status.isdigit():
            code = int(status)
            if 400 <= code < 500:
                counts.errors_4xx += n
            elif 500 <= code < 600:
                counts.errors_5xx += n
    cumulative = [max(0.0, a - b) for a, b in zip(now.buckets, base.buckets, strict=True)]
    counts.latency_counts = [round(c - (cumulative[i - 1] if i else 0.0)) for i, c in enumerate(cumulative)]
    counts.latency_counts = [max(0, n) for n in counts.latency_counts]
    counts.latency_sum_s = max(0.0, now.latency_sum - base.latency_sum)
    return counts


def _has_traffic(counts: Counts) -> bool:
    return bool(counts.statuses) or any(counts.latency_counts)


class HistoryRecorder:
    """This process's minute rows (see the module docstring). ``process`` names it in the rows
    (the cluster's holder id: unique per process and run); ``replicas`` is given in the process
    that runs them; ``clock`` is wall time in seconds."""

    def __init__(
        self,
        repo: MetricHistoryRepository,
        metrics: Metrics,
        process: str,
        *,
        replicas: ReplicaSource | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        self.metrics = metrics
        self.process = process
        self._replicas = replicas
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], _Cumulative] = {}
        # (endpoint name, entity, minute ms) -> totals of this process in that minute
        self._traffic: dict[tuple[str, str, int], Counts] = {}
        # (endpoint id, entity, minute ms) -> most ready replicas seen in that minute
        self._replica_peaks: dict[tuple[str, str, int], float] = {}
        self._dirty: set[tuple[str, str, int, str]] = set()  # (kind, endpoint, entity, minute)
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        #: Seconds the last flushes took (reading the registry and writing the store).
        self.flush_seconds: list[float] = []

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="metric-history")

    async def stop(self) -> None:
        """Stop after a last tick, so the counts of this process's last seconds are kept."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._tick_async(self._clock())
        except Exception as exc:
            log.warning(
                "metrics history not written at stop", extra={"error": f"{type(exc).__name__}: {exc}"}
            )

    async def _run(self) -> None:
        while True:
            now = self._clock()
            at = (math.floor(now / self._interval) + 1) * self._interval
            await asyncio.sleep(max(0.0, at - now))
            try:
                await self._tick_async(at)
            except Exception as exc:  # the loop outlives a store that is away
                if not self._failing:
                    log.warning(
                        "metrics history not written", extra={"error": f"{type(exc).__name__}: {exc}"}
                    )
                self._failing = True
            else:
                self._failing = False

    async def _tick_async(self, at: float) -> None:
        sampled = self.sample_replicas()  # the replica sets' state: read on the loop
        await asyncio.to_thread(self.tick, at, sampled)

    def sample_replicas(self) -> dict[tuple[str, str], float]:
        """Ready replicas per (endpoint id, served entity), summed over config versions."""
        out: dict[tuple[str, str], float] = {}
        for endpoint_id, _version, replica_set in self._replicas.all_sets() if self._replicas else ():
            ready = replica_set.stats().get("replicas", 0)
            key = (endpoint_id, replica_set.name)
            out[key] = out.get(key, 0.0) + float(ready or 0)
        return out

    def tick(self, at: float, replicas: Mapping[tuple[str, str], float]) -> None:
        """Count what the registry counted since the last tick into the minute that ``at`` (wall
        seconds) closes, note ``replicas``, then write the rows that changed (blocking)."""
        started = time.perf_counter()
        minute = math.floor((at - 1e-3) / MINUTE) * MINUTE * 1000
        current = read_registry(self.metrics)
        for key, now in current.items():
            counts = increase(self._last.get(key), now)
            if not _has_traffic(counts):
                continue
            row_key = (key[0], key[1], minute)
            row = self._traffic.get(row_key)
            if row is None:
                self._traffic[row_key] = counts
            else:
                row.add(counts)
            self._dirty.add(("name", *row_key))
        self._last = current  # series gone (endpoint deleted) are forgotten with it
        for (endpoint_id, entity), ready in replicas.items():
            peak_key = (endpoint_id, entity, minute)
            old = self._replica_peaks.get(peak_key)
            if old is None or ready > old:
                self._replica_peaks[peak_key] = ready
                self._dirty.add(("id", *peak_key))
        try:
            self.flush(minute)
        finally:
            self.flush_seconds = [*self.flush_seconds[-99:], time.perf_counter() - started]

    def flush(self, minute: int) -> None:
        """Write the rows that changed (blocking); then forget those of minutes before ``minute``
        (when the write failed: those more than an hour old)."""
        try:
            if self._dirty:
                ids = self.repo.endpoint_ids({k[0] for k in self._traffic})
                merged: dict[tuple[str, str, int], Counts] = {}
                for (name, entity, start), counts in self._traffic.items():
                    endpoint_id = ids.get(name)
                    if endpoint_id is not None:  # None: deleted meanwhile
                        merged.setdefault((endpoint_id, entity, start), Counts()).add(counts)
                for key, peak in self._replica_peaks.items():
                    merged.setdefault(key, Counts()).replicas = peak
                dirty = {(ids.get(e) if kind == "name" else e, n, m) for kind, e, n, m in self._dirty}
                self.repo.save(self.process, {k: v for k, v in merged.items() if k in dirty}, now_ms())
                self._dirty.clear()
        finally:
            keep = minute - _KEEP_MINUTES * MINUTE * 1000 if self._dirty else minute
            self._traffic = {k: v for k, v in self._traffic.items() if k[2] >= keep}
            self._replica_peaks = {k: v for k, v in self._replica_peaks.items() if k[2] >= keep}
            self._dirty = {k for k in self._dirty if k[3] >= keep}


# ---- the leader: downsampling and retention -------------------------------------------------------
class HistoryKeeper(LeaderWork):
    """On the leader, every ``interval`` seconds: minute rows older than ``minute_hours`` (whole
    hours) become hour rows; rows older than ``days`` are deleted."""

    what = "metrics history downsampling"

    def __init__(
        self,
        repo: MetricHistoryRepository,
        *,
        leading: Callable[[], bool],
        interval: float = 300.0,
        days: int = 14,
        minute_hours: int = 48,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(leading=leading, interval=interval, log=log)
        self.repo = repo
        self.days = days
        self.minute_hours = minute_hours
        self._clock = clock

    async def scan(self) -> None:
        await asyncio.to_thread(self.run_once)

    def run_once(self) -> tuple[int, int]:
        """Downsample and prune now (blocking); returns (minute rows taken, rows deleted)."""
        now = self._clock()
        cutoff = now - self.minute_hours * HOUR * 1000
        taken = self.repo.downsample(cutoff - cutoff % (HOUR * 1000), now)
        pruned = self.repo.prune(now - self.days * 86400_000)
        if taken or pruned:
            log.info("metrics history kept", extra={"minute_rows_downsampled": taken, "rows_pruned": pruned})
        return taken, pruned
