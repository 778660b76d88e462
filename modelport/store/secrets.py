"""Secret scopes, their secrets (encrypted values only) and their access-control lists.

The repository stores what it is given: values arrive here already encrypted
(``control/cipher.py``) and leave encrypted. Permissions are plain integers
(``spec.secrets.ScopePermission``); who may do what is decided in ``control/secrets.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from modelport.errors import ResourceAlreadyExists, ResourceDoesNotExist
from modelport.store import schema
from modelport.store.changes import changing
from modelport.store.records import SecretAclRecord, SecretRecord, SecretScopeRecord

__all__ = ["SecretRepository"]

S, V, A, P = schema.secret_scopes, schema.secrets, schema.secret_acls, schema.principals


def _scope(row: RowMapping) -> SecretScopeRecord:
    return SecretScopeRecord(name=row["name"], creator=row["creator"], created_ms=row["created_ms"])


class SecretRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ---- scopes -------------------------------------------------------------------------
    def create_scope(self, name: str, creator: str, now_ms: int, manager_id: int | None) -> SecretScopeRecord:
        """Insert a scope and, when ``manager_id`` is given, its first ACL (MANAGE) in one transaction."""
        try:
            with changing(self._engine) as conn:
                conn.execute(insert(S).values(name=name, creator=creator, created_ms=now_ms))
                if manager_id is not None:
                    conn.execute(insert(A).values(scope=name, principal_id=manager_id, permission=3))
        except IntegrityError:
            raise ResourceAlreadyExists(f"Scope {name} already exists!") from None
        return SecretScopeRecord(name=name, creator=creator, created_ms=now_ms)

    def ensure_scope(self, name: str, creator: str, now_ms: int) -> None:
        """Create a scope with an empty ACL unless it exists (for server-owned scopes)."""
        if self.get_scope(name) is None:
            with contextlib.suppress(ResourceAlreadyExists):
                self.create_scope(name, creator, now_ms, None)

    def get_scope(self, name: str) -> SecretScopeRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(S).where(S.c.name == name)).mappings().first()
        return None if row is None else _scope(row)

    def list_scopes(self) -> list[SecretScopeRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(S).order_by(S.c.name)).mappings().all()
        return [_scope(r) for r in rows]

    def delete_scope(self, name: str) -> bool:
        """Delete a scope with its secrets and ACLs; False if there was none."""
        with changing(self._engine) as conn:
            conn.execute(delete(V).where(V.c.scope == name))
            conn.execute(delete(A).where(A.c.scope == name))
            return bool(conn.execute(delete(S).where(S.c.name == name)).rowcount)

    # ---- secrets ------------------------------------------------------------------------
    def put(self, scope: str, key: str, value: bytes, now_ms: int) -> None:
        """Insert or overwrite a secret (``value`` is already encrypted)."""
        for _ in range(2):
            with changing(self._engine) as conn:
                updated = conn.execute(
                    update(V)
                    .where(V.c.scope == scope, V.c.key == key)
                    .values(value=value, last_updated_ms=now_ms)
                ).rowcount
            if updated:
                return
            try:
                with changing(self._engine) as conn:
                    conn.execute(insert(V).values(scope=scope, key=key, value=value, last_updated_ms=now_ms))
                return
            except IntegrityError:
                # Either another process inserted the key first (the update wins next time
                # round) or the scope was deleted meanwhile (the check below reports it).
                if self.get_scope(scope) is None:
                    break
        raise ResourceDoesNotExist(f"Scope {scope} does not exist!")

    def get(self, scope: str, key: str) -> SecretRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(V).where(V.c.scope == scope, V.c.key == key)).mappings().first()
        if row is None:
            return None
        return SecretRecord(
            scope=row["scope"],
            key=row["key"],
            last_updated_ms=row["last_updated_ms"],
            value=bytes(row["value"]),
        )

    def list_secrets(self, scope: str) -> list[SecretRecord]:
        """The scope's secrets without their values."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(V.c.scope, V.c.key, V.c.last_updated_ms).where(V.c.scope == scope).order_by(V.c.key)
            ).all()
        return [SecretRecord(scope=r[0], key=r[1], last_updated_ms=r[2]) for r in rows]

    def rewrite_values(self, rewrite: Callable[[str, str, bytes], bytes]) -> int:
        """Replace every secret's value with ``rewrite(scope, key, value)`` in one transaction
        (re-encryption: ``last_updated_ms`` is kept); returns how many were rewritten. An
        exception from ``rewrite`` rolls every change back."""
        with changing(self._engine) as conn:
            rows = conn.execute(select(V.c.scope, V.c.key, V.c.value).order_by(V.c.scope, V.c.key)).all()
            for scope, key, value in rows:
                conn.execute(
                    update(V)
                    .where(V.c.scope == scope, V.c.key == key)
                    .values(value=rewrite(scope, key, bytes(value)))
                )
        return len(rows)

    def delete(self, scope: str, key: str) -> bool:
        with changing(self._engine) as conn:
            return bool(conn.execute(delete(V).where(V.c.scope == scope, V.c.key == key)).rowcount)

    def prune(self, scope: str, keep: set[str], before_ms: int) -> list[str]:
        """Delete the scope's secrets not in ``keep`` and last written before ``before_ms``."""
        with changing(self._engine) as conn:
            rows = conn.execute(
                select(V.c.key).where(V.c.scope == scope, V.c.last_updated_ms < before_ms)
            ).all()
            gone = sorted(str(r[0]) for r in rows if r[0] not in keep)
            if gone:
                conn.execute(delete(V).where(V.c.scope == scope, V.c.key.in_(gone)))
        return gone

    # ---- access control -------------------------------------------------------------------
    def acl(self, scope: str) -> dict[int, int]:
        """Direct grants: principal id → permission."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(A.c.principal_id, A.c.permission).where(A.c.scope == scope)).all()
        return {int(p): int(perm) for p, perm in rows}

    def acl_entries(self, scope: str) -> list[SecretAclRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(A.c.principal_id, A.c.permission, P.c.name, P.c.kind)
                .select_from(A.join(P, A.c.principal_id == P.c.id))
                .where(A.c.scope == scope)
                .order_by(P.c.name)
            ).all()
        return [
            SecretAclRecord(
                scope=scope,
                principal_id=int(r[0]),
                permission=int(r[1]),
                principal_name=r[2],
                principal_kind=r[3],
            )
            for r in rows
        ]

    def put_acl(self, scope: str, principal_id: int, permission: int) -> None:
        """Grant ``permission``, replacing what the principal had on the scope."""
        with changing(self._engine) as conn:
            conn.execute(delete(A).where(A.c.scope == scope, A.c.principal_id == principal_id))
            conn.execute(insert(A).values(scope=scope, principal_id=principal_id, permission=permission))

    def delete_acl(self, scope: str, principal_id: int) -> bool:
        with changing(self._engine) as conn:
            return bool(
                conn.execute(delete(A).where(A.c.scope == scope, A.c.principal_id == principal_id)).rowcount
            )
