"""The store's change counter: how every server process learns, with one cheap read, that
another process changed something (an endpoint, a grant, a token, a secret, a replica).

Every control-plane write runs in :func:`changing` instead of ``engine.begin()``: the counter's
one row is bumped in the same transaction as the write, so a process that reads a new counter
value is guaranteed to read the write too (it committed with it). On PostgreSQL the bump takes
the row's lock until commit, which serialises control-plane writes: they are rare (an endpoint
update, a grant, a token), and the order they commit in is the counter's.

What the counter does not carry is *what* changed: a reader that sees it move re-reads what
it caches (``control/changes.py``), each cache with its own cheap change markers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection

from modelport.store import schema

__all__ = ["ChangeCounter", "bump", "changing"]

S = schema.store_changes


def bump(conn: Connection) -> None:
    """Count a change inside the caller's transaction (it commits or rolls back with it)."""
    conn.execute(update(S).where(S.c.id == 1).values(version=S.c.version + 1))


@contextmanager
def changing(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for a control-plane write: the counter is bumped before the commit.

    The bump is the transaction's last statement, so the counter's row is locked for the
    shortest time (PostgreSQL); an exception in the block rolls back both."""
    with engine.begin() as conn:
        yield conn
        bump(conn)


class ChangeCounter:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def version(self) -> int:
        """The counter now (one primary-key read)."""
        with self._engine.connect() as conn:
            value = conn.execute(select(S.c.version).where(S.c.id == 1)).scalar()
        return int(value or 0)
