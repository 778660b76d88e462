"""Endpoints, their config versions and their access-control lists.

Every state change that must not race (starting an update, finishing it, cancelling it)
is a single conditional UPDATE, so two server processes sharing one database cannot
both win.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from modelport.errors import ResourceAlreadyExists
from modelport.store import schema
from modelport.store.changes import changing
from modelport.store.leases import RECONCILER_LEASE, fence
from modelport.store.records import ConfigRecord, EndpointRecord

__all__ = ["EndpointRepository"]

E, C, A = schema.endpoints, schema.endpoint_configs, schema.endpoint_acl
_ENDPOINT_FIELDS = {f.name for f in dataclasses.fields(EndpointRecord)}


def _endpoint(row: RowMapping) -> EndpointRecord:
    data = {k: row[k] for k in _ENDPOINT_FIELDS}
    data["tags"] = list(data["tags"] or [])
    return EndpointRecord(**data)


def _config(row: RowMapping) -> ConfigRecord:
    return ConfigRecord(**{f.name: row[f.name] for f in dataclasses.fields(ConfigRecord)})


class EndpointRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ---- reads ---------------------------------------------------------------------
    def get(self, name: str) -> EndpointRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(E).where(E.c.name == name)).mappings().first()
        return None if row is None else _endpoint(row)

    def get_by_id(self, endpoint_id: str) -> EndpointRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(E).where(E.c.id == endpoint_id)).mappings().first()
        return None if row is None else _endpoint(row)

    def list(self) -> list[EndpointRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(E).order_by(E.c.name)).mappings().all()
        return [_endpoint(r) for r in rows]

    def list_by_ids(self, endpoint_ids: list[str]) -> list[EndpointRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(E).where(E.c.id.in_(endpoint_ids))).mappings().all()
        return [_endpoint(r) for r in rows]

    def markers(self) -> dict[str, tuple[Any, ...]]:
        """What changes when an endpoint changes, for every endpoint, without its JSON columns:
        id -> (updated_ms, active_version, pending_version, config_update)."""
        columns = (E.c.id, E.c.updated_ms, E.c.active_version, E.c.pending_version, E.c.config_update)
        with self._engine.connect() as conn:
            rows = conn.execute(select(*columns)).all()
        return {str(r[0]): tuple(r[1:]) for r in rows}

    def get_config(self, endpoint_id: str, version: int | None) -> ConfigRecord | None:
        if version is None:
            return None
        with self._engine.connect() as conn:
            row = (
                conn.execute(select(C).where(C.c.endpoint_id == endpoint_id, C.c.version == version))
                .mappings()
                .first()
            )
        return None if row is None else _config(row)

    def current_configs(self, endpoint_ids: list[str] | None = None) -> dict[tuple[str, int], ConfigRecord]:
        """The active and pending configs of every endpoint (or of ``endpoint_ids``), in one query,
        keyed by (endpoint id, version): what listing and routing need, without a read per endpoint."""
        current = (C.c.version == E.c.active_version) | (C.c.version == E.c.pending_version)
        query = select(C).join(E, (C.c.endpoint_id == E.c.id) & current)
        if endpoint_ids is not None:
            query = query.where(C.c.endpoint_id.in_(endpoint_ids))
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return {(str(r["endpoint_id"]), int(r["version"])): _config(r) for r in rows}

    def configs(self, endpoint_id: str) -> list[ConfigRecord]:
        with self._engine.connect() as conn:
            rows = (
                conn.execute(select(C).where(C.c.endpoint_id == endpoint_id).order_by(C.c.version))
                .mappings()
                .all()
            )
        return [_config(r) for r in rows]

    def in_progress(self) -> list[EndpointRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(E).where(E.c.config_update == "IN_PROGRESS")).mappings().all()
        return [_endpoint(r) for r in rows]

    # ---- writes --------------------------------------------------------------------
    def create(self, endpoint: EndpointRecord, config: ConfigRecord | None, owner_id: int) -> None:
        """Insert an endpoint, its first config and the owner's CAN_MANAGE in one transaction."""
        values = dataclasses.asdict(endpoint)
        try:
            with changing(self._engine) as conn:
                conn.execute(insert(E).values(**values))
                if config is not None:
                    conn.execute(insert(C).values(**dataclasses.asdict(config)))
                conn.execute(insert(A).values(endpoint_id=endpoint.id, principal_id=owner_id, level=3))
        except IntegrityError:
            raise ResourceAlreadyExists(f"Endpoint with name '{endpoint.name}' already exists.") from None

    def update_fields(self, endpoint_id: str, **fields: Any) -> None:
        with changing(self._engine) as conn:
            conn.execute(update(E).where(E.c.id == endpoint_id).values(**fields))

    def next_version(self, conn: Connection, endpoint_id: str) -> int:
        current = conn.execute(select(func.max(C.c.version)).where(C.c.endpoint_id == endpoint_id)).scalar()
        return int(current or 0) + 1

    def begin_update(
        self, endpoint_id: str, body: dict[str, Any], creator: str, now_ms: int, task: str | None
    ) -> int | None:
        """Record a new pending config unless an update is in progress; return its version."""
        with changing(self._engine) as conn:
            version = self.next_version(conn, endpoint_id)
            gateway = conn.execute(select(E.c.ai_gateway).where(E.c.id == endpoint_id)).scalar()
            claimed = conn.execute(
                update(E)
                .where(E.c.id == endpoint_id, E.c.config_update != "IN_PROGRESS")
                .values(config_update="IN_PROGRESS", pending_version=version, updated_ms=now_ms, task=task)
            ).rowcount
            if not claimed:
                return None
            conn.execute(
                insert(C).values(
                    endpoint_id=endpoint_id,
                    version=version,
                    body=body,
                    status="PENDING",
                    creator=creator,
                    created_ms=now_ms,
                    ai_gateway=gateway,
                )
            )
        return version

    def set_ai_gateway(self, endpoint_id: str, gateway: dict[str, Any], now_ms: int) -> None:
        """The endpoint's AI-gateway settings, also recorded in its serving and pending versions."""
        with changing(self._engine) as conn:
            conn.execute(update(E).where(E.c.id == endpoint_id).values(ai_gateway=gateway, updated_ms=now_ms))
            current = conn.execute(
                select(E.c.active_version, E.c.pending_version).where(E.c.id == endpoint_id)
            ).first()
            versions = [v for v in (current or ()) if v is not None]
            if versions:
                conn.execute(
                    update(C)
                    .where(C.c.endpoint_id == endpoint_id, C.c.version.in_(versions))
                    .values(ai_gateway=gateway)
                )

    def save_progress(
        self, endpoint_id: str, version: int, body: dict[str, Any], *, epoch: int | None = None
    ) -> None:
        """Store entity states of a pending config while the update runs; ``epoch``: the
        reconciler lease's epoch, checked in the same transaction (``store/leases.py fence``)."""
        with changing(self._engine) as conn:
            if epoch is not None:
                fence(conn, RECONCILER_LEASE, epoch)
            conn.execute(
                update(C)
                .where(C.c.endpoint_id == endpoint_id, C.c.version == version, C.c.status == "PENDING")
                .values(body=body)
            )

    def finish_update(
        self,
        endpoint_id: str,
        version: int,
        *,
        success: bool,
        body: dict[str, Any],
        message: str | None,
        now_ms: int,
        epoch: int | None = None,
    ) -> bool:
        """Promote (success) or fail the pending config; False if it was cancelled meanwhile.
        ``epoch``: the reconciler lease's epoch, checked in the same transaction."""
        with changing(self._engine) as conn:
            if epoch is not None:
                fence(conn, RECONCILER_LEASE, epoch)
            state = "NOT_UPDATING" if success else "UPDATE_FAILED"
            values: dict[str, Any] = {"config_update": state, "updated_ms": now_ms}
            if success:
                values.update(active_version=version, pending_version=None)
            claimed = conn.execute(
                update(E)
                .where(
                    E.c.id == endpoint_id, E.c.pending_version == version, E.c.config_update == "IN_PROGRESS"
                )
                .values(**values)
            ).rowcount
            if not claimed:
                return False
            if success:
                conn.execute(
                    update(C)
                    .where(C.c.endpoint_id == endpoint_id, C.c.status == "ACTIVE")
                    .values(status="SUPERSEDED")
                )
            conn.execute(
                update(C)
                .where(C.c.endpoint_id == endpoint_id, C.c.version == version)
                .values(
                    status="ACTIVE" if success else "FAILED", body=body, message=message, finished_ms=now_ms
                )
            )
        return True

    def cancel_update(self, endpoint_id: str, body: dict[str, Any] | None, now_ms: int) -> int | None:
        """Mark the in-progress update cancelled; return its version, None if none was running."""
        with changing(self._engine) as conn:
            row = conn.execute(
                select(E.c.pending_version).where(E.c.id == endpoint_id, E.c.config_update == "IN_PROGRESS")
            ).first()
            if row is None:
                return None
            version = int(row[0])
            claimed = conn.execute(
                update(E)
                .where(
                    E.c.id == endpoint_id,
                    E.c.config_update == "IN_PROGRESS",
                    E.c.pending_version == version,
                )
                .values(config_update="UPDATE_CANCELED", updated_ms=now_ms)
            ).rowcount
            if not claimed:
                return None
            values: dict[str, Any] = {
                "status": "CANCELED",
                "finished_ms": now_ms,
                "message": "Update cancelled by request.",
            }
            if body is not None:
                values["body"] = body
            conn.execute(
                update(C).where(C.c.endpoint_id == endpoint_id, C.c.version == version).values(**values)
            )
        return version

    def delete(self, endpoint_id: str) -> None:
        with changing(self._engine) as conn:
            conn.execute(delete(A).where(A.c.endpoint_id == endpoint_id))
            conn.execute(delete(C).where(C.c.endpoint_id == endpoint_id))
            conn.execute(delete(E).where(E.c.id == endpoint_id))

    # ---- access control -------------------------------------------------------------
    def acl(self, endpoint_id: str) -> dict[int, int]:
        """Direct grants: principal id → level (1 view, 2 query, 3 manage)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(A.c.principal_id, A.c.level).where(A.c.endpoint_id == endpoint_id)
            ).all()
        return {int(p): int(level) for p, level in rows}

    def all_acls(self) -> dict[str, dict[int, int]]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(A.c.endpoint_id, A.c.principal_id, A.c.level)).all()
        out: dict[str, dict[int, int]] = {}
        for endpoint_id, principal_id, level in rows:
            out.setdefault(str(endpoint_id), {})[int(principal_id)] = int(level)
        return out

    def write_acl(self, endpoint_id: str, grants: dict[int, int], *, replace: bool) -> None:
        with changing(self._engine) as conn:
            if replace:
                conn.execute(delete(A).where(A.c.endpoint_id == endpoint_id))
            else:
                conn.execute(
                    delete(A).where(A.c.endpoint_id == endpoint_id, A.c.principal_id.in_(list(grants)))
                )
            for principal_id, level in grants.items():
                conn.execute(
                    insert(A).values(endpoint_id=endpoint_id, principal_id=principal_id, level=level)
                )
