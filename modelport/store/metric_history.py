"""Metrics history rows (``metric_history``): what an endpoint's served entities answered, per
period.

A row holds, for one (endpoint, served entity, period): the queries answered (``requests``),
how many by status code (``statuses``) and by class (``errors_4xx``, ``errors_5xx``), the
latency histogram (``latency_counts``: one count per bucket of
:data:`modelport.metrics.LATENCY_BUCKETS`, the ``+Inf`` bucket last, not cumulative) with the
sum of the latencies, and the most ready replicas seen (``replicas``, null when the row's
process runs none).

- **Minute rows** (``step_s`` 60) are written by each server process for itself (``process``
  is its holder id): a process rewrites its row of the current minute with its totals so far
  (:meth:`MetricHistoryRepository.save`), so a write that failed is made whole by the next one
  and no two processes ever write the same row. Their sum over processes is the minute's total.
- **Hour rows** (``step_s`` 3600, ``process`` ``""``) are made by the leader
  (:meth:`MetricHistoryRepository.downsample`): the minute rows of an hour, summed over
  processes, then over minutes (replicas: the most of any minute), are added to the hour's row
  and deleted in the same transaction. The minute rows are taken with ``DELETE ... RETURNING``,
  so two processes that both think they lead never count a minute twice.
- :meth:`MetricHistoryRepository.prune` deletes the rows older than the retention. The rows of a
  deleted endpoint go with it (foreign key, ``ON DELETE CASCADE``); a write for an endpoint
  deleted meanwhile is dropped.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine, Text, and_, bindparam, delete, insert, select, type_coerce, update

from modelport.store import schema

__all__ = ["HOUR", "MINUTE", "Counts", "FlatRow", "HistoryRow", "MetricHistoryRepository"]

log = logging.getLogger("modelport.store")

H = schema.metric_history
E = schema.endpoints

#: Periods of the rows, in seconds.
MINUTE = 60
HOUR = 3600


@dataclass
class Counts:
    """The figures of one row (see the module docstring); ``latency_counts`` has one count more
    than there are latency bounds."""

    requests: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=list)
    latency_sum_s: float = 0.0
    replicas: float | None = None

    def add(self, other: Counts, *, replicas: str = "sum") -> None:
        """Add ``other``'s counts to these; replicas are summed (``"sum"``: another process, the
        same period) or the larger kept (``"max"``: another period)."""
        self.requests += other.requests
        self.errors_4xx += other.errors_4xx
        self.errors_5xx += other.errors_5xx
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        if len(self.latency_counts) < len(other.latency_counts):
            self.latency_counts.extend([0] * (len(other.latency_counts) - len(self.latency_counts)))
        for i, n in enumerate(other.latency_counts):
            self.latency_counts[i] += n
        self.latency_sum_s += other.latency_sum_s
        if other.replicas is not None:
            if self.replicas is None:
                self.replicas = other.replicas
            elif replicas == "sum":
                self.replicas += other.replicas
            else:
                self.replicas = max(self.replicas, other.replicas)

    def copy(self) -> Counts:
        return Counts(
            self.requests,
            self.errors_4xx,
            self.errors_5xx,
            dict(self.statuses),
            list(self.latency_counts),
            self.latency_sum_s,
            self.replicas,
        )

    def values(self) -> dict[str, Any]:
        """The row's columns of these figures."""
        return {
            "requests": self.requests,
            "errors_4xx": self.errors_4xx,
            "errors_5xx": self.errors_5xx,
            "statuses": dict(self.statuses),
            "latency_counts": list(self.latency_counts),
            "latency_sum_s": float(self.latency_sum_s),
            "replicas": self.replicas,
        }

    @staticmethod
    def of(row: Mapping[str, Any]) -> Counts:
        replicas = row["replicas"]
        return Counts(
            int(row["requests"]),
            int(row["errors_4xx"]),
            int(row["errors_5xx"]),
            {str(k): int(v) for k, v in (row["statuses"] or {}).items()},
            [int(n) for n in (row["latency_counts"] or [])],
            float(row["latency_sum_s"]),
            None if replicas is None else float(replicas),
        )


#: A row as the route reads it: (served entity, step_s, start_ms, requests, errors_4xx,
#: errors_5xx, statuses, latency_counts, latency_sum_s, replicas).
FlatRow = tuple[str, int, int, int, int, int, dict[str, int], list[int], float, float | None]


@dataclass(frozen=True)
class HistoryRow:
    served_entity: str
    step_s: int
    start_ms: int
    process: str
    counts: Counts

    def flat(self) -> FlatRow:
        c = self.counts
        return (
            self.served_entity,
            self.step_s,
            self.start_ms,
            c.requests,
            c.errors_4xx,
            c.errors_5xx,
            c.statuses,
            c.latency_counts,
            c.latency_sum_s,
            c.replicas,
        )


def _json(value: Any) -> Any:
    """A JSON column read as text (SQLite) or already decoded (psycopg decodes json itself)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


class MetricHistoryRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def endpoint_ids(self, names: Iterable[str]) -> dict[str, str]:
        """Endpoint name → id, for those of ``names`` that exist."""
        wanted = set(names)
        if not wanted:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(select(E.c.name, E.c.id).where(E.c.name.in_(wanted))).all()
        return {str(name): str(id_) for name, id_ in rows}

    def save(self, process: str, rows: Mapping[tuple[str, str, int], Counts], now_ms: int) -> None:
        """Write this process's minute rows, keyed (endpoint id, served entity, minute start ms),
        with their totals so far: each row is updated, or inserted when new. Rows of endpoints
        deleted meanwhile are dropped."""
        if not rows:
            return
        with self._engine.begin() as conn:
            ids = {k[0] for k in rows}
            known = {r[0] for r in conn.execute(select(E.c.id).where(E.c.id.in_(ids)))}
            wanted = {k: v for k, v in rows.items() if k[0] in known}
            if not wanted:
                return
            starts = {k[2] for k in wanted}
            present = {
                (str(e), str(n), int(m))
                for e, n, m in conn.execute(
                    select(H.c.endpoint_id, H.c.served_entity, H.c.start_ms).where(
                        H.c.process == process,
                        H.c.step_s == MINUTE,
                        H.c.start_ms.in_(starts),
                        H.c.endpoint_id.in_({k[0] for k in wanted}),
                    )
                )
            }
            updates, inserts = [], []
            for (endpoint_id, entity, start_ms), counts in wanted.items():
                values = {**counts.values(), "updated_ms": now_ms}
                if (endpoint_id, entity, start_ms) in present:
                    updates.append({"k_e": endpoint_id, "k_n": entity, "k_m": start_ms, **values})
                else:
                    inserts.append(
                        {
                            "endpoint_id": endpoint_id,
                            "served_entity": entity,
                            "step_s": MINUTE,
                            "start_ms": start_ms,
                            "process": process,
                            **values,
                        }
                    )
            if updates:  # one statement, many parameter sets (executemany)
                conn.execute(
                    update(H).where(
                        H.c.endpoint_id == bindparam("k_e"),
                        H.c.served_entity == bindparam("k_n"),
                        H.c.step_s == MINUTE,
                        H.c.start_ms == bindparam("k_m"),
                        H.c.process == process,
                    ),
                    updates,
                )
            if inserts:
                conn.execute(insert(H), inserts)

    def rows(
        self, endpoint_id: str, since_ms: int, until_ms: int, served_entity: str | None = None
    ) -> list[HistoryRow]:
        """The rows of one endpoint (minute and hour ones) whose period starts in
        ``[since_ms, until_ms)``, oldest first."""
        where = [H.c.endpoint_id == endpoint_id, H.c.start_ms >= since_ms, H.c.start_ms < until_ms]
        if served_entity is not None:
            where.append(H.c.served_entity == served_entity)
        query = select(H).where(*where).order_by(H.c.start_ms)
        with self._engine.connect() as conn:
            found = conn.execute(query).mappings().all()
        return [
            HistoryRow(
                str(r["served_entity"]), int(r["step_s"]), int(r["start_ms"]), str(r["process"]), Counts.of(r)
            )
            for r in found
        ]

    def flat_rows(
        self, endpoint_id: str, since_ms: int, until_ms: int, served_entity: str | None = None
    ) -> list[FlatRow]:
        """:meth:`rows` as :data:`FlatRow` tuples (what the route sums: no per-row objects, the
        JSON columns decoded with orjson), in no particular order."""
        where = [H.c.endpoint_id == endpoint_id, H.c.start_ms >= since_ms, H.c.start_ms < until_ms]
        if served_entity is not None:
            where.append(H.c.served_entity == served_entity)
        query = select(
            H.c.served_entity,
            H.c.step_s,
            H.c.start_ms,
            H.c.requests,
            H.c.errors_4xx,
            H.c.errors_5xx,
            type_coerce(H.c.statuses, Text),
            type_coerce(H.c.latency_counts, Text),
            H.c.latency_sum_s,
            H.c.replicas,
        ).where(*where)
        with self._engine.connect() as conn:
            found = conn.execute(query).all()
        return [
            (e, step, start, req, e4, e5, _json(st) or {}, _json(lat) or [], float(lsum), rep)
            for e, step, start, req, e4, e5, st, lat, lsum, rep in found
        ]

    def downsample(self, before_ms: int, now_ms: int) -> int:
        """Turn the minute rows that start before ``before_ms`` (a whole hour) into hour rows
        (see the module docstring); returns how many minute rows were taken."""
        with self._engine.connect() as conn:
            endpoint_ids = [
                str(r[0])
                for r in conn.execute(
                    select(H.c.endpoint_id).where(H.c.step_s == MINUTE, H.c.start_ms < before_ms).distinct()
                )
            ]
        taken = 0
        for endpoint_id in endpoint_ids:  # one transaction per endpoint: bounded
            taken += self._downsample_endpoint(endpoint_id, before_ms, now_ms)
        return taken

    def _downsample_endpoint(self, endpoint_id: str, before_ms: int, now_ms: int) -> int:
        with self._engine.begin() as conn:
            taken = (
                conn.execute(
                    delete(H)
                    .where(H.c.endpoint_id == endpoint_id, H.c.step_s == MINUTE, H.c.start_ms < before_ms)
                    .returning(*H.c)
                )
                .mappings()
                .all()
            )
            if not taken:
                return 0
            hours = hour_rows((str(r["served_entity"]), int(r["start_ms"]), Counts.of(r)) for r in taken)
            for (entity, hour_ms), counts in hours.items():
                key = and_(
                    H.c.endpoint_id == endpoint_id,
                    H.c.served_entity == entity,
                    H.c.step_s == HOUR,
                    H.c.start_ms == hour_ms,
                    H.c.process == "",
                )
                old = conn.execute(select(H).where(key)).mappings().first()
                if old is not None:
                    merged = Counts.of(old)
                    merged.add(counts, replicas="max")
                    conn.execute(update(H).where(key).values(**merged.values(), updated_ms=now_ms))
                else:
                    conn.execute(
                        insert(H).values(
                            endpoint_id=endpoint_id,
                            served_entity=entity,
                            step_s=HOUR,
                            start_ms=hour_ms,
                            process="",
                            **counts.values(),
                            updated_ms=now_ms,
                        )
                    )
            return len(taken)

    def prune(self, before_ms: int) -> int:
        """Delete every row whose period starts before ``before_ms``; returns how many."""
        with self._engine.begin() as conn:
            return int(conn.execute(delete(H).where(H.c.start_ms < before_ms)).rowcount or 0)


def hour_rows(minutes: Iterable[tuple[str, int, Counts]]) -> dict[tuple[str, int], Counts]:
    """Minute rows (served entity, minute start ms, counts) of any processes, as hour rows keyed
    (served entity, hour start ms): summed over the processes of each minute (replicas too),
    then over the minutes of the hour (replicas: the most of any minute)."""
    per_minute: dict[tuple[str, int], Counts] = defaultdict(Counts)
    for entity, start_ms, counts in minutes:
        per_minute[(entity, start_ms)].add(counts, replicas="sum")
    hours: dict[tuple[str, int], Counts] = defaultdict(Counts)
    for (entity, start_ms), counts in sorted(per_minute.items()):
        hours[(entity, start_ms - start_ms % (HOUR * 1000))].add(counts, replicas="max")
    return dict(hours)
