"""Which store errors mean "the database cannot be reached now" rather than a bug.

SQLAlchemy raises :class:`~sqlalchemy.exc.OperationalError` when a connection cannot be opened
or is lost mid-statement (PostgreSQL restarted, the network cut, SQLite's ``database is locked``),
:class:`~sqlalchemy.exc.InterfaceError` when the driver's connection is already closed, and
:class:`~sqlalchemy.exc.TimeoutError` when no pooled connection frees up in time. All three say
"retry later": ``api/errors.py`` answers them 503 ``TEMPORARILY_UNAVAILABLE`` with ``Retry-After``,
and the request path (``gateway/auth.py``, the routing table's sync) keeps serving from what it
holds in memory. Integrity and programming errors are not in the list: those are bugs or conflicts.

The engine has ``pool_pre_ping`` (``store/database.py``), so once the database is back the next
checkout replaces the dead pooled connections and nothing needs restarting.
"""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

__all__ = ["RETRY_AFTER_SECONDS", "UNREACHABLE", "is_unreachable"]

#: Errors that mean the metadata store is unreachable for now.
UNREACHABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)

#: The ``Retry-After`` a client gets while the store is unreachable.
RETRY_AFTER_SECONDS = 5


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the store cannot be reached now."""
    seen: BaseException | None = exc
    for _ in range(4):  # an error translated once or twice on its way up still counts
        if seen is None:
            return False
        if isinstance(seen, UNREACHABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
