"""Replays of logged requests against a candidate served entity (``endpoint_replays``).

A replay is QUEUED when asked for, RUNNING while the leader sends its requests (``progress`` is
rewritten every second), then SUCCEEDED (with its ``report``), FAILED (``message``) or CANCELED.
Every change of state is one conditional UPDATE, so a cancel and the runner's progress never
overwrite each other: the runner's write fails once the replay is no longer RUNNING, and it stops.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import RowMapping

from modelport.clock import now_ms
from modelport.store import schema

__all__ = ["ACTIVE", "ENDED", "ReplayRecord", "ReplayRepository"]

P = schema.endpoint_replays

#: States of a replay not ended yet (the runner picks these up).
ACTIVE = ("QUEUED", "RUNNING")
#: States a replay ends in.
ENDED = ("SUCCEEDED", "FAILED", "CANCELED")


@dataclass(frozen=True)
class ReplayRecord:
    """One replay: what to send (``spec``: the validated request, times resolved to epoch ms),
    where it stands (``state``, ``progress`` ``{"sent", "total", "errors"}``) and the comparison
    report once it succeeded."""

    id: str
    endpoint_id: str
    candidate: str
    spec: dict[str, Any]
    state: str
    creator: str
    created_ms: int
    updated_ms: int
    progress: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    message: str | None = None


def _record(row: RowMapping) -> ReplayRecord:
    return ReplayRecord(**{f.name: row[f.name] for f in fields(ReplayRecord)})


class ReplayRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, record: ReplayRecord) -> ReplayRecord:
        values = {f.name: getattr(record, f.name) for f in fields(ReplayRecord)}
        with self._engine.begin() as conn:
            conn.execute(insert(P).values(**values))
        return record

    def get(self, replay_id: str) -> ReplayRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(P).where(P.c.id == replay_id)).mappings().first()
        return None if row is None else _record(row)

    def list(self, endpoint_id: str, limit: int = 100) -> list[ReplayRecord]:
        """The endpoint's replays, newest first."""
        query = (
            select(P)
            .where(P.c.endpoint_id == endpoint_id)
            .order_by(P.c.created_ms.desc(), P.c.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).mappings().all()]

    def active(self) -> list[ReplayRecord]:
        """Every replay QUEUED or RUNNING, oldest first (what the leader runs)."""
        query = select(P).where(P.c.state.in_(ACTIVE)).order_by(P.c.created_ms, P.c.id)
        with self._engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).mappings().all()]

    def _move(self, replay_id: str, from_states: tuple[str, ...], **values: Any) -> bool:
        values["updated_ms"] = now_ms()
        query = update(P).where(P.c.id == replay_id, P.c.state.in_(from_states)).values(**values)
        with self._engine.begin() as conn:
            return bool(conn.execute(query).rowcount)

    def start(self, replay_id: str, progress: dict[str, Any]) -> bool:
        """QUEUED (or RUNNING: a restart) -> RUNNING; False when it ended meanwhile."""
        return self._move(replay_id, ACTIVE, state="RUNNING", progress=progress)

    def save_progress(self, replay_id: str, progress: dict[str, Any]) -> bool:
        """Rewrite the progress of a RUNNING replay; False when it is no longer running."""
        return self._move(replay_id, ("RUNNING",), progress=progress)

    def finish(
        self,
        replay_id: str,
        state: str,
        *,
        progress: dict[str, Any] | None = None,
        report: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> bool:
        """End a replay not ended yet (SUCCEEDED, FAILED or CANCELED); False when it had ended."""
        assert state in ENDED, state
        values: dict[str, Any] = {"state": state, "message": message}
        if progress is not None:
            values["progress"] = progress
        if report is not None:
            values["report"] = report
        return self._move(replay_id, ACTIVE, **values)
