"""The PostgreSQL online store: feature tables published into a PostgreSQL schema for key lookups,
when the server runs with ``--online-store postgresql://...``.

Layout, in the schema the location names (``?schema=...``, default ``modelport_online``; made when
missing):

- ``online_tables``: one row per published feature table: its data table, publish mode, the Delta
  version published, when, how many rows, and its spec (columns, how each is stored, keys).
- ``online_generation``: the sequence that numbers data tables (a number never repeats).
- ``g<N>``: the rows of one publish, columns ``c0, c1, ...`` in the spec's order, primary key on the
  table's primary keys (then its timestamp key). A publish makes ``g<N>``, loads it with ``COPY``,
  adds the primary key, points ``online_tables`` at it and drops the old table, all in one
  transaction: readers see the old rows until it commits, then only the new ones. A reader whose
  statement names the dropped table gets "relation does not exist", reloads the spec and asks again.

Values are stored as :mod:`modelport.tables.online_values` says (``boolean``, ``bigint``,
``double precision``, ``text``, ``bytea``; dates and timestamps as ``bigint`` microseconds, so they
compare and come back exactly as from the embedded store).

A lookup is one statement whatever the number of keys: the keys go in as one array per key column
(``unnest ... WITH ORDINALITY``) joined to the data table on its primary key; with a timestamp key
each key takes, through ``LATERAL``, its latest row in its window (``ORDER BY ts DESC LIMIT 1``, an
index scan backwards).
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
import psycopg.conninfo
import psycopg.errors
import pyarrow as pa
import pyarrow.csv as pacsv

from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.tables.features import FeatureTableInfo
from modelport.tables.online_stores import redacted
from modelport.tables.online_values import (
    TableSpec,
    bind_keys,
    canonical,
    check_lookup,
    converters,
    last_per_key,
    not_published,
    publish_spec,
    state_of,
    stored,
    wanted_columns,
)

__all__ = ["DEFAULT_SCHEMA", "PostgresOnlineReader", "PostgresOnlineStore", "postgres_location"]

#: The schema of the online tables when the location names none.
DEFAULT_SCHEMA = "modelport_online"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")
_CONNECT_TIMEOUT_S = 5
_BATCH_ROWS = 65_536
#: How long a lookup statement may run before PostgreSQL cancels it (a 503).
_LOOKUP_TIMEOUT_MS = 10_000
#: Connections a reader keeps open at most (lookups from more threads wait for one).
READER_CONNECTIONS = 8

_T = TypeVar("_T")

_SQL_TYPES = {
    "bool": "boolean",
    "int": "bigint",
    "float": "double precision",
    "str": "text",
    "bytes": "bytea",
    "date": "bigint",
    "timestamp": "bigint",
    "json": "text",
}


def postgres_location(location: str) -> tuple[str, str]:
    """``(conninfo, schema)`` of a ``postgresql://`` location: the URL without modelport's own
    ``schema`` parameter (psycopg would refuse it), and that schema (lower-cased). 400 when the
    schema is not a plain name."""
    parts = urlsplit(location.replace("postgresql+psycopg://", "postgresql://", 1))
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = DEFAULT_SCHEMA
    kept = []
    for key, value in query:
        if key == "schema":
            schema = value.lower()
        else:
            kept.append((key, value))
    if not _SCHEMA_NAME.match(schema):
        raise InvalidParameterValue(
            f"The online store's schema must be letters, digits and underscores; got {schema!r}."
        )
    conninfo = urlunsplit(parts._replace(query=urlencode(kept)))
    try:  # parsed now (no connection), so that a bad location fails the server's start
        psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise InvalidParameterValue(
            f"The online store {redacted(conninfo)} is not a PostgreSQL URL psycopg reads: {_first_line(exc)}"
        ) from None
    return conninfo, schema


def _unreachable(conninfo: str, exc: Exception) -> TemporarilyUnavailable:
    return TemporarilyUnavailable(
        f"The online store at {redacted(conninfo)} is unavailable: {_first_line(exc)}"
    )


def _gone(exc: psycopg.Error) -> bool:
    """Whether ``exc`` says a data table was dropped (republished or dropped since its spec was read)."""
    return isinstance(exc, psycopg.errors.UndefinedTable) or "could not open relation" in str(exc)


class _Pool:
    """Up to ``size`` autocommit connections, opened on demand and shared by threads; one that
    fails with a connection error is closed and replaced on the next use."""

    def __init__(self, conninfo: str, size: int, *, statement_timeout_ms: int = 0) -> None:
        self.conninfo = conninfo
        self._size = size
        self._statement_timeout_ms = statement_timeout_ms
        self._idle: list[psycopg.Connection[Any]] = []
        self._open = 0
        self._ready = threading.Condition()
        self._closed = False

    def _take(self) -> tuple[psycopg.Connection[Any], bool]:
        with self._ready:
            while not self._idle and self._open >= self._size:
                self._ready.wait()
            if self._idle:
                return self._idle.pop(), True
            self._open += 1
        try:
            con = psycopg.connect(
                self.conninfo,
                autocommit=True,
                connect_timeout=_CONNECT_TIMEOUT_S,
                application_name="modelport-online-store",
            )
            if self._statement_timeout_ms:
                con.execute(f"SET statement_timeout = {int(self._statement_timeout_ms)}")
        except BaseException:
            self._give_back(None)
            raise
        return con, False

    def _give_back(self, con: psycopg.Connection[Any] | None) -> None:
        with self._ready:
            if con is None or con.closed or con.broken or self._closed:
                self._open -= 1
                if con is not None:
                    con.close()
            else:
                self._idle.append(con)
            self._ready.notify()

    def run(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """``work(connection)``'s result. A connection error on a reused connection (one the
        server closed meanwhile) tries ``work`` once more on a new one; otherwise it is a 503."""
        for attempt in (1, 2):
            try:
                con, reused = self._take()
            except psycopg.OperationalError as exc:
                raise _unreachable(self.conninfo, exc) from None
            try:
                result = work(con)
            except psycopg.OperationalError as exc:
                broken = con.broken
                con.close()
                self._give_back(con)
                if attempt == 1 and reused and broken:
                    continue
                raise _unreachable(self.conninfo, exc) from None
            except BaseException:
                self._give_back(con)
                raise
            self._give_back(con)
            return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._ready:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for con in idle:
            con.close()


_STATE = "name, mode, published_version, published_ms, rows, spec"


def _state(row: tuple[Any, ...]) -> dict[str, Any]:
    name, mode, version, published_ms, rows, spec_text = row
    return state_of(name, mode, version, published_ms, rows, orjson.loads(spec_text))


def _copy_ready(data: pa.Table, kinds: list[str]) -> pa.Table:
    """``data`` as the CSV text ``COPY`` reads: stored values, bytes as ``\\x`` hex text."""
    columns: list[pa.ChunkedArray] = []
    for i, kind in enumerate(kinds):
        values = stored(data.column(i), kind)
        if isinstance(values, list):
            values = pa.chunked_array([pa.array(values, pa.string())])
        elif kind == "bytes":
            text = [None if v is None else "\\x" + v.hex() for v in values.to_pylist()]
            values = pa.chunked_array([pa.array(text, pa.string())])
        columns.append(values)
    return pa.table(columns, names=[f"c{i}" for i in range(len(kinds))])


def _csv_chunks(table: pa.Table) -> Iterator[bytes]:
    """``table`` as CSV without a header, in chunks: strings are always quoted, so an empty
    unquoted field is a null for ``COPY ... (FORMAT csv)`` and ``""`` an empty string."""
    options = pacsv.WriteOptions(include_header=False)
    for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
        out = io.BytesIO()
        pacsv.write_csv(batch, out, options)
        yield out.getvalue()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresOnlineStore:
    """The writer of the online store in the PostgreSQL database at ``location``
    (``postgresql://user[:password]@host:port/db[?schema=name]``).

    Its schema, table and sequence are made on first use (not at construction: a server starts
    while the database is down, and feature calls answer 503 until it is up). Several servers
    may share the schema: publishes and drops of one table are serialised by a transaction-level
    advisory lock on its name. A publish is one transaction: readers see the table's old rows
    until it commits, then only the new ones; a publish that fails leaves nothing behind.
    """

    def __init__(self, location: str) -> None:
        self.conninfo, self.schema = postgres_location(location)
        self._q = f'"{self.schema}"'
        self._pool = _Pool(self.conninfo, 4)
        self._setup_lock = threading.Lock()
        self._set_up = False

    def __repr__(self) -> str:
        return f"PostgresOnlineStore({redacted(self.conninfo)!r}, schema={self.schema!r})"

    def close(self) -> None:
        self._pool.close()

    def _run(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        if not self._set_up:
            with self._setup_lock:
                if not self._set_up:
                    self._pool.run(self._setup)
                    self._set_up = True
        return self._pool.run(work)

    def _setup(self, con: psycopg.Connection[Any]) -> None:
        q = self._q
        with con.transaction():
            # Two servers starting at once would race on CREATE ... IF NOT EXISTS.
            con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"modelport-online:{self.schema}",))
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {q}.online_tables ("
                "name text PRIMARY KEY, data_table text NOT NULL, mode text NOT NULL, "
                "published_version bigint NOT NULL, published_ms bigint NOT NULL, rows bigint NOT NULL, "
                "spec text NOT NULL)"
            )
            con.execute(f"CREATE SEQUENCE IF NOT EXISTS {q}.online_generation")

    def publish(self, info: FeatureTableInfo, data: pa.Table, *, mode: str) -> dict[str, Any]:
        """Replace the online rows of ``info.name`` with ``data`` (the table at ``info.version``).

        ``data`` must hold every key column of ``info`` without nulls; all its columns are
        published (a repeated key keeps its last row). Returns :meth:`state`."""
        name, keys, spec = publish_spec(info, data, mode)
        data = last_per_key(data, keys)
        kinds = [c["kind"] for c in spec["columns"]]
        position = {n: i for i, n in enumerate(data.column_names)}
        rows = _copy_ready(data, kinds)
        column_defs = ", ".join(f"c{i} {_SQL_TYPES[k]}" for i, k in enumerate(kinds))
        key_cols = ", ".join(f"c{position[k]}" for k in keys)
        spec_text = orjson.dumps(spec).decode()
        q = self._q

        def work(con: psycopg.Connection[Any]) -> dict[str, Any]:
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.{name}",))
                generation = con.execute(f"SELECT nextval('{q}.online_generation')").fetchone()
                table = f"{q}.g{generation[0]}"  # type: ignore[index]
                con.execute(f"CREATE TABLE {table} ({column_defs})")
                with con.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
                    for chunk in _csv_chunks(rows):
                        copy.write(chunk)
                # The index is built once after the load (cheaper than row by row), and the
                # statistics let the planner probe it for a lookup of a few keys.
                con.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({key_cols})")
                con.execute(f"ANALYZE {table}")
                old = con.execute(
                    f"SELECT data_table FROM {q}.online_tables WHERE name = %s", (name,)
                ).fetchone()
                state = con.execute(
                    f"INSERT INTO {q}.online_tables VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET data_table = EXCLUDED.data_table, "
                    "mode = EXCLUDED.mode, published_version = EXCLUDED.published_version, "
                    "published_ms = EXCLUDED.published_ms, rows = EXCLUDED.rows, spec = EXCLUDED.spec "
                    f"RETURNING {_STATE}",
                    (
                        name,
                        f"g{generation[0]}",  # type: ignore[index]
                        mode,
                        info.version,
                        int(time.time() * 1000),
                        data.num_rows,
                        spec_text,
                    ),
                ).fetchone()
                if old is not None:
                    con.execute(f"DROP TABLE IF EXISTS {q}.{old[0]}")
            assert state is not None
            return _state(state)

        try:
            return self._run(work)
        except psycopg.DataError as exc:
            raise InvalidParameterValue(
                f"Data published for {name!r} cannot be stored in PostgreSQL: {_first_line(exc)}"
            ) from None

    def state(self, name: str) -> dict[str, Any] | None:
        """How ``name`` is published (as :func:`~modelport.tables.online_values.state_of`), or
        ``None`` when it is not."""
        name = canonical(name)
        row = self._run(
            lambda con: con.execute(
                f"SELECT {_STATE} FROM {self._q}.online_tables WHERE name = %s",
                (name,),
            ).fetchone()
        )
        return _state(row) if row is not None else None

    def states(self) -> list[dict[str, Any]]:
        """:meth:`state` of every published table, by name."""
        rows = self._run(
            lambda con: con.execute(f"SELECT {_STATE} FROM {self._q}.online_tables ORDER BY name").fetchall()
        )
        return [_state(r) for r in rows]

    def drop(self, name: str) -> None:
        """Take ``name`` out of the online store (nothing happens when it is not there)."""
        name = canonical(name)
        q = self._q

        def work(con: psycopg.Connection[Any]) -> None:
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.{name}",))
                old = con.execute(
                    f"DELETE FROM {q}.online_tables WHERE name = %s RETURNING data_table", (name,)
                ).fetchone()
                if old is not None:
                    con.execute(f"DROP TABLE IF EXISTS {q}.{old[0]}")

        self._run(work)


#: How a key column's values are sent (one array per key column, or one value).
_PARAM_TYPES = {**_SQL_TYPES, "json": "text"}


class PostgresOnlineReader:
    """Key lookups in the online store in the PostgreSQL database at ``location``, from any
    number of threads (they share up to :data:`READER_CONNECTIONS` connections).

    A schema nothing was published to yet (or a database without it) means every table is not
    published. A publish by any server is seen by the next lookup. The database unreachable:
    :class:`~modelport.errors.TemporarilyUnavailable` naming the location (never its password).
    """

    def __init__(self, location: str, *, connections: int = READER_CONNECTIONS) -> None:
        self.conninfo, self.schema = postgres_location(location)
        self._q = f'"{self.schema}"'
        self._pool = _Pool(self.conninfo, connections, statement_timeout_ms=_LOOKUP_TIMEOUT_MS)
        self._specs: dict[str, TableSpec] = {}
        self._statements: dict[tuple[Any, ...], str] = {}

    def __repr__(self) -> str:
        return f"PostgresOnlineReader({redacted(self.conninfo)!r}, schema={self.schema!r})"

    def close(self) -> None:
        """Close the idle connections (a later lookup opens new ones)."""
        self._pool.close()
        self._pool = _Pool(self.conninfo, self._pool._size, statement_timeout_ms=_LOOKUP_TIMEOUT_MS)

    def lookup(
        self,
        name: str,
        keys: list[tuple[Any, ...]],
        columns: list[str] | None = None,
        *,
        as_of_ms: list[int | None] | None = None,
        lookback_ms: int | None = None,
    ) -> list[dict[str, Any] | None]:
        """As :meth:`modelport.tables.online_store.OnlineReader.lookup`: the rows of ``name`` for
        ``keys``, in key order (``None``: no row), with ``columns`` (default: every column that is
        not a key), the latest row in each key's window with a timestamp key. One statement for
        all the keys (two when the table was republished since this reader last read its spec)."""
        name = canonical(name)
        check_lookup(keys, as_of_ms, lookback_ms)
        return self._pool.run(lambda con: self._answer(con, name, keys, columns, as_of_ms, lookback_ms))

    def _answer(
        self,
        con: psycopg.Connection[Any],
        name: str,
        keys: list[tuple[Any, ...]],
        columns: list[str] | None,
        as_of_ms: list[int | None] | None,
        lookback_ms: int | None,
    ) -> list[dict[str, Any] | None]:
        spec = self._specs.get(name)
        if spec is not None and keys:
            try:  # the common case: the spec read earlier still holds, one statement
                return self._lookup(con, spec, keys, columns, as_of_ms, lookback_ms)
            except psycopg.Error as exc:
                if not _gone(exc):
                    raise
            except TemporarilyUnavailable:  # the spec read earlier lacks a column: read it again
                pass
        # Republished (or dropped) since its spec was read, or never read. A publish between
        # reading the spec and the rows drops the table read: read both again.
        for _ in range(3):
            spec = self._spec(con, name)
            if not keys:
                return []
            try:
                return self._lookup(con, spec, keys, columns, as_of_ms, lookback_ms)
            except psycopg.Error as exc:
                if not _gone(exc):
                    raise
        raise TemporarilyUnavailable(f"Feature table {name!r} is being republished; try again.")

    def _spec(self, con: psycopg.Connection[Any], name: str) -> TableSpec:
        try:
            row = con.execute(
                f"SELECT data_table, spec FROM {self._q}.online_tables WHERE name = %s", (name,)
            ).fetchone()
        except psycopg.errors.UndefinedTable:  # no store made in this schema yet
            raise not_published(name) from None
        if row is None:
            self._specs.pop(name, None)
            raise not_published(name)
        spec = TableSpec(name, row[0], orjson.loads(row[1]))
        self._specs[name] = spec
        return spec

    def _lookup(
        self,
        con: psycopg.Connection[Any],
        spec: TableSpec,
        keys: list[tuple[Any, ...]],
        columns: list[str] | None,
        as_of_ms: list[int | None] | None,
        lookback_ms: int | None,
    ) -> list[dict[str, Any] | None]:
        wanted = wanted_columns(spec, columns)
        bound = bind_keys(spec, keys, as_of_ms, lookback_ms)
        changes = converters(spec, wanted)
        bools = [i for i, k in enumerate(spec.primary_keys) if spec.kinds[k] == "bool"]
        if bools:  # bound as 0/1 (SQLite's form); PostgreSQL compares booleans
            bound = [
                tuple(bool(v) if i in bools and v is not None else v for i, v in enumerate(b)) for b in bound
            ]
        single = len(bound) == 1
        sql = self._statement(spec, wanted, single)
        params: Any = bound[0] if single else [list(column) for column in zip(*bound, strict=True)]
        try:
            rows = con.execute(sql, params).fetchall()
        except psycopg.DataError as exc:  # a key beyond its column's range
            raise InvalidParameterValue(
                f"A lookup key of {spec.name!r} is out of range: {_first_line(exc)}"
            ) from None
        width = len(wanted)
        out: list[dict[str, Any] | None] = [None] * len(keys)
        for row in rows:
            values = list(row[1 : 1 + width])
            for j, convert in changes:
                if values[j] is not None:
                    values[j] = convert(values[j])
            out[row[0]] = dict(zip(wanted, values, strict=True))
        return out

    def _statement(self, spec: TableSpec, wanted: list[str], single: bool) -> str:
        cache_key = (spec.data_table, tuple(wanted), single)
        sql = self._statements.get(cache_key)
        if sql is not None:
            return sql
        table = f"{self._q}.{spec.data_table}"
        select = ", ".join(f"t.{spec.col(c)}" for c in wanted)
        pks = [spec.col(k) for k in spec.primary_keys]
        types = [_PARAM_TYPES[spec.kinds[k]] for k in spec.primary_keys]
        ts = spec.col(spec.timestamp_key) if spec.timestamp_key is not None else None
        if single:
            where = " AND ".join(f"t.{c} = %s::{typ}" for c, typ in zip(pks, types, strict=True))
            sql = f"SELECT 0{', ' + select if select else ''} FROM {table} AS t WHERE {where}"
            if ts is not None:
                sql += f" AND t.{ts} BETWEEN %s::bigint AND %s::bigint ORDER BY t.{ts} DESC LIMIT 1"
        else:
            names = [f"k{i}" for i in range(len(pks))]
            arrays = [f"%s::{typ}[]" for typ in types]
            if ts is not None:
                names += ["lo", "hi"]
                arrays += ["%s::bigint[]", "%s::bigint[]"]
            keyset = f"unnest({', '.join(arrays)}) WITH ORDINALITY AS k({', '.join(names)}, i)"
            on = " AND ".join(f"t.{c} = k.k{i}" for i, c in enumerate(pks))
            if ts is None:
                sql = (
                    f"SELECT k.i - 1{', ' + select if select else ''} FROM {keyset} JOIN {table} AS t ON {on}"
                )
            else:
                sql = (
                    f"SELECT k.i - 1, l.* FROM {keyset} CROSS JOIN LATERAL "
                    f"(SELECT {select or '1'} FROM {table} AS t WHERE {on} "
                    f"AND t.{ts} BETWEEN k.lo AND k.hi ORDER BY t.{ts} DESC LIMIT 1) AS l"
                )
        self._statements[cache_key] = sql
        return sql
