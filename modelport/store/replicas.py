"""The replica registry: where the leader's replicas listen (endpoint, served entity, config
version, replica id, host and unix-socket address, state), for every server process to reach.

Only the leader writes it, each write fenced by the lease epoch it was elected at
(``store/leases.py``): a deposed leader that wakes up cannot register or remove a replica
after the next leader has begun. Each write bumps the store's change counter
(``store/changes.py``), so the other processes re-read it within their change poll.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelport.store import schema
from modelport.store.changes import changing
from modelport.store.leases import fence

__all__ = ["ReplicaRecord", "ReplicaRepository"]

R = schema.replicas
W = schema.replica_wakes


@dataclass(frozen=True)
class ReplicaRecord:
    id: str
    endpoint_id: str
    config_version: int
    entity: str
    host: str
    address: str
    pid: int
    state: str
    owner: str
    epoch: int
    concurrency: int
    updated_ms: int


class ReplicaRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def list(self, endpoint_id: str | None = None) -> list[ReplicaRecord]:
        query = select(R).order_by(R.c.endpoint_id, R.c.config_version, R.c.entity, R.c.id)
        if endpoint_id is not None:
            query = query.where(R.c.endpoint_id == endpoint_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [ReplicaRecord(**{k: row[k] for k in ReplicaRecord.__dataclass_fields__}) for row in rows]

    def put(self, record: ReplicaRecord, *, lease: str) -> None:
        """Register a replica or change its row (state, address), fenced by ``record.epoch``."""
        values = {k: getattr(record, k) for k in ReplicaRecord.__dataclass_fields__}
        with changing(self._engine) as conn:
            fence(conn, lease, record.epoch)
            if not conn.execute(update(R).where(R.c.id == record.id).values(**values)).rowcount:
                conn.execute(insert(R).values(**values))

    def remove(self, replica_id: str, *, lease: str, epoch: int) -> None:
        with changing(self._engine) as conn:
            fence(conn, lease, epoch)
            conn.execute(delete(R).where(R.c.id == replica_id))

    def remove_other_owners(self, owner: str, *, lease: str, epoch: int) -> int:
        """Drop the rows of every earlier leader (their replicas are stopped or adopted)."""
        with changing(self._engine) as conn:
            fence(conn, lease, epoch)
            return int(conn.execute(delete(R).where(R.c.owner != owner)).rowcount or 0)

    # ---- wake requests (scale from zero asked by a process that is not the leader) ----------
    def request_wake(self, endpoint_id: str, config_version: int, entity: str, now_ms: int) -> None:
        """Ask the leader to start a replica of a served entity at zero (idempotent)."""
        try:
            with changing(self._engine) as conn:
                conn.execute(
                    insert(W).values(
                        endpoint_id=endpoint_id,
                        config_version=config_version,
                        entity=entity,
                        requested_ms=now_ms,
                    )
                )
        except IntegrityError:
            pass  # asked already; the leader has not got to it yet

    def take_wakes(self) -> list[tuple[str, int, str]]:
        """The wake requests, removed from the store (the leader acts on them)."""
        with self._engine.begin() as conn:
            rows = conn.execute(select(W.c.endpoint_id, W.c.config_version, W.c.entity)).all()
            if rows:
                conn.execute(delete(W))
        return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]
