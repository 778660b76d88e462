"""Users, service principals, groups (with members) and the hashed API tokens they own."""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from modelport.errors import ResourceAlreadyExists
from modelport.store import schema
from modelport.store.changes import changing
from modelport.store.records import PrincipalRecord, TokenRecord

__all__ = ["PrincipalRepository"]

P, G, T = schema.principals, schema.group_members, schema.tokens


class PrincipalRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _groups_of(self, conn: Connection, principal_id: int) -> list[tuple[str, int]]:
        rows = conn.execute(
            select(P.c.name, P.c.id)
            .select_from(G.join(P, G.c.group_id == P.c.id))
            .where(G.c.member_id == principal_id)
        ).all()
        return sorted((str(r[0]), int(r[1])) for r in rows)

    def _record(self, conn: Connection, row: RowMapping) -> PrincipalRecord:
        groups = self._groups_of(conn, row["id"])
        return PrincipalRecord(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            display_name=row["display_name"],
            is_admin=bool(row["is_admin"]),
            active=bool(row["active"]),
            created_ms=row["created_ms"],
            groups=tuple(g[0] for g in groups),
            group_ids=tuple(g[1] for g in groups),
        )

    def create(
        self, name: str, kind: str, *, display_name: str | None, is_admin: bool, now_ms: int
    ) -> PrincipalRecord:
        try:
            with changing(self._engine) as conn:
                pid = conn.execute(
                    insert(P).values(
                        name=name,
                        kind=kind,
                        display_name=display_name,
                        is_admin=is_admin,
                        active=True,
                        created_ms=now_ms,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
        except IntegrityError:
            raise ResourceAlreadyExists(f"A principal named '{name}' already exists.") from None
        found = self.get_by_id(int(pid))
        assert found is not None
        return found

    def get(self, name: str) -> PrincipalRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(P).where(P.c.name == name)).mappings().first()
            return None if row is None else self._record(conn, row)

    def get_by_id(self, principal_id: int) -> PrincipalRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(P).where(P.c.id == principal_id)).mappings().first()
            return None if row is None else self._record(conn, row)

    def list(self, kind: str | None = None) -> list[PrincipalRecord]:
        query = select(P).order_by(P.c.name)
        if kind:
            query = query.where(P.c.kind == kind)
        with self._engine.connect() as conn:
            return [self._record(conn, r) for r in conn.execute(query).mappings().all()]

    def members(self, group_id: int) -> list[PrincipalRecord]:
        with self._engine.connect() as conn:
            rows = (
                conn.execute(
                    select(P).select_from(G.join(P, G.c.member_id == P.c.id)).where(G.c.group_id == group_id)
                )
                .mappings()
                .all()
            )
            return [self._record(conn, r) for r in rows]

    def set_members(self, group_id: int, member_ids: list[int], *, replace: bool) -> None:
        with changing(self._engine) as conn:
            if replace:
                conn.execute(delete(G).where(G.c.group_id == group_id))
            else:
                conn.execute(delete(G).where(G.c.group_id == group_id, G.c.member_id.in_(member_ids)))
            for mid in dict.fromkeys(member_ids):
                conn.execute(insert(G).values(group_id=group_id, member_id=mid))

    def remove_members(self, group_id: int, member_ids: list[int]) -> None:
        with changing(self._engine) as conn:
            conn.execute(delete(G).where(G.c.group_id == group_id, G.c.member_id.in_(member_ids)))

    def set_admin(self, principal_id: int, is_admin: bool) -> None:
        with changing(self._engine) as conn:
            conn.execute(update(P).where(P.c.id == principal_id).values(is_admin=is_admin))

    def set_active(self, principal_id: int, active: bool) -> None:
        with changing(self._engine) as conn:
            conn.execute(update(P).where(P.c.id == principal_id).values(active=active))

    def delete(self, principal_id: int) -> None:
        with changing(self._engine) as conn:
            conn.execute(delete(T).where(T.c.principal_id == principal_id))
            conn.execute(delete(G).where((G.c.group_id == principal_id) | (G.c.member_id == principal_id)))
            conn.execute(
                delete(schema.endpoint_acl).where(schema.endpoint_acl.c.principal_id == principal_id)
            )
            conn.execute(delete(schema.secret_acls).where(schema.secret_acls.c.principal_id == principal_id))
            conn.execute(delete(P).where(P.c.id == principal_id))

    # ---- tokens ----------------------------------------------------------------------
    def add_token(
        self,
        token_id: str,
        principal_id: int,
        token_hash: str,
        *,
        comment: str | None,
        now_ms: int,
        expiry_ms: int | None,
        created_by: str | None,
    ) -> None:
        with changing(self._engine) as conn:
            conn.execute(
                insert(T).values(
                    id=token_id,
                    principal_id=principal_id,
                    token_hash=token_hash,
                    comment=comment,
                    created_ms=now_ms,
                    expiry_ms=expiry_ms,
                    created_by=created_by,
                )
            )

    def find_token(self, token_hash: str) -> tuple[TokenRecord, PrincipalRecord] | None:
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    select(T, P.c.name.label("principal_name"))
                    .select_from(T.join(P, T.c.principal_id == P.c.id))
                    .where(T.c.token_hash == token_hash)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            prow = conn.execute(select(P).where(P.c.id == row["principal_id"])).mappings().first()
            assert prow is not None
            return self._token(row), self._record(conn, prow)

    @staticmethod
    def _token(row: RowMapping) -> TokenRecord:
        return TokenRecord(
            id=row["id"],
            principal_id=row["principal_id"],
            principal_name=row["principal_name"],
            comment=row["comment"],
            created_ms=row["created_ms"],
            expiry_ms=row["expiry_ms"],
            created_by=row["created_by"],
        )

    def tokens(self, principal_id: int | None = None, token_id: str | None = None) -> list[TokenRecord]:
        query = (
            select(T, P.c.name.label("principal_name"))
            .select_from(T.join(P, T.c.principal_id == P.c.id))
            .order_by(T.c.created_ms)
        )
        if principal_id is not None:
            query = query.where(T.c.principal_id == principal_id)
        if token_id is not None:
            query = query.where(T.c.id == token_id)
        with self._engine.connect() as conn:
            return [self._token(r) for r in conn.execute(query).mappings().all()]

    def get_token(self, token_id: str) -> TokenRecord | None:
        found = self.tokens(token_id=token_id)  # one row by its key, not every token
        return found[0] if found else None

    def delete_token(self, token_id: str) -> str | None:
        """Delete a token; return its hash (for cache eviction) or None if unknown."""
        with changing(self._engine) as conn:
            row = conn.execute(select(T.c.token_hash).where(T.c.id == token_id)).first()
            if row is None:
                return None
            conn.execute(delete(T).where(T.c.id == token_id))
            return str(row[0])
