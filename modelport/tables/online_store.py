"""The embedded online store: feature tables published into one SQLite file for key lookups.

The server owns the file and writes it (:class:`OnlineStore`); the server's lookup route and every
replica read it (:class:`OnlineReader`, told where it is by ``MODELPORT_ONLINE_STORE``).

Layout of the file (WAL mode, so readers in other processes never wait for a publish and see it
whole or not at all):

- ``online_tables``: one row per published feature table: its data table, publish mode, the Delta
  version published, when, how many rows, and its spec (columns and how each is stored, keys).
- ``g<N>``: the rows of one publish, a ``WITHOUT ROWID`` table clustered on the primary keys (then
  the timestamp key), columns named ``c0, c1, ...`` in the spec's order. Every publish builds a new
  ``g<N>`` (``N`` never repeats), points ``online_tables`` at it and drops the old one, all in one
  transaction: a reader holding a statement on the old table gets "no such table", reloads the spec
  and asks again.

Values are stored and given back as :mod:`modelport.tables.online_values` says (the same in every
store); this store keeps bools as 0/1 and dates and timestamps as INTEGER microseconds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from modelport.errors import TemporarilyUnavailable
from modelport.tables.features import FeatureTableInfo
from modelport.tables.online_values import (
    PUBLISH_MODES,
    TableSpec,
    bind_keys,
    canonical,
    check_lookup,
    converters,
    not_published,
    publish_spec,
    state_of,
    stored,
    wanted_columns,
)

__all__ = ["PUBLISH_MODES", "OnlineReader", "OnlineStore"]

_BATCH_ROWS = 65_536
_BUSY_MS = 30_000
_MMAP_BYTES = 1 << 30
_WAL_LIMIT_BYTES = 64 << 20

_SQL_TYPES = {
    "bool": "INTEGER",
    "int": "INTEGER",
    "float": "REAL",
    "str": "TEXT",
    "bytes": "BLOB",
    "date": "INTEGER",
    "timestamp": "INTEGER",
    "json": "TEXT",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_tables (
    name TEXT PRIMARY KEY,
    data_table TEXT NOT NULL,
    mode TEXT NOT NULL,
    published_version INTEGER NOT NULL,
    published_ms INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS online_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO online_meta VALUES ('next_generation', 1);
"""


# -- the writer -------------------------------------------------------------------------------------


class OnlineStore:
    """The writer of the online store file at ``path`` (made with its folder if missing).

    Publishes from several threads of this process are serialised; one from another process waits
    for the file's write lock (up to 30 s). A publish is one transaction: readers see the table's
    old rows until it commits, then only the new ones.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._con.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        self._con.execute("PRAGMA journal_mode = WAL")
        self._con.execute("PRAGMA synchronous = NORMAL")
        self._con.execute("PRAGMA cache_size = -65536")  # 64 MiB: a 1M-row publish stays in memory
        self._con.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT_BYTES}")  # after a big publish
        with self._lock, self._transaction():
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self._con.execute(statement)
            self._drop_orphans()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._con)

    def _drop_orphans(self) -> None:
        """Drop data tables no row points at (a publish that died before its commit leaves none, but
        a file written by something else might)."""
        used = {r[0] for r in self._con.execute("SELECT data_table FROM online_tables")}
        tables = self._con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'g[0-9]*'"
        ).fetchall()
        for (table,) in tables:
            if table not in used:
                self._con.execute(f'DROP TABLE "{table}"')

    def publish(self, info: FeatureTableInfo, data: pa.Table, *, mode: str) -> dict[str, Any]:
        """Replace the online rows of ``info.name`` with ``data`` (the table at ``info.version``).

        ``data`` must hold every key column of ``info`` without nulls; all its columns are published.
        Returns :meth:`state`.
        """
        name, keys, spec = publish_spec(info, data, mode)
        if data.num_rows > 1:  # inserting in key order keeps the B-tree appends cheap
            data = data.sort_by([(k, "ascending") for k in keys])
        kinds = [c["kind"] for c in spec["columns"]]
        position = {n: i for i, n in enumerate(data.column_names)}
        column_defs = ", ".join(f"c{i} {_SQL_TYPES[k]}" for i, k in enumerate(kinds))
        key_cols = ", ".join(f"c{position[k]}" for k in keys)
        marks = ", ".join("?" * len(kinds))
        with self._lock, self._transaction():
            generation = self._con.execute(
                "UPDATE online_meta SET value = value + 1 WHERE key = 'next_generation' RETURNING value - 1"
            ).fetchone()[0]
            table = f"g{generation}"
            self._con.execute(f"CREATE TABLE {table} ({column_defs}, PRIMARY KEY ({key_cols})) WITHOUT ROWID")
            self._con.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", _rows(data, kinds))
            rows = self._con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            old = self._con.execute("SELECT data_table FROM online_tables WHERE name = ?", (name,)).fetchone()
            self._con.execute(
                "INSERT OR REPLACE INTO online_tables VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, table, mode, info.version, int(time.time() * 1000), rows, orjson.dumps(spec).decode()),
            )
            if old is not None:
                self._con.execute(f"DROP TABLE IF EXISTS {old[0]}")
        state = self.state(name)
        assert state is not None
        return state

    def state(self, name: str) -> dict[str, Any] | None:
        """How ``name`` is published, or ``None`` when it is not::

        {"name", "mode", "published_version", "published_ms", "rows", "columns": [names],
         "primary_keys", "timestamp_keys", "status": "ONLINE"}
        """
        name = canonical(name)
        with self._lock:
            row = self._con.execute(
                "SELECT name, mode, published_version, published_ms, rows, spec FROM online_tables "
                "WHERE name = ?",
                (name,),
            ).fetchone()
        return _state(row) if row is not None else None

    def states(self) -> list[dict[str, Any]]:
        """:meth:`state` of every published table, by name."""
        with self._lock:
            rows = self._con.execute(
                "SELECT name, mode, published_version, published_ms, rows, spec FROM online_tables "
                "ORDER BY name"
            ).fetchall()
        return [_state(r) for r in rows]

    def drop(self, name: str) -> None:
        """Take ``name`` out of the online store (nothing happens when it is not there)."""
        name = canonical(name)
        with self._lock, self._transaction():
            old = self._con.execute("SELECT data_table FROM online_tables WHERE name = ?", (name,)).fetchone()
            if old is not None:
                self._con.execute("DELETE FROM online_tables WHERE name = ?", (name,))
                self._con.execute(f"DROP TABLE IF EXISTS {old[0]}")


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on an exception."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def __enter__(self) -> None:
        self._con.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self._con.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _rows(data: pa.Table, kinds: list[str]) -> Iterator[tuple[Any, ...]]:
    for batch in data.to_batches(max_chunksize=_BATCH_ROWS):
        columns = []
        for i, kind in enumerate(kinds):
            values = stored(pa.chunked_array([batch.column(i)]), kind)
            columns.append(values if isinstance(values, list) else values.to_pylist())
        yield from zip(*columns, strict=True)


def _state(row: tuple[Any, ...]) -> dict[str, Any]:
    name, mode, version, published_ms, rows, spec_text = row
    return state_of(name, mode, version, published_ms, rows, orjson.loads(spec_text))


# -- the reader -------------------------------------------------------------------------------------


class OnlineReader:
    """Key lookups in the online store file at ``path``, read-only, from any number of threads.

    Each thread gets its own SQLite connection (opened on its first lookup). The file may not exist
    yet: every table then counts as not published. A publish by the writer in another process is
    seen by the next lookup.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._specs: dict[str, TableSpec] = {}
        self._statements: dict[tuple[Any, ...], str] = {}
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()

    def close(self) -> None:
        """Close every thread's connection (a later lookup opens a new one)."""
        with self._guard:
            connections, self._connections = self._connections, []
            self._local = threading.local()
        for con in connections:
            con.close()

    def _connection(self) -> sqlite3.Connection | None:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None:
            return con
        if not self.path.exists():
            return None
        uri = self.path.resolve().as_uri() + "?mode=ro"
        con = sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=False, cached_statements=512
        )
        con.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        # Read the file through a memory map: random key lookups skip a read() call per page
        # (a third off a 100-key lookup). The writer never shrinks the file, so the map stays valid.
        con.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
        self._local.con = con
        with self._guard:
            self._connections.append(con)
        return con

    def _spec(self, con: sqlite3.Connection, name: str) -> TableSpec:
        try:
            row = con.execute("SELECT data_table, spec FROM online_tables WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a file no OnlineStore has set up yet
                raise not_published(name) from None
            raise
        if row is None:
            self._specs.pop(name, None)
            raise not_published(name)
        spec = TableSpec(name, row[0], orjson.loads(row[1]))
        self._specs[name] = spec
        return spec

    def lookup(
        self,
        name: str,
        keys: list[tuple[Any, ...]],
        columns: list[str] | None = None,
        *,
        as_of_ms: list[int | None] | None = None,
        lookback_ms: int | None = None,
    ) -> list[dict[str, Any] | None]:
        """The rows of ``name`` for ``keys`` (tuples in the order of the primary keys), in key order.

        Each answer is ``{column: value}`` for ``columns`` (default: every column that is not a key),
        or ``None`` when no row matches. With a timestamp key, the row is the latest one whose
        timestamp is at or before ``as_of_ms[i]`` (epoch milliseconds; ``None``: no bound) and, with
        ``lookback_ms``, not older than ``as_of_ms[i] - lookback_ms``; ``as_of_ms`` is ignored for a
        table without a timestamp key. All keys are asked in one SQL statement (a batch with more
        values than SQLite binds in one statement, 250,000 here, in several).

        Raises :class:`~modelport.errors.TemporarilyUnavailable` when the table is not published, or
        when it has no column named in ``columns`` (the published table no longer fits the caller);
        :class:`~modelport.errors.InvalidParameterValue` for a key of the wrong length or type.
        """
        name = canonical(name)
        check_lookup(keys, as_of_ms, lookback_ms)
        con = self._connection()
        if con is None:
            raise not_published(name)
        spec = self._specs.get(name)
        if spec is not None and keys:
            try:  # the common case: the spec read earlier still holds, one statement
                return self._lookup(con, spec, keys, columns, as_of_ms, lookback_ms)
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
            except TemporarilyUnavailable:  # the spec read earlier lacks a column: read it again
                pass
        # The table was republished (or dropped) since its spec was read, or it was never read:
        # read the spec and the rows in one read transaction, so that both come from one snapshot.
        con.execute("BEGIN")
        try:
            spec = self._spec(con, name)
            return self._lookup(con, spec, keys, columns, as_of_ms, lookback_ms) if keys else []
        finally:
            con.execute("COMMIT")

    def _lookup(
        self,
        con: sqlite3.Connection,
        spec: TableSpec,
        keys: list[tuple[Any, ...]],
        columns: list[str] | None,
        as_of_ms: list[int | None] | None,
        lookback_ms: int | None,
    ) -> list[dict[str, Any] | None]:
        wanted = wanted_columns(spec, columns)
        bound = bind_keys(spec, keys, as_of_ms, lookback_ms)
        changes = converters(spec, wanted)
        width = len(wanted)
        out: list[dict[str, Any] | None] = [None] * len(keys)
        per_key = 1 + len(bound[0])
        step = max(1, con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // per_key)
        for start in range(0, len(bound), step):
            chunk = bound[start : start + step]
            for row in self._query(con, spec, wanted, chunk, start):
                if not changes:
                    out[row[0]] = dict(zip(wanted, row[1 : 1 + width], strict=True))
                    continue
                values = list(row[1 : 1 + width])
                for j, convert in changes:
                    if values[j] is not None:
                        values[j] = convert(values[j])
                out[row[0]] = dict(zip(wanted, values, strict=True))
        return out

    def _query(
        self,
        con: sqlite3.Connection,
        spec: TableSpec,
        wanted: list[str],
        chunk: list[tuple[Any, ...]],
        start: int,
    ) -> list[tuple[Any, ...]]:
        if len(chunk) == 1:
            sql = self._statement(spec, wanted, 1)
            return [(start, *r) for r in con.execute(sql, chunk[0]).fetchall()]
        # Pad the batch to a power of two with keys that match nothing, so that few statement
        # texts exist and SQLite's statement cache keeps them prepared.
        size = 1 << (len(chunk) - 1).bit_length()
        if size * (len(chunk[0]) + 1) > con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER):
            size = len(chunk)
        width = len(chunk[0])
        params: list[Any] = []
        for i, values in enumerate(chunk):
            params.append(start + i)
            params.extend(values)
        params.extend([None] * ((size - len(chunk)) * (width + 1)))
        return con.execute(self._statement(spec, wanted, size), params).fetchall()

    def _statement(self, spec: TableSpec, wanted: list[str], size: int) -> str:
        cache_key = (spec.data_table, tuple(wanted), size)
        sql = self._statements.get(cache_key)
        if sql is not None:
            return sql
        select = ", ".join(f"t.{spec.col(c)}" for c in wanted) or "1"
        pks = [spec.col(k) for k in spec.primary_keys]
        ts = spec.col(spec.timestamp_key) if spec.timestamp_key is not None else None
        table = spec.data_table
        if size == 1:
            where = " AND ".join(f"t.{c} = ?" for c in pks)
            if ts is None:
                sql = f"SELECT {select} FROM {table} AS t WHERE {where}"
            else:
                sql = (
                    f"SELECT {select} FROM {table} AS t WHERE {where} AND t.{ts} BETWEEN ? AND ? "
                    f"ORDER BY t.{ts} DESC LIMIT 1"
                )
        else:
            names = [f"k{i}" for i in range(len(pks))]
            params = ["i", *names] + (["lo", "hi"] if ts is not None else [])
            one = "(" + ", ".join("?" * len(params)) + ")"
            values = ", ".join([one] * size)
            on = " AND ".join(f"t.{c} = k.{n}" for c, n in zip(pks, names, strict=True))
            if ts is not None:
                inner = " AND ".join(f"t2.{c} = k.{n}" for c, n in zip(pks, names, strict=True))
                on += (
                    f" AND t.{ts} = (SELECT t2.{ts} FROM {table} AS t2 WHERE {inner} "
                    f"AND t2.{ts} BETWEEN k.lo AND k.hi ORDER BY t2.{ts} DESC LIMIT 1)"
                )
            sql = (
                f"WITH k({', '.join(params)}) AS (VALUES {values}) "
                f"SELECT k.i, {select} FROM k JOIN {table} AS t ON {on}"
            )
        self._statements[cache_key] = sql
        return sql
