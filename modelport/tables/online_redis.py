"""The Redis online store: feature tables published into Redis for key lookups, when the server
runs with ``--online-store redis://...``.

Layout, under the key prefix the location names (``?prefix=...``, default ``mp:feat:``):

- ``<prefix>tables``: a hash, one field per published feature table (its canonical name) holding
  JSON: the hash of its rows, publish mode, Delta version published, when, how many rows, and its
  spec (columns, how each is stored, keys).
- ``<prefix>generation``: the counter that numbers publishes (a number never repeats).
- ``<prefix><table>:g<N>``: the rows of one publish, a hash with one field per key: the key's
  values (one key column: the value as text; several: a JSON array), holding the row as a JSON
  array of the stored values in the spec's column order.

A publish writes a new ``g<N>`` hash with pipelined ``HSET`` batches (it expires in
:data:`PENDING_TTL_S` until it is switched in, so a publish that dies leaves nothing for long),
then in one ``WATCH``/``MULTI`` transaction points the table's field of ``<prefix>tables`` at it
and ``UNLINK``s the old hash (Redis frees it in the background). A lookup is one ``MULTI`` round
trip: the table's field (to check the spec it used is still the current one) and one ``HMGET`` of
every key; a reader that finds the table republished reads it again with the new spec.

Point in time: with a timestamp key, a key's field holds the key's whole history, a JSON array of
its rows in timestamp order, and a lookup picks the latest row in its window in the reader (a
binary search). Its cost is the key's history: every lookup of a key reads all its rows, so this
suits short histories (a few hundred rows a key, such as daily snapshots); a table with long
histories per key belongs in the PostgreSQL store, which reads one row through its index.

Values are stored as :mod:`modelport.tables.online_values` says; binary values as base64 text, and
the values of a float column holding an infinity as text (JSON has no infinity).
"""

from __future__ import annotations

import base64
import bisect
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import redis
import redis.exceptions

from modelport.errors import TemporarilyUnavailable
from modelport.tables.features import FeatureTableInfo
from modelport.tables.online_stores import redacted
from modelport.tables.online_values import (
    TableSpec,
    bind_keys,
    canonical,
    check_lookup,
    last_per_key,
    not_published,
    out_converter,
    publish_spec,
    state_of,
    stored,
    wanted_columns,
)

__all__ = ["DEFAULT_PREFIX", "PENDING_TTL_S", "RedisOnlineReader", "RedisOnlineStore", "redis_location"]

#: The key prefix when the location names none.
DEFAULT_PREFIX = "mp:feat:"
#: Seconds a publish's rows live before the publish switches them in (renewed at every batch).
PENDING_TTL_S = 600
_BATCH_FIELDS = 10_000
_SOCKET_TIMEOUT_S = 5.0
_CONNECT_TIMEOUT_S = 3.0


def redis_location(location: str) -> tuple[str, str]:
    """``(url, prefix)`` of a ``redis://`` (or ``rediss://``) location: the URL without modelport's
    own ``prefix`` parameter (redis-py would pass it on to its connections), and that prefix."""
    parts = urlsplit(location)
    prefix = DEFAULT_PREFIX
    kept = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "prefix":
            prefix = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        health_check_interval=30,
    )


def _unavailable(url: str, exc: Exception) -> TemporarilyUnavailable:
    text = str(exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    return TemporarilyUnavailable(f"The online store at {redacted(url)} is unavailable: {reason}")


#: What a Redis failure the caller may retry is (the server down, slow, or refusing the login).
_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


# -- keys and rows as stored ------------------------------------------------------------------------


def _part(value: Any) -> str | bytes:
    if isinstance(value, bytes | str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value + 0.0)  # -0.0 is 0.0, as SQL compares them
    return str(value)


def _json_part(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return value + 0.0
    return value


def _field(values: Sequence[Any]) -> str | bytes:
    """The hash field of a key (its stored values): the same at publish and at lookup."""
    if len(values) == 1:
        return _part(values[0])
    return orjson.dumps([_json_part(v) for v in values])


def _entry_spec(name: str, entry: bytes) -> tuple[TableSpec, dict[str, Any]]:
    state = orjson.loads(entry)
    return TableSpec(name, state["data_table"], state["spec"]), state


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _changes(
    spec: TableSpec, wanted: list[str], text_floats: set[str]
) -> list[tuple[int, Callable[[Any], Any]]]:
    """``(position in wanted, converter)`` of the wanted columns whose stored values change."""
    out: list[tuple[int, Callable[[Any], Any]]] = []
    for j, column in enumerate(wanted):
        kind = spec.kinds[column]
        convert = _b64 if kind == "bytes" else float if column in text_floats else out_converter(kind)
        if convert is not None:
            out.append((j, convert))
    return out


def _infinite(column: pa.ChunkedArray) -> bool:
    return bool(pc.any(pc.is_inf(column.cast(pa.float64()))).as_py())


def _rows(
    data: pa.Table, kinds: list[str], key_positions: list[int], text_floats: set[int]
) -> Iterator[tuple[tuple[Any, ...], list[Any]]]:
    """``(key values, row)`` of every row of ``data``, both as stored."""
    for batch in data.to_batches(max_chunksize=65_536):
        columns: list[list[Any]] = []
        keys: dict[int, list[Any]] = {}
        for i, kind in enumerate(kinds):
            values = stored(pa.chunked_array([batch.column(i)]), kind)
            plain = values if isinstance(values, list) else values.to_pylist()
            if i in key_positions:
                keys[i] = plain
            if kind == "bytes":
                plain = [None if v is None else base64.b64encode(v).decode() for v in plain]
            elif i in text_floats:
                plain = [None if v is None else repr(v) for v in plain]
            columns.append(plain)
        key_values = zip(*(keys[p] for p in key_positions), strict=True)
        yield from zip(key_values, map(list, zip(*columns, strict=True)), strict=True)


def _fields(
    data: pa.Table, kinds: list[str], key_positions: list[int], text_floats: set[int], history: bool
) -> Iterator[tuple[str | bytes, bytes]]:
    """``(field, value)`` of every key of ``data`` (sorted by its keys): the row, or with a
    timestamp key (``history``, the last key position) every row of the key in timestamp order."""
    nkeys = len(key_positions) - 1 if history else len(key_positions)
    if not history:
        for key, row in _rows(data, kinds, key_positions, text_floats):
            yield _field(key), orjson.dumps(row)
        return
    current: tuple[Any, ...] | None = None
    group: list[list[Any]] = []
    for key, row in _rows(data, kinds, key_positions, text_floats):
        if key[:nkeys] != current:
            if group:
                yield _field(current), orjson.dumps(group)  # type: ignore[arg-type]
            current, group = key[:nkeys], []
        group.append(row)
    if group:
        yield _field(current), orjson.dumps(group)  # type: ignore[arg-type]


def _state(name: str, entry: bytes) -> dict[str, Any]:
    state = orjson.loads(entry)
    return state_of(
        name, state["mode"], state["published_version"], state["published_ms"], state["rows"], state["spec"]
    )


class RedisOnlineStore:
    """The writer of the online store in the Redis database at ``location``
    (``redis://[[user]:password@]host:port/db[?prefix=...]``, or ``rediss://`` for TLS).

    Several servers may share it: switching a table's rows is a ``WATCH``ed transaction on the
    tables hash, so two publishes of one table at once each switch in whole rows and the loser's
    old rows are deleted all the same. Readers see a table's old rows until the switch, then only
    the new ones.
    """

    def __init__(self, location: str) -> None:
        self.url, self.prefix = redis_location(location)
        self._tables = f"{self.prefix}tables"
        self._client = _client(self.url)

    def __repr__(self) -> str:
        return f"RedisOnlineStore({redacted(self.url)!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        self._client.close()

    def publish(self, info: FeatureTableInfo, data: pa.Table, *, mode: str) -> dict[str, Any]:
        """Replace the online rows of ``info.name`` with ``data`` (the table at ``info.version``).

        ``data`` must hold every key column of ``info`` without nulls; all its columns are
        published (a repeated key keeps its last row). Returns :meth:`state`."""
        name, keys, spec = publish_spec(info, data, mode)
        data = last_per_key(data, keys)
        kinds = [c["kind"] for c in spec["columns"]]
        position = {n: i for i, n in enumerate(data.column_names)}
        text_floats = {
            i
            for i, kind in enumerate(kinds)
            if kind == "float" and data.num_rows and _infinite(data.column(i))
        }
        fields = _fields(
            data, kinds, [position[k] for k in keys], text_floats, history=bool(info.timestamp_keys)
        )
        try:
            generation = self._client.incr(f"{self.prefix}generation")
            rows_key = f"{self.prefix}{name}:g{generation}"
            try:
                self._write(rows_key, fields)
                entry = orjson.dumps(
                    {
                        "data_table": rows_key,
                        "mode": mode,
                        "published_version": info.version,
                        "published_ms": int(time.time() * 1000),
                        "rows": data.num_rows,
                        "spec": spec,
                        "text_floats": sorted(data.column_names[i] for i in text_floats),
                    }
                )
                self._client.transaction(lambda pipe: self._switch(pipe, name, entry, rows_key), self._tables)
            except BaseException:
                self._client.unlink(rows_key)
                raise
        except _DOWN as exc:
            raise _unavailable(self.url, exc) from None
        return _state(name, entry)

    def _write(self, rows_key: str, fields: Iterator[tuple[str | bytes, bytes]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        batch: dict[str | bytes, bytes] = {}
        for field, value in fields:
            batch[field] = value
            if len(batch) >= _BATCH_FIELDS:
                pipe.hset(rows_key, mapping=batch)  # type: ignore[arg-type]
                pipe.expire(rows_key, PENDING_TTL_S)
                pipe.execute()
                batch = {}
        if batch:
            pipe.hset(rows_key, mapping=batch)  # type: ignore[arg-type]
            pipe.expire(rows_key, PENDING_TTL_S)
            pipe.execute()

    def _switch(self, pipe: Any, name: str, entry: bytes, rows_key: str) -> None:
        old = pipe.hget(self._tables, name)
        pipe.multi()
        pipe.hset(self._tables, name, entry)
        pipe.persist(rows_key)
        if old is not None:
            pipe.unlink(orjson.loads(old)["data_table"])

    def state(self, name: str) -> dict[str, Any] | None:
        """How ``name`` is published (as :func:`~modelport.tables.online_values.state_of`), or
        ``None`` when it is not."""
        name = canonical(name)
        try:
            entry = self._client.hget(self._tables, name)
        except _DOWN as exc:
            raise _unavailable(self.url, exc) from None
        return None if entry is None else _state(name, entry)  # type: ignore[arg-type]

    def states(self) -> list[dict[str, Any]]:
        """:meth:`state` of every published table, by name."""
        try:
            entries: dict[bytes, bytes] = self._client.hgetall(self._tables)  # type: ignore[assignment]
        except _DOWN as exc:
            raise _unavailable(self.url, exc) from None
        return [_state(n.decode(), e) for n, e in sorted(entries.items())]

    def drop(self, name: str) -> None:
        """Take ``name`` out of the online store (nothing happens when it is not there)."""
        name = canonical(name)

        def drop(pipe: Any) -> None:
            old = pipe.hget(self._tables, name)
            pipe.multi()
            if old is not None:
                pipe.hdel(self._tables, name)
                pipe.unlink(orjson.loads(old)["data_table"])

        try:
            self._client.transaction(drop, self._tables)
        except _DOWN as exc:
            raise _unavailable(self.url, exc) from None


class RedisOnlineReader:
    """Key lookups in the online store in the Redis database at ``location``, from any number of
    threads (redis-py's connection pool is thread-safe).

    Nothing published under the prefix yet means every table is not published. A publish by any
    server is seen by the next lookup. Redis unreachable: :class:`~modelport.errors.TemporarilyUnavailable`
    naming the location (never its password).
    """

    def __init__(self, location: str) -> None:
        self.url, self.prefix = redis_location(location)
        self._tables = f"{self.prefix}tables"
        self._client = _client(self.url)
        #: name -> (its entry in the tables hash, its spec, its float columns stored as text)
        self._entries: dict[str, tuple[bytes, TableSpec, set[str]]] = {}

    def __repr__(self) -> str:
        return f"RedisOnlineReader({redacted(self.url)!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Close the pool's connections (a later lookup opens new ones)."""
        self._client.close()

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
        not a key), the latest row in each key's window with a timestamp key. One round trip for
        all the keys (two when the table was republished since this reader last read it)."""
        name = canonical(name)
        check_lookup(keys, as_of_ms, lookback_ms)
        try:
            return self._answer(name, keys, columns, as_of_ms, lookback_ms)
        except _DOWN as exc:
            raise _unavailable(self.url, exc) from None

    def _entry(self, name: str, entry: bytes | None) -> tuple[bytes, TableSpec, set[str]]:
        if entry is None:
            self._entries.pop(name, None)
            raise not_published(name)
        spec, state = _entry_spec(name, entry)
        cached = (entry, spec, set(state.get("text_floats") or ()))
        self._entries[name] = cached
        return cached

    def _answer(
        self,
        name: str,
        keys: list[tuple[Any, ...]],
        columns: list[str] | None,
        as_of_ms: list[int | None] | None,
        lookback_ms: int | None,
    ) -> list[dict[str, Any] | None]:
        cached = self._entries.get(name)
        fresh = False
        if cached is None or not keys:
            cached, fresh = self._entry(name, self._client.hget(self._tables, name)), True  # type: ignore[arg-type]
            if not keys:
                return []
        for _ in range(3):
            entry, spec, text_floats = cached
            try:
                wanted = wanted_columns(spec, columns)
            except TemporarilyUnavailable:
                if fresh:
                    raise
                cached, fresh = self._entry(name, self._client.hget(self._tables, name)), True  # type: ignore[arg-type]
                continue
            bound = bind_keys(spec, keys, as_of_ms, lookback_ms)
            nkeys = len(spec.primary_keys)
            fields = [None if None in b[:nkeys] else _field(b[:nkeys]) for b in bound]
            asked = [f for f in fields if f is not None]
            # One round trip, atomic: the table's entry (is the spec used still the current
            # one?) and the rows it points at, so a switch between the two is impossible.
            pipe = self._client.pipeline(transaction=True)
            pipe.hget(self._tables, name)
            if asked:
                pipe.hmget(spec.data_table, asked)
            answers = pipe.execute()
            if answers[0] != entry:  # republished or dropped since the spec was read
                cached, fresh = self._entry(name, answers[0]), True
                continue
            blobs = iter(answers[1] if asked else ())
            out: list[dict[str, Any] | None] = [None] * len(keys)
            picks = [spec.position[c] for c in wanted]
            changes = _changes(spec, wanted, text_floats)
            ts = spec.position[spec.timestamp_key] if spec.timestamp_key is not None else None
            for i, field in enumerate(fields):
                blob = next(blobs) if field is not None else None
                if blob is None:
                    continue
                row = orjson.loads(blob)
                if ts is not None:
                    row = _latest(row, ts, bound[i][-2], bound[i][-1])
                    if row is None:
                        continue
                values = [row[p] for p in picks]
                for j, convert in changes:
                    if values[j] is not None:
                        values[j] = convert(values[j])
                out[i] = dict(zip(wanted, values, strict=True))
            return out
        raise TemporarilyUnavailable(f"Feature table {name!r} is being republished; try again.")


def _latest(history: list[list[Any]], ts: int, low: int, high: int) -> list[Any] | None:
    """The last row of ``history`` (in timestamp order) whose timestamp is in ``[low, high]``."""
    at = bisect.bisect_right(history, high, key=lambda row: row[ts])
    if at and history[at - 1][ts] >= low:
        return history[at - 1]
    return None
