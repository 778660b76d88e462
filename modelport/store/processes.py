"""The server processes sharing the store: one row each, written every few seconds by the
process itself (``seen_ms`` by the database's clock), so that ``modelport status`` can list
who serves and tell a live process from one that stopped writing. Rows are not control-plane
changes: they do not bump the change counter."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from modelport.store import schema
from modelport.store.leases import db_now_ms

__all__ = ["ProcessRecord", "ProcessRepository"]

P = schema.processes


@dataclass(frozen=True)
class ProcessRecord:
    id: str
    host: str
    pid: int
    role: str
    worker: int
    started_ms: int
    seen_ms: int


class ProcessRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def beat(self, process_id: str, *, host: str, pid: int, role: str, worker: int) -> None:
        """Record that the process lives (its first call also records when it started)."""
        now = db_now_ms()
        with self._engine.begin() as conn:
            if not conn.execute(update(P).where(P.c.id == process_id).values(seen_ms=now)).rowcount:
                conn.execute(
                    insert(P).values(
                        id=process_id,
                        host=host,
                        pid=pid,
                        role=role,
                        worker=worker,
                        started_ms=now,
                        seen_ms=now,
                    )
                )

    def list(self) -> tuple[int, list[ProcessRecord]]:
        """The database's clock now (ms) and every process row."""
        with self._engine.connect() as conn:
            now = int(conn.execute(select(db_now_ms())).scalar() or 0)
            rows = conn.execute(select(P).order_by(P.c.host, P.c.started_ms)).mappings().all()
        return now, [ProcessRecord(**{k: row[k] for k in ProcessRecord.__dataclass_fields__}) for row in rows]

    def remove(self, process_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(P).where(P.c.id == process_id))

    def prune(self, older_than_ms: int) -> int:
        """Forget processes not seen for ``older_than_ms`` (they stopped without saying)."""
        with self._engine.begin() as conn:
            return int(conn.execute(delete(P).where(P.c.seen_ms < db_now_ms() - older_than_ms)).rowcount or 0)
