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

How values are stored and given back (:meth:`OnlineReader.lookup`):

    Arrow type                 stored as        returned as
    integers, floats, string   INTEGER/REAL/TEXT   int, float, str (a NaN float comes back None)
    bool                       INTEGER          bool
    binary                     BLOB             bytes
    decimal                    REAL             float
    date                       INTEGER (µs UTC) ISO text "2024-05-01"
    timestamp                  INTEGER (µs UTC) ISO text "2024-05-01T12:00:00+00:00"
    list, struct, map          TEXT (JSON)      list / dict

Without a timestamp key a table holds one row per key (the last one when the data repeats a key);
with one it holds every row, and a lookup picks the latest row at or before the key's ``as_of``.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.tables.features import FeatureTableInfo
from modelport.tables.names import split_name

__all__ = ["PUBLISH_MODES", "OnlineReader", "OnlineStore"]

#: How a table is kept up to date: once (``snapshot``), on request (``triggered``), or by
#: following new Delta versions (``continuous``, done by the server, not here).
PUBLISH_MODES = ("snapshot", "triggered", "continuous")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIN_TS = -(2**63)
_MAX_TS = 2**63 - 1
_BATCH_ROWS = 65_536
_BUSY_MS = 30_000
_MMAP_BYTES = 1 << 30
_WAL_LIMIT_BYTES = 64 << 20

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


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidParameterValue("Feature table name must be a string catalog.schema.table.")
    return ".".join(split_name(name))


def _not_published(name: str) -> TemporarilyUnavailable:
    return TemporarilyUnavailable(f"Feature table {name!r} is not published to the online store.")


# -- how columns are stored -------------------------------------------------------------------------


def _kind(typ: pa.DataType) -> str:
    if pa.types.is_boolean(typ):
        return "bool"
    if pa.types.is_integer(typ):
        return "int"
    if pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "float"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
        return "str"
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ) or pa.types.is_fixed_size_binary(typ):
        return "bytes"
    if pa.types.is_date(typ):
        return "date"
    if pa.types.is_timestamp(typ):
        return "timestamp"
    return "json"


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


def _stored(column: pa.ChunkedArray, kind: str) -> pa.ChunkedArray | list[Any]:
    """``column`` as SQLite will hold it (an Arrow column, or a list for JSON values)."""
    if kind == "timestamp":  # naive timestamps are taken as UTC; nanoseconds are truncated
        utc = pa.timestamp("us", tz="UTC")
        return pc.cast(column, options=pc.CastOptions(utc, allow_time_truncate=True)).cast(pa.int64())
    if kind == "date":  # midnight UTC, so that a date timestamp key compares like a timestamp
        days = column.cast(pa.date32()).cast(pa.int32()).cast(pa.int64())
        return pc.multiply(days, pa.scalar(86_400_000_000, pa.int64()))
    if kind == "float" and pa.types.is_decimal(column.type):
        return column.cast(pa.float64())
    if kind == "str" and not pa.types.is_string(column.type):
        return column.cast(pa.string())
    if kind == "bytes" and not pa.types.is_binary(column.type):
        return column.cast(pa.binary())
    if kind == "json":
        return [None if v is None else orjson.dumps(v, default=str).decode() for v in column.to_pylist()]
    return column


def _iso_timestamp(us: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=us)).isoformat()


def _iso_date(us: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=us)).date().isoformat()


def _out_converter(kind: str) -> Callable[[Any], Any] | None:
    """What turns a stored value back into the value returned; ``None`` when it is returned as is."""
    if kind == "bool":
        return bool
    if kind == "timestamp":
        return _iso_timestamp
    if kind == "date":
        return _iso_date
    if kind == "json":
        return orjson.loads
    return None


_AS_IS = {"int": int, "str": str, "float": float}


def _key_value(value: Any, kind: str, column: str) -> Any:
    """A lookup key value as it is stored (so that ``=`` in SQLite matches); 400 naming the column."""
    if value is None or type(value) is _AS_IS.get(kind):
        return value
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            if isinstance(value, str):
                return int(value.strip())
            return operator.index(value)  # int, numpy integers
        if kind == "str":
            if isinstance(value, str):
                return str(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            raise TypeError
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
            if math.isnan(number):
                return None
            return number
        if kind == "bool":
            if isinstance(value, bool) or value in (0, 1):
                return int(value)
            raise TypeError
        if kind == "date":
            if isinstance(value, dt.datetime):
                value = value.date()
            elif isinstance(value, str):
                value = dt.date.fromisoformat(value.strip())
            if not isinstance(value, dt.date):
                raise TypeError
            return _timestamp_us(value)
        if kind == "timestamp":
            return _timestamp_us(value)
        if kind == "bytes" and isinstance(value, bytes):
            return value
    except (TypeError, ValueError, OverflowError):
        pass
    raise InvalidParameterValue(f"Lookup key {column!r} cannot be {value!r} ({type(value).__name__}).")


def _timestamp_us(value: Any) -> int:
    """Microseconds since the epoch of a datetime (naive: UTC), ISO text, or epoch milliseconds."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, dt.date):
        return _timestamp_us(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, bool):
        raise TypeError
    return operator.index(value) * 1000


class _Spec:
    """A published table as a reader needs it: its data table, columns and their kinds."""

    __slots__ = ("columns", "data_table", "kinds", "name", "position", "primary_keys", "timestamp_key")

    def __init__(self, name: str, data_table: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.data_table = data_table
        self.columns: list[str] = [c["name"] for c in spec["columns"]]
        self.kinds: dict[str, str] = {c["name"]: c["kind"] for c in spec["columns"]}
        self.position = {n: i for i, n in enumerate(self.columns)}
        self.primary_keys: list[str] = list(spec["primary_keys"])
        ts = list(spec["timestamp_keys"])
        self.timestamp_key: str | None = ts[0] if ts else None

    def col(self, name: str) -> str:
        return f"c{self.position[name]}"


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
        if mode not in PUBLISH_MODES:
            raise InvalidParameterValue(f"mode must be one of {', '.join(PUBLISH_MODES)}; got {mode!r}.")
        name = _canonical(info.name)
        keys = [*info.primary_keys, *info.timestamp_keys[:1]]
        for key in keys:
            if key not in data.column_names:
                raise InvalidParameterValue(f"Data published for {name!r} lacks key column {key!r}.")
            if data[key].null_count:
                raise InvalidParameterValue(f"Key column {key!r} of {name!r} holds null values.")
        if len(set(data.column_names)) != len(data.column_names):
            raise InvalidParameterValue(f"Data published for {name!r} repeats a column.")
        spec = {
            "columns": [{"name": f.name, "kind": _kind(f.type), "type": str(f.type)} for f in data.schema],
            "primary_keys": list(info.primary_keys),
            "timestamp_keys": list(info.timestamp_keys[:1]),
        }
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
        name = _canonical(name)
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
        name = _canonical(name)
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
            stored = _stored(pa.chunked_array([batch.column(i)]), kind)
            columns.append(stored if isinstance(stored, list) else stored.to_pylist())
        yield from zip(*columns, strict=True)


def _state(row: tuple[Any, ...]) -> dict[str, Any]:
    name, mode, version, published_ms, rows, spec_text = row
    spec = orjson.loads(spec_text)
    return {
        "name": name,
        "mode": mode,
        "published_version": version,
        "published_ms": published_ms,
        "rows": rows,
        "columns": [c["name"] for c in spec["columns"]],
        "primary_keys": spec["primary_keys"],
        "timestamp_keys": spec["timestamp_keys"],
        "status": "ONLINE",
    }


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
        self._specs: dict[str, _Spec] = {}
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

    def _spec(self, con: sqlite3.Connection, name: str) -> _Spec:
        try:
            row = con.execute("SELECT data_table, spec FROM online_tables WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a file no OnlineStore has set up yet
                raise _not_published(name) from None
            raise
        if row is None:
            self._specs.pop(name, None)
            raise _not_published(name)
        spec = _Spec(name, row[0], orjson.loads(row[1]))
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
        name = _canonical(name)
        if as_of_ms is not None and len(as_of_ms) != len(keys):
            raise InvalidParameterValue(f"as_of_ms has {len(as_of_ms)} values for {len(keys)} keys.")
        if lookback_ms is not None and (isinstance(lookback_ms, bool) or not isinstance(lookback_ms, int)):
            raise InvalidParameterValue("lookback_ms must be an integer number of milliseconds.")
        if lookback_ms is not None and lookback_ms < 0:
            raise InvalidParameterValue("lookback_ms must not be negative.")
        con = self._connection()
        if con is None:
            raise _not_published(name)
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
        spec: _Spec,
        keys: list[tuple[Any, ...]],
        columns: list[str] | None,
        as_of_ms: list[int | None] | None,
        lookback_ms: int | None,
    ) -> list[dict[str, Any] | None]:
        if columns is None:
            skip = {*spec.primary_keys, spec.timestamp_key}
            wanted = [c for c in spec.columns if c not in skip]
        else:
            missing = [c for c in columns if c not in spec.position]
            if missing:
                raise TemporarilyUnavailable(
                    f"Feature table {spec.name!r} published to the online store has no feature "
                    f"{', '.join(map(repr, missing))}."
                )
            wanted = list(columns)
        nkeys = len(spec.primary_keys)
        key_kinds = [spec.kinds[k] for k in spec.primary_keys]
        ts = spec.timestamp_key
        bound: list[tuple[Any, ...]] = []
        for i, key in enumerate(keys):
            if not isinstance(key, tuple | list) or len(key) != nkeys:
                raise InvalidParameterValue(
                    f"Each key of {spec.name!r} must have {nkeys} value(s) "
                    f"({', '.join(spec.primary_keys)}); got {key!r}."
                )
            if nkeys == 1:
                values: tuple[Any, ...] = (_key_value(key[0], key_kinds[0], spec.primary_keys[0]),)
            else:
                values = tuple(
                    _key_value(v, kind, col)
                    for v, kind, col in zip(key, key_kinds, spec.primary_keys, strict=True)
                )
            if ts is not None:
                at = as_of_ms[i] if as_of_ms is not None else None
                if at is None:
                    values += (_MIN_TS, _MAX_TS)
                else:
                    high = _as_of_us(at)
                    low = _MIN_TS if lookback_ms is None else high - lookback_ms * 1000
                    values += (low, high)
            bound.append(values)
        converters = [
            (j, f) for j, c in enumerate(wanted) if (f := _out_converter(spec.kinds[c])) is not None
        ]
        width = len(wanted)
        out: list[dict[str, Any] | None] = [None] * len(keys)
        per_key = 1 + len(bound[0])
        step = max(1, con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // per_key)
        for start in range(0, len(bound), step):
            chunk = bound[start : start + step]
            for row in self._query(con, spec, wanted, chunk, start):
                if not converters:
                    out[row[0]] = dict(zip(wanted, row[1 : 1 + width], strict=True))
                    continue
                values = list(row[1 : 1 + width])
                for j, convert in converters:
                    if values[j] is not None:
                        values[j] = convert(values[j])
                out[row[0]] = dict(zip(wanted, values, strict=True))
        return out

    def _query(
        self,
        con: sqlite3.Connection,
        spec: _Spec,
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

    def _statement(self, spec: _Spec, wanted: list[str], size: int) -> str:
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


def _as_of_us(value: Any) -> int:
    try:
        return _timestamp_us(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameterValue(
            f"as_of_ms must hold epoch milliseconds (or datetimes); got {value!r}."
        ) from None
