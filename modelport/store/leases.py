"""Leases: which server process holds a role (the reconciler's), until when, and the epoch that
fences its writes.

A lease is one row of ``leases``: its holder (one server process), an epoch and an expiry. The
epoch grows by one at the start of every tenure (another holder, or the same holder after its
lease lapsed or was released) and stays the same while the holder renews, so an epoch names
one unbroken tenure. Every write the holder makes for the role calls :func:`fence` in its
transaction: once another tenure has begun, or the lease has expired, the write is refused
with :class:`~modelport.errors.LeaseLost` and rolled back. A lease alone cannot stop a paused
or partitioned old holder from acting late; the fence can.

Every time is the database's clock (``statement_timestamp()`` on PostgreSQL, ``julianday('now')``
on SQLite), never a server's, so the servers' clocks need not agree. Every operation is one
short transaction on whatever connection the pool hands out, with no session state (no
session advisory lock, no ``SET`` outliving the transaction), so leases work through a
transaction-mode pooler such as PgBouncer.

On PostgreSQL :func:`fence` takes a ``FOR KEY SHARE`` lock on the lease row for the rest of the
caller's transaction. A takeover changes the epoch, a key column (``uq_leases_name_epoch``), so
it waits for that transaction to end (at most a third of its ttl, then it tries again later):
a write that passed its fence commits before the next tenure begins. The holder's renewal
changes no key column and is not held up. On SQLite the fence is a write, and SQLite's single
writer orders it with a takeover the same way; a renewal waits for it (``busy_timeout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, Row, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import CompileError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from modelport.errors import InvalidParameterValue, LeaseLost
from modelport.store import schema

__all__ = ["RECONCILER_LEASE", "Lease", "LeaseRepository", "db_now_ms", "fence"]

#: The lease of the server process that runs the reconciler and the replicas.
RECONCILER_LEASE = "reconciler"

L = schema.leases

#: PostgreSQL's SQLSTATE for ``lock_timeout`` (lock_not_available).
_LOCK_NOT_AVAILABLE = "55P03"


class db_now_ms(FunctionElement[int]):
    """The database's clock in milliseconds since the epoch, one value per statement."""

    type = BigInteger()
    inherit_cache = True


@compiles(db_now_ms, "postgresql")
def _now_postgresql(_element: db_now_ms, _compiler: Any, **_kw: Any) -> str:
    # statement_timestamp(), not now(): now() is the transaction's start, which a fence in a
    # long transaction would see as earlier than it is.
    return "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)"


@compiles(db_now_ms, "sqlite")
def _now_sqlite(_element: db_now_ms, _compiler: Any, **_kw: Any) -> str:
    # 'now' is the same for the whole statement; julianday keeps the milliseconds.
    return "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"


@compiles(db_now_ms)
def _now_other(_element: db_now_ms, compiler: Any, **_kw: Any) -> str:
    raise CompileError(f"no database clock expression for {compiler.dialect.name}")


@dataclass(frozen=True)
class Lease:
    """One lease as the database had it at ``now_ms`` (the database's clock)."""

    name: str
    holder: str
    epoch: int
    expires_ms: int
    acquired_ms: int
    renewed_ms: int
    now_ms: int

    @property
    def expired(self) -> bool:
        return self.expires_ms <= self.now_ms

    @property
    def remaining_ms(self) -> int:
        """Milliseconds until it expires, by the database's clock (0 once expired)."""
        return max(0, self.expires_ms - self.now_ms)


def _lease(row: Row[Any]) -> Lease:
    m = row._mapping
    return Lease(
        name=m["name"],
        holder=m["holder"],
        epoch=int(m["epoch"]),
        expires_ms=int(m["expires_ms"]),
        acquired_ms=int(m["acquired_ms"]),
        renewed_ms=int(m["renewed_ms"]),
        now_ms=int(m["now_ms"]),
    )


class LeaseRepository:
    """Acquire, renew, release and read leases. Safe from any thread and any number of
    processes and servers on one database; each call is its own short transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def acquire_or_renew(self, name: str, holder: str, ttl_seconds: float) -> Lease | None:
        """Take the lease ``name`` for ``holder`` until ``ttl_seconds`` after the database's
        now, or renew it; None while another holder's lease runs.

        Taken when it is free (no row yet), expired or released; renewed when ``holder`` holds
        it unexpired (same epoch). Any other success starts a new tenure: epoch + 1 (1 for a
        new row). On PostgreSQL a takeover waits at most ``ttl_seconds / 3`` for a fenced
        transaction of the old holder and then answers None (try again later). Errors of the
        database (unreachable, ...) are raised as SQLAlchemy raises them.
        """
        ttl_ms = round(ttl_seconds * 1000)
        if ttl_ms < 1:
            raise InvalidParameterValue(f"A lease's ttl must be positive, not {ttl_seconds}.")
        now = db_now_ms()
        unbroken = (L.c.holder == holder) & (L.c.expires_ms > now)
        renew_or_take = (
            update(L)
            .where(L.c.name == name, or_(L.c.holder == holder, L.c.expires_ms <= now))
            .values(
                holder=holder,
                epoch=case((unbroken, L.c.epoch), else_=L.c.epoch + 1),
                expires_ms=now + ttl_ms,
                acquired_ms=case((unbroken, L.c.acquired_ms), else_=now),
                renewed_ms=now,
            )
            .returning(*L.c, L.c.renewed_ms.label("now_ms"))
        )
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Transaction-local, so it does not outlive this call on a pooled connection.
                    conn.execute(select(func.set_config("lock_timeout", f"{max(1, ttl_ms // 3)}ms", True)))
                row = conn.execute(renew_or_take).first()
                if row is None:
                    row = conn.execute(_insert_new(conn, name, holder, ttl_ms)).first()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                return None  # the old holder's fenced transaction is still open
            raise
        return None if row is None else _lease(row)

    def release(self, name: str, holder: str) -> bool:
        """End ``holder``'s lease now, so another can take it at once; False if it held none.

        The next acquisition, by anyone, starts a new tenure (epoch + 1).
        """
        now = db_now_ms()
        with self._engine.begin() as conn:
            result = conn.execute(
                update(L)
                .where(L.c.name == name, L.c.holder == holder, L.c.expires_ms > now)
                .values(expires_ms=now)
            )
        return bool(result.rowcount)

    def current(self, name: str) -> Lease | None:
        """The lease ``name`` as stored (expired or not), None if it was never taken."""
        with self._engine.connect() as conn:
            row = conn.execute(select(*L.c, db_now_ms().label("now_ms")).where(L.c.name == name)).first()
        return None if row is None else _lease(row)


def _insert_new(conn: Connection, name: str, holder: str, ttl_ms: int) -> Any:
    """The first tenure of a lease that has no row yet; inserts nothing if one appeared."""
    now = db_now_ms()
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return (
        insert(L)
        .values(name=name, holder=holder, epoch=1, expires_ms=now + ttl_ms, acquired_ms=now, renewed_ms=now)
        .on_conflict_do_nothing(index_elements=[L.c.name])
        .returning(*L.c, L.c.renewed_ms.label("now_ms"))
    )


def fence(conn: Connection, name: str, epoch: int) -> None:
    """Check, inside the caller's transaction on ``conn``, that the lease ``name`` is still held
    at ``epoch`` and unexpired; raise :class:`LeaseLost` if not, which rolls the transaction
    back when raised inside ``engine.begin()``.

    Once it passed, no new tenure can begin before the transaction ends (see the module
    docstring), so the transaction's writes are ordered before anything the next holder does.
    Call it after the transaction's first write or as its last statement when possible: the
    lease row then stays locked for the shortest time, which matters if this process freezes.
    """
    now = db_now_ms()
    held = (L.c.name == name, L.c.epoch == epoch, L.c.expires_ms > now)
    if conn.dialect.name == "sqlite":
        # pysqlite opens a transaction only at the first write, so a SELECT here would not be
        # part of the caller's transaction; this no-op write is, and holds SQLite's write lock.
        ok = conn.execute(update(L).where(*held).values(epoch=L.c.epoch)).rowcount == 1
    else:
        ok = (
            conn.execute(select(L.c.epoch).where(*held).with_for_update(read=True, key_share=True)).first()
            is not None
        )
    if ok:
        return
    row = conn.execute(select(L.c.epoch, L.c.expires_ms, now.label("now_ms")).where(L.c.name == name)).first()
    if row is None:
        why = "it was never taken"
    elif int(row.epoch) != epoch:
        why = f"epoch {int(row.epoch)} has begun"
    else:
        why = "it expired"
    raise LeaseLost(
        f"This server no longer holds the {name!r} lease at epoch {epoch} ({why}); the write was refused."
    )
