"""Which online store a location names, and the two interfaces every online store offers.

A location is what ``--online-store`` / ``MODELPORT_ONLINE_STORE`` holds:

- a path: the embedded SQLite store (:mod:`modelport.tables.online_store`), one file of this
  machine; replicas on other machines (Ray) cannot read it;
- ``postgresql://user[:password]@host:port/db[?schema=name]``: :mod:`modelport.tables.online_postgres`
  (schema ``modelport_online`` by default);
- ``redis://[[user]:password@]host:port/db[?prefix=...]`` (``rediss://`` for TLS):
  :mod:`modelport.tables.online_redis` (keys under ``mp:feat:`` by default).

The server writes through :func:`open_store`; lookups (the server's, a replica's, the gateway's
feature-spec endpoints) read through :func:`open_reader`. Every store gives back the same values
(:mod:`modelport.tables.online_values`). Log a location only through :func:`redacted`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from modelport.errors import InvalidParameterValue
from modelport.tables.features import FeatureTableInfo

__all__ = ["SCHEMES", "LookupReader", "OnlineWriter", "open_reader", "open_store", "redacted", "store_kind"]


class LookupReader(Protocol):
    def lookup(
        self,
        name: str,
        keys: list[tuple[Any, ...]],
        columns: list[str] | None = None,
        *,
        as_of_ms: list[int | None] | None = None,
        lookback_ms: int | None = None,
    ) -> list[dict[str, Any] | None]: ...

    def close(self) -> None: ...


class OnlineWriter(Protocol):
    def publish(self, info: FeatureTableInfo, data: pa.Table, *, mode: str) -> dict[str, Any]: ...

    def state(self, name: str) -> dict[str, Any] | None: ...

    def states(self) -> list[dict[str, Any]]: ...

    def drop(self, name: str) -> None: ...

    def close(self) -> None: ...


#: The URL schemes of the stores that are not embedded, and which store each names.
SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "redis": "redis",
    "rediss": "redis",
}


def store_kind(location: str | Path) -> str:
    """``sqlite`` (a path), ``postgresql`` or ``redis``; 400 for a URL of another scheme."""
    text = str(location)
    if "://" not in text:
        return "sqlite"
    scheme = text.split("://", 1)[0].lower()
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise InvalidParameterValue(
            f"The online store must be a file path, postgresql://... or redis://...; got a {scheme}:// URL."
        )
    return kind


def redacted(location: str | Path) -> str:
    """``location`` with a URL's password replaced by ``***`` (for logs and messages)."""
    text = str(location)
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def open_store(location: str | Path) -> OnlineWriter:
    """The writer of the online store at ``location`` (an embedded file is made, with its folder,
    when missing; a PostgreSQL schema on first use; Redis needs nothing made)."""
    kind = store_kind(location)
    if kind == "postgresql":
        from modelport.tables.online_postgres import PostgresOnlineStore

        return PostgresOnlineStore(str(location))
    if kind == "redis":
        from modelport.tables.online_redis import RedisOnlineStore

        return RedisOnlineStore(str(location))
    from modelport.tables.online_store import OnlineStore

    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    return OnlineStore(path)


def open_reader(location: str | Path) -> LookupReader:
    """A reader of the online store at ``location`` (opens no connection until its first lookup;
    a store with nothing published answers every table as not published)."""
    kind = store_kind(location)
    if kind == "postgresql":
        from modelport.tables.online_postgres import PostgresOnlineReader

        return PostgresOnlineReader(str(location))
    if kind == "redis":
        from modelport.tables.online_redis import RedisOnlineReader

        return RedisOnlineReader(str(location))
    from modelport.tables.online_store import OnlineReader

    return OnlineReader(Path(location))
