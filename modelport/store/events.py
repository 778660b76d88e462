"""The endpoint event log: what happened to an endpoint, newest first (``endpoint_events``).

Events are history, not control-plane state: adding one does not bump the change counter.
An event whose endpoint was deleted meanwhile is dropped (the foreign key refuses it), never
raised: the log must not fail the work it records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from modelport.clock import now_ms
from modelport.store import schema

__all__ = ["KINDS", "EventRecord", "EventRepository"]

log = logging.getLogger("modelport.store")

V = schema.endpoint_events

#: Every kind of event the log holds (``GET .../events?kind=`` refuses others).
KINDS: tuple[str, ...] = (
    "CONFIG_UPDATE_STARTED",
    "CONFIG_UPDATE_SUCCEEDED",
    "CONFIG_UPDATE_FAILED",
    "CONFIG_UPDATE_CANCELED",
    "CONFIG_ROLLBACK",
    "AI_GATEWAY_UPDATED",
    "ROLLOUT_STARTED",
    "ROLLOUT_STEP",
    "ROLLOUT_PROMOTED",
    "ROLLOUT_ROLLED_BACK",
    "ROLLOUT_PAUSED",
    "ROLLOUT_RESUMED",
    "ROLLOUT_CANCELED",
    "REPLICA_STARTED",
    "REPLICA_STOPPED",
    "REPLICA_CRASHED",
    "REPLICA_SCALED",
    "COLD_START",
    # refusals, one event per burst (gateway/refusal_bursts.py)
    "RATE_LIMITED",
    "GUARDRAIL_BLOCKED",
)


@dataclass(frozen=True)
class EventRecord:
    id: int
    endpoint_id: str
    ts_ms: int
    kind: str
    message: str
    actor: str | None = None
    config_version: int | None = None
    served_entity: str | None = None
    details: dict[str, Any] | None = None


class EventRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(
        self,
        endpoint_id: str,
        kind: str,
        message: str,
        *,
        actor: str | None = None,
        config_version: int | None = None,
        served_entity: str | None = None,
        details: dict[str, Any] | None = None,
        ts_ms: int | None = None,
    ) -> int | None:
        """Append one event; its id (ids grow with time), None when the endpoint is gone."""
        values = {
            "endpoint_id": endpoint_id,
            "ts_ms": ts_ms if ts_ms is not None else now_ms(),
            "kind": kind,
            "message": message,
            "actor": actor,
            "config_version": config_version,
            "served_entity": served_entity,
            "details": details,
        }
        try:
            with self._engine.begin() as conn:
                key = conn.execute(insert(V).values(**values)).inserted_primary_key
        except IntegrityError:
            log.info("event of a deleted endpoint dropped", extra={"endpoint_id": endpoint_id, "kind": kind})
            return None
        return int(key[0]) if key else None

    def page(
        self,
        endpoint_id: str,
        *,
        before_id: int | None = None,
        limit: int = 100,
        kinds: list[str] | None = None,
        since_ms: int | None = None,
    ) -> list[EventRecord]:
        """Up to ``limit`` events, newest first; ``before_id``: older than that event (paging)."""
        query = select(V).where(V.c.endpoint_id == endpoint_id)
        if before_id is not None:
            query = query.where(V.c.id < before_id)
        if kinds:
            query = query.where(V.c.kind.in_(kinds))
        if since_ms is not None:
            query = query.where(V.c.ts_ms >= since_ms)
        query = query.order_by(V.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [EventRecord(**{k: row[k] for k in EventRecord.__dataclass_fields__}) for row in rows]

    def count(self, endpoint_id: str) -> int:
        """How many events the endpoint's log holds."""
        query = select(func.count()).select_from(V).where(V.c.endpoint_id == endpoint_id)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def prune(self, endpoint_id: str, keep: int) -> int:
        """Delete all but the endpoint's ``keep`` newest events; how many were deleted."""
        newest = (
            select(V.c.id)
            .where(V.c.endpoint_id == endpoint_id)
            .order_by(V.c.id.desc())
            .offset(max(0, keep))
            .limit(1)
        )
        with self._engine.begin() as conn:
            cutoff = conn.execute(newest).scalar()
            if cutoff is None:
                return 0
            return int(
                conn.execute(delete(V).where(V.c.endpoint_id == endpoint_id, V.c.id <= cutoff)).rowcount
            )
