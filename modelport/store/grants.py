"""Grants on registered models, experiments and tables, and model-version content digests.

The repository stores plain integers (1 read, 2 edit/modify, 3 manage) keyed by an object
type and id; who may do what is decided in ``control/``.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelport.store import schema
from modelport.store.changes import changing

__all__ = ["DigestRepository", "GrantRepository"]

G, D = schema.object_acl, schema.model_version_digests


class GrantRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def acl(self, object_type: str, object_id: str) -> dict[int, int]:
        """Direct grants on one object: principal id → level."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(G.c.principal_id, G.c.level).where(
                    G.c.object_type == object_type, G.c.object_id == object_id
                )
            ).all()
        return {int(p): int(level) for p, level in rows}

    def readable(self, object_type: str, principal_ids: Iterable[int]) -> dict[str, int]:
        """Every object of a type that one of ``principal_ids`` holds a grant on: id → best level."""
        ids = list(principal_ids)
        if not ids:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(G.c.object_id, G.c.level).where(
                    G.c.object_type == object_type, G.c.principal_id.in_(ids)
                )
            ).all()
        best: dict[str, int] = {}
        for object_id, level in rows:
            best[object_id] = max(best.get(object_id, 0), int(level))
        return best

    def has_any(self, object_type: str, object_id: str) -> bool:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(G.c.principal_id)
                .where(G.c.object_type == object_type, G.c.object_id == object_id)
                .limit(1)
            ).first()
        return row is not None

    def write(self, object_type: str, object_id: str, grants: dict[int, int], *, replace: bool) -> None:
        """Set grants (principal id → level; a level of 0 removes that principal's grant)."""
        with changing(self._engine) as conn:
            where = (G.c.object_type == object_type, G.c.object_id == object_id)
            if replace:
                conn.execute(delete(G).where(*where))
            elif grants:
                conn.execute(delete(G).where(*where, G.c.principal_id.in_(list(grants))))
            for principal_id, level in grants.items():
                if level > 0:
                    conn.execute(
                        insert(G).values(
                            object_type=object_type,
                            object_id=object_id,
                            principal_id=principal_id,
                            level=level,
                        )
                    )

    def grant_if_absent(self, object_type: str, object_id: str, principal_id: int, level: int) -> bool:
        """Give one grant unless the principal holds one already; True when written."""
        try:
            with changing(self._engine) as conn:
                conn.execute(
                    insert(G).values(
                        object_type=object_type, object_id=object_id, principal_id=principal_id, level=level
                    )
                )
            return True
        except IntegrityError:
            return False

    def rename(self, object_type: str, old_id: str, new_id: str) -> None:
        with changing(self._engine) as conn:
            conn.execute(
                update(G)
                .where(G.c.object_type == object_type, G.c.object_id == old_id)
                .values(object_id=new_id)
            )

    def drop(self, object_type: str, object_id: str) -> None:
        with changing(self._engine) as conn:
            conn.execute(delete(G).where(G.c.object_type == object_type, G.c.object_id == object_id))

    def object_ids(self, object_type: str) -> set[str]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(G.c.object_id).where(G.c.object_type == object_type).distinct()).all()
        return {str(r[0]) for r in rows}


class DigestRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, model_name: str, version: int) -> tuple[str, str] | None:
        """(digest, source) recorded for a version, None if none was."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(D.c.digest, D.c.source).where(D.c.model_name == model_name, D.c.version == version)
            ).first()
        return None if row is None else (str(row[0]), str(row[1]))

    def record(self, model_name: str, version: int, digest: str, source: str, now_ms: int) -> bool:
        """Record a digest once; True when written, False when one was there (it is kept)."""
        try:
            with changing(self._engine) as conn:
                conn.execute(
                    insert(D).values(
                        model_name=model_name,
                        version=version,
                        digest=digest,
                        source=source,
                        created_ms=now_ms,
                    )
                )
            return True
        except IntegrityError:
            return False

    def rename(self, old_name: str, new_name: str) -> None:
        with changing(self._engine) as conn:
            conn.execute(update(D).where(D.c.model_name == old_name).values(model_name=new_name))

    def drop(self, model_name: str, version: int | None = None) -> None:
        with changing(self._engine) as conn:
            where = [D.c.model_name == model_name]
            if version is not None:
                where.append(D.c.version == version)
            conn.execute(delete(D).where(*where))

    def versions(self) -> set[tuple[str, int]]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(D.c.model_name, D.c.version)).all()
        return {(str(n), int(v)) for n, v in rows}
