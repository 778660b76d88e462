"""What every online store shares: how feature values are stored and given back, how lookup keys
are checked, and what a published table's spec holds.

The three stores (:mod:`~modelport.tables.online_store` SQLite, :mod:`~modelport.tables.online_postgres`,
:mod:`~modelport.tables.online_redis`) store the same values and give back the same Python values,
so a model answers the same whichever store serves its features:

    Arrow type                 stored as                      returned as
    integers, floats, string   int, float, text               int, float, str (a NaN float: None)
    bool                       bool (SQLite: 0/1)             bool
    binary                     bytes (Redis: base64 text)     bytes
    decimal                    float                          float
    date                       int, µs since the epoch (UTC)  ISO text "2024-05-01"
    timestamp                  int, µs since the epoch (UTC)  ISO text "2024-05-01T12:00:00+00:00"
    list, struct, map          JSON text                      list / dict

Without a timestamp key a table holds one row per key (the last one when the data repeats a key);
with one it holds every row, and a lookup picks the latest row at or before the key's ``as_of``
(and, with a lookback window, not older than ``as_of - lookback``).
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.tables.features import FeatureTableInfo
from modelport.tables.names import split_name

__all__ = [
    "MAX_TS",
    "MIN_TS",
    "PUBLISH_MODES",
    "TableSpec",
    "as_of_us",
    "bind_keys",
    "canonical",
    "check_lookup",
    "converters",
    "kind_of",
    "last_per_key",
    "missing_feature",
    "not_published",
    "out_converter",
    "publish_spec",
    "state_of",
    "stored",
    "wanted_columns",
]

#: How a table is kept up to date: once (``snapshot``), on request (``triggered``), or by
#: following new Delta versions (``continuous``, done by the server, not by the stores).
PUBLISH_MODES = ("snapshot", "triggered", "continuous")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: The bounds of a point-in-time lookup without ``as_of`` (microseconds).
MIN_TS = -(2**63)
MAX_TS = 2**63 - 1
_ROW = "__modelport_row"


def canonical(name: str) -> str:
    """``catalog.schema.table`` lower-cased; 400 when ``name`` is not one."""
    if not isinstance(name, str):
        raise InvalidParameterValue("Feature table name must be a string catalog.schema.table.")
    return ".".join(split_name(name))


def not_published(name: str) -> TemporarilyUnavailable:
    return TemporarilyUnavailable(f"Feature table {name!r} is not published to the online store.")


def missing_feature(name: str, missing: Sequence[str]) -> TemporarilyUnavailable:
    return TemporarilyUnavailable(
        f"Feature table {name!r} published to the online store has no feature "
        f"{', '.join(map(repr, missing))}."
    )


# -- how columns are stored -------------------------------------------------------------------------


def kind_of(typ: pa.DataType) -> str:
    """How a column of Arrow type ``typ`` is stored: bool, int, float, str, bytes, date,
    timestamp or json."""
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


def stored(column: pa.ChunkedArray, kind: str) -> pa.ChunkedArray | list[Any]:
    """``column`` as a store holds it (an Arrow column, or a list of JSON texts for ``json``)."""
    if kind == "timestamp":  # naive timestamps are taken as UTC; nanoseconds are truncated
        utc = pa.timestamp("us", tz="UTC")
        return pc.cast(column, options=pc.CastOptions(utc, allow_time_truncate=True)).cast(pa.int64())
    if kind == "date":  # midnight UTC, so that a date timestamp key compares like a timestamp
        days = column.cast(pa.date32()).cast(pa.int32()).cast(pa.int64())
        return pc.multiply(days, pa.scalar(86_400_000_000, pa.int64()))
    if kind == "float":
        # float64, so that a float32 comes back as the same double from every store; a NaN is
        # stored as null (SQLite does that by itself).
        column = column.cast(pa.float64())
        return pc.if_else(pc.is_nan(column), pa.scalar(None, pa.float64()), column)
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


def out_converter(kind: str) -> Callable[[Any], Any] | None:
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


def converters(
    spec: TableSpec, wanted: list[str], convert: Callable[[str], Callable[[Any], Any] | None] = out_converter
) -> list[tuple[int, Callable[[Any], Any]]]:
    """``(position in wanted, converter)`` of the wanted columns whose stored values change."""
    return [(j, f) for j, c in enumerate(wanted) if (f := convert(spec.kinds[c])) is not None]


_AS_IS = {"int": int, "str": str, "float": float}


def key_value(value: Any, kind: str, column: str) -> Any:
    """A lookup key value as it is stored (``bool`` as 0/1); 400 naming the column."""
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
            return timestamp_us(value)
        if kind == "timestamp":
            return timestamp_us(value)
        if kind == "bytes" and isinstance(value, bytes):
            return value
    except (TypeError, ValueError, OverflowError):
        pass
    raise InvalidParameterValue(f"Lookup key {column!r} cannot be {value!r} ({type(value).__name__}).")


def timestamp_us(value: Any) -> int:
    """Microseconds since the epoch of a datetime (naive: UTC), ISO text, or epoch milliseconds."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, dt.date):
        return timestamp_us(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, bool):
        raise TypeError
    return operator.index(value) * 1000


def as_of_us(value: Any) -> int:
    """An ``as_of_ms`` value (epoch milliseconds, a datetime, ISO text) in microseconds; 400."""
    try:
        return timestamp_us(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameterValue(
            f"as_of_ms must hold epoch milliseconds (or datetimes); got {value!r}."
        ) from None


# -- a published table ------------------------------------------------------------------------------


class TableSpec:
    """A published table as a reader needs it: where its rows are (``data_table``: a store's own
    name for them), its columns and their kinds, its keys."""

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
        """The stored column of ``name`` (``c<position>``: any column name is safe in SQL)."""
        return f"c{self.position[name]}"


def publish_spec(info: FeatureTableInfo, data: pa.Table, mode: str) -> tuple[str, list[str], dict[str, Any]]:
    """Check a publish of ``data`` as ``info``; its canonical name, key columns (primary keys,
    then the timestamp key) and spec (columns with their kinds and types, keys). 400 when
    ``mode`` is unknown, a key column is missing or holds nulls, or a column repeats."""
    if mode not in PUBLISH_MODES:
        raise InvalidParameterValue(f"mode must be one of {', '.join(PUBLISH_MODES)}; got {mode!r}.")
    name = canonical(info.name)
    keys = [*info.primary_keys, *info.timestamp_keys[:1]]
    for key in keys:
        if key not in data.column_names:
            raise InvalidParameterValue(f"Data published for {name!r} lacks key column {key!r}.")
        if data[key].null_count:
            raise InvalidParameterValue(f"Key column {key!r} of {name!r} holds null values.")
    if len(set(data.column_names)) != len(data.column_names):
        raise InvalidParameterValue(f"Data published for {name!r} repeats a column.")
    spec = {
        "columns": [{"name": f.name, "kind": kind_of(f.type), "type": str(f.type)} for f in data.schema],
        "primary_keys": list(info.primary_keys),
        "timestamp_keys": list(info.timestamp_keys[:1]),
    }
    return name, keys, spec


def last_per_key(data: pa.Table, keys: list[str]) -> pa.Table:
    """``data`` with one row per value of ``keys`` (the last one), sorted by ``keys``."""
    if data.num_rows < 2:
        return data
    try:
        rows = data.select(keys).append_column(_ROW, pa.array(range(data.num_rows), pa.int64()))
        last = rows.group_by(keys, use_threads=False).aggregate([(_ROW, "max")])
    except pa.ArrowNotImplementedError:
        types = ", ".join(f"{k} {data.schema.field(k).type}" for k in keys)
        raise InvalidParameterValue(f"Key columns ({types}) cannot be keys of an online store.") from None
    if last.num_rows != data.num_rows:
        data = data.take(last[f"{_ROW}_max"])
    return data.sort_by([(k, "ascending") for k in keys])


def state_of(
    name: str, mode: str, version: int, published_ms: int, rows: int, spec: dict[str, Any]
) -> dict[str, Any]:
    """A store's ``state(name)``::

    {"name", "mode", "published_version", "published_ms", "rows", "columns": [names],
     "primary_keys", "timestamp_keys", "status": "ONLINE"}
    """
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


# -- a lookup ---------------------------------------------------------------------------------------


def check_lookup(keys: list[tuple[Any, ...]], as_of_ms: list[Any] | None, lookback_ms: Any) -> None:
    """400 for ``as_of_ms`` not one per key, or ``lookback_ms`` not a whole number >= 0."""
    if as_of_ms is not None and len(as_of_ms) != len(keys):
        raise InvalidParameterValue(f"as_of_ms has {len(as_of_ms)} values for {len(keys)} keys.")
    if lookback_ms is not None and (isinstance(lookback_ms, bool) or not isinstance(lookback_ms, int)):
        raise InvalidParameterValue("lookback_ms must be an integer number of milliseconds.")
    if lookback_ms is not None and lookback_ms < 0:
        raise InvalidParameterValue("lookback_ms must not be negative.")


def wanted_columns(spec: TableSpec, columns: list[str] | None) -> list[str]:
    """The columns a lookup returns: ``columns``, or every column that is not a key; 503 naming
    the table and the features when the published table lacks one of ``columns``."""
    if columns is None:
        skip = {*spec.primary_keys, spec.timestamp_key}
        return [c for c in spec.columns if c not in skip]
    missing = [c for c in columns if c not in spec.position]
    if missing:
        raise missing_feature(spec.name, missing)
    return list(columns)


def bind_keys(
    spec: TableSpec,
    keys: list[tuple[Any, ...]],
    as_of_ms: list[Any] | None,
    lookback_ms: int | None,
) -> list[tuple[Any, ...]]:
    """Each key's values as stored, then (with a timestamp key) the lowest and highest timestamp
    (µs) its row may have. 400 for a key of the wrong length or type."""
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
            values: tuple[Any, ...] = (key_value(key[0], key_kinds[0], spec.primary_keys[0]),)
        else:
            values = tuple(
                key_value(v, kind, col)
                for v, kind, col in zip(key, key_kinds, spec.primary_keys, strict=True)
            )
        if ts is not None:
            at = as_of_ms[i] if as_of_ms is not None else None
            if at is None:
                values += (MIN_TS, MAX_TS)
            else:
                high = as_of_us(at)
                low = MIN_TS if lookback_ms is None else high - lookback_ms * 1000
                values += (low, high)
        bound.append(values)
    return bound
