"""Feature tables: Delta tables with a declared primary key (and optional timestamp key).

A feature table is named ``catalog.schema.table`` and lives under the tables root like the
inference tables (``<root>/<catalog>/<schema>/<table>``, see :mod:`modelport.tables.names`), so
``modelport tables query`` and table permissions apply to it as to any table. What makes a Delta
table a feature table is its configuration (table properties)::

    modelport.feature.primary_keys    = ["customer_id"]        JSON list, at least one column
    modelport.feature.timestamp_keys  = ["ts"]                 JSON list, empty or one column

The description is the Delta table's own description. A Delta table without
``modelport.feature.primary_keys`` is not a feature table (:meth:`FeatureTables.get` says so).

Rules, strict on purpose (a feature table feeds models that must not get wrong values):

- ``primary_keys`` are the entity keys; the timestamp key (at most one, a timestamp or date
  column) is kept apart. A timestamp key also listed in ``primary_keys`` is taken out of them,
  as Databricks' Unity Catalog API lists the time-series column among the primary keys.
- Key columns are ``NOT NULL`` in Delta; a null key in written data is a 400 naming the column.
  Two rows with the same keys in one write are a 400 too.
- Types are those Delta stores. Timestamps are stored as ``timestamp[us, tz=UTC]`` (naive ones
  are taken as UTC; finer precision is truncated to microseconds), ``large_string`` as
  ``string``; unsigned integers, ``float16``, times and durations are refused.
- ``write(mode="merge")`` is an upsert on the keys in one Delta ``MERGE`` commit: matched rows get
  the columns the data has (others keep their values), new rows are inserted (columns the data
  lacks are null). ``mode="overwrite"`` replaces every row. Every key column is required, unknown
  columns are a 400 naming them, and values are cast to the table's types where that is safe.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from modelport.errors import (
    Aborted,
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from modelport.tables.names import is_uri, split_name, table_uri
from modelport.tables.query import discover_tables

__all__ = [
    "PRIMARY_KEYS_PROPERTY",
    "TIMESTAMP_KEYS_PROPERTY",
    "FeatureTableInfo",
    "FeatureTables",
    "arrow_type",
    "schema_from_columns",
]

log = logging.getLogger("modelport.tables")

#: Table property holding the primary keys (a JSON list of column names).
PRIMARY_KEYS_PROPERTY = "modelport.feature.primary_keys"
#: Table property holding the timestamp key (a JSON list of zero or one column name).
TIMESTAMP_KEYS_PROPERTY = "modelport.feature.timestamp_keys"

_COMMIT_RETRIES = 5
_TIMESTAMP = pa.timestamp("us", tz="UTC")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(uri: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(uri, threading.Lock())


@dataclass(frozen=True)
class FeatureTableInfo:
    """What a feature table is: its name, keys, columns and the Delta version it is at.

    ``columns`` are ``{"name", "type", "nullable"}`` with the Arrow type as text (``"int64"``,
    ``"double"``, ``"string"``, ``"timestamp[us, tz=UTC]"``); ``updated_ms`` is the time of the
    table's last commit (its freshness), ``created_ms`` that of its creation.
    """

    name: str
    primary_keys: list[str]
    timestamp_keys: list[str]
    description: str
    columns: list[dict[str, Any]]
    version: int
    created_ms: int
    updated_ms: int

    @property
    def feature_names(self) -> list[str]:
        """The columns that are neither primary keys nor the timestamp key."""
        keys = set(self.primary_keys) | set(self.timestamp_keys)
        return [c["name"] for c in self.columns if c["name"] not in keys]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "primary_keys": list(self.primary_keys),
            "timestamp_keys": list(self.timestamp_keys),
            "description": self.description,
            "columns": [dict(c) for c in self.columns],
            "version": self.version,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }


# -- types ------------------------------------------------------------------------------------------

_NAMED_TYPES: dict[str, pa.DataType] = {
    # Arrow's names (what FeatureTableInfo.columns holds) ...
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "large_string": pa.string(),
    "utf8": pa.string(),
    "binary": pa.binary(),
    "date32[day]": pa.date32(),
    "date32": pa.date32(),
    "timestamp[us, tz=utc]": _TIMESTAMP,
    "timestamp[us]": _TIMESTAMP,
    # ... and Spark SQL's (what a Databricks user writes).
    "boolean": pa.bool_(),
    "tinyint": pa.int8(),
    "byte": pa.int8(),
    "smallint": pa.int16(),
    "short": pa.int16(),
    "int": pa.int32(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "long": pa.int64(),
    "date": pa.date32(),
    "timestamp": _TIMESTAMP,
}
_DECIMAL = re.compile(r"^decimal(?:128)?\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_LIST = re.compile(r"^(?:list|array|large_list)<(?:(?:item|element):\s*)?(.+)>$")


def arrow_type(text: str) -> pa.DataType:
    """The Arrow type a column type's text names, as a feature table stores it.

    Accepts Arrow's names (``int64``, ``double``, ``string``, ``timestamp[us, tz=UTC]``, ``date32[day]``,
    ``decimal128(10, 2)``, ``list<item: double>``) and Spark SQL's (``bigint``, ``int``, ``boolean``,
    ``timestamp``, ``date``, ``decimal(10,2)``, ``array<double>``). Raises
    :class:`~modelport.errors.InvalidParameterValue` for anything else.
    """
    key = " ".join(text.strip().lower().split()) if isinstance(text, str) else ""
    if key in _NAMED_TYPES:
        return _NAMED_TYPES[key]
    if key.startswith("timestamp["):
        return _TIMESTAMP  # any unit or time zone: stored as microseconds in UTC
    if (m := _DECIMAL.match(key)) and 1 <= int(m.group(1)) <= 38 and int(m.group(2)) <= int(m.group(1)):
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    if m := _LIST.match(key):
        return pa.list_(arrow_type(m.group(1)))
    raise InvalidParameterValue(f"Unsupported column type {text!r}.")


def schema_from_columns(columns: list[dict[str, Any]]) -> pa.Schema:
    """An Arrow schema from ``[{"name", "type", "nullable"?}]`` (types as :func:`arrow_type` reads them)."""
    if not isinstance(columns, list) or not columns:
        raise InvalidParameterValue("columns must be a non-empty list of {name, type}.")
    fields = []
    for col in columns:
        if not isinstance(col, dict) or not isinstance(col.get("name"), str) or not col["name"]:
            raise InvalidParameterValue("Each column must be an object with a non-empty 'name'.")
        try:
            typ = arrow_type(col.get("type", ""))
        except InvalidParameterValue:
            raise InvalidParameterValue(
                f"Column {col['name']!r} has an unsupported type {col.get('type')!r}."
            ) from None
        fields.append(pa.field(col["name"], typ, nullable=bool(col.get("nullable", True))))
    return pa.schema(fields)


def _delta_type(typ: pa.DataType, column: str) -> pa.DataType:
    """The type Delta stores for ``typ`` (see the module docstring); 400 naming ``column`` if none."""
    if pa.types.is_timestamp(typ):
        return _TIMESTAMP
    if pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
        return pa.string()
    if pa.types.is_large_binary(typ) or pa.types.is_binary_view(typ) or pa.types.is_fixed_size_binary(typ):
        return pa.binary()
    if pa.types.is_date64(typ):
        return pa.date32()
    if pa.types.is_dictionary(typ):
        return _delta_type(typ.value_type, column)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        return pa.list_(_delta_type(typ.value_type, column))
    if pa.types.is_struct(typ):
        return pa.struct([pa.field(f.name, _delta_type(f.type, column), f.nullable) for f in typ])
    if pa.types.is_map(typ):
        return pa.map_(_delta_type(typ.key_type, column), _delta_type(typ.item_type, column))
    if pa.types.is_decimal128(typ) and typ.precision <= 38:
        return typ
    if typ in (pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.float32(), pa.float64()):
        return typ
    if typ in (pa.string(), pa.binary(), pa.date32()):
        return typ
    raise InvalidParameterValue(f"Column {column!r} has type {typ}, which a Delta table cannot store.")


def _cast(column: pa.ChunkedArray, target: pa.DataType, name: str, table: str) -> pa.ChunkedArray:
    if column.type == target:
        return column
    options = pc.CastOptions(target, allow_time_truncate=True)
    try:
        return pc.cast(column, options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidParameterValue(
            f"Column {name!r} of feature table {table!r} is {target}; the data's {column.type} "
            f"cannot be cast to it ({exc})."
        ) from None


# -- the tables -------------------------------------------------------------------------------------


class FeatureTables:
    """The feature tables under one tables root (a local folder, or a URI with ``storage_options``).

    Every method works on the Delta table itself, so several processes may use the same root; writes
    to one table from this process are serialised, and Delta's optimistic concurrency (with a few
    retries) settles writes from others. A merge that keeps conflicting is an
    :class:`~modelport.errors.Aborted` (409) error.
    """

    def __init__(self, root: str, *, storage_options: dict[str, str] | None = None) -> None:
        self.root = str(root)
        self.storage_options = storage_options

    # -- names ------------------------------------------------------------------------------------

    def _resolve(self, name: str) -> tuple[str, str]:
        """``(canonical name, uri)`` of table ``name``."""
        if not isinstance(name, str):
            raise InvalidParameterValue("Feature table name must be a string catalog.schema.table.")
        parts = split_name(name)
        return ".".join(parts), table_uri(self.root, *parts)

    def _open(self, name: str, uri: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            raise ResourceDoesNotExist(f"Feature table {name!r} does not exist.") from None
        except Exception as exc:
            if version is not None and "version" in str(exc).lower():
                raise ResourceDoesNotExist(f"Feature table {name!r} has no version {version}.") from None
            raise

    def _info(self, name: str, dt: DeltaTable) -> FeatureTableInfo:
        meta = dt.metadata()
        config = meta.configuration
        if PRIMARY_KEYS_PROPERTY not in config:
            raise ResourceDoesNotExist(f"Table {name!r} is not a feature table (it has no primary keys).")
        schema = pa.schema(dt.schema().to_arrow())
        history = dt.history(1)
        updated = int(history[0]["timestamp"]) if history else int(meta.created_time or 0)
        return FeatureTableInfo(
            name=name,
            primary_keys=list(orjson.loads(config[PRIMARY_KEYS_PROPERTY])),
            timestamp_keys=list(orjson.loads(config.get(TIMESTAMP_KEYS_PROPERTY) or "[]")),
            description=meta.description or "",
            columns=[{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
            version=dt.version(),
            created_ms=int(meta.created_time or updated),
            updated_ms=updated,
        )

    # -- the API ----------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        primary_keys: list[str],
        schema: pa.Schema,
        *,
        timestamp_keys: list[str] | None = None,
        description: str = "",
        data: pa.Table | None = None,
    ) -> FeatureTableInfo:
        """Create feature table ``name`` (version 0), and write ``data`` into it (version 1) if given.

        Raises :class:`~modelport.errors.ResourceAlreadyExists` when any table has that name, and
        :class:`~modelport.errors.InvalidParameterValue` for keys that are not columns of ``schema``,
        more than one timestamp key, a timestamp key that is not a timestamp or date column, or a
        column type Delta cannot store.
        """
        full, uri = self._resolve(name)
        pks, tks = _check_keys(full, primary_keys, timestamp_keys, schema)
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise InvalidParameterValue("description must be a string.")
        keys = set(pks) | set(tks)
        fields = [
            pa.field(f.name, _delta_type(f.type, f.name), nullable=f.nullable and f.name not in keys)
            for f in schema
        ]
        if len({f.name for f in fields}) != len(fields):
            raise InvalidParameterValue(f"Feature table {full!r}: column names must be unique.")
        if data is not None:  # refuse bad data before anything is created
            if not isinstance(data, pa.Table):
                raise InvalidParameterValue("data must be an Arrow table.")
            draft = FeatureTableInfo(full, pks, tks, description, [], 0, 0, 0)
            _conform(draft, pa.schema(fields), data)
        if self._exists(uri):
            raise ResourceAlreadyExists(f"Table {full!r} already exists.")
        configuration: dict[str, str | None] = {
            PRIMARY_KEYS_PROPERTY: orjson.dumps(pks).decode(),
            TIMESTAMP_KEYS_PROPERTY: orjson.dumps(tks).decode(),
        }
        with _lock(uri):
            try:
                DeltaTable.create(
                    uri,
                    pa.schema(fields),
                    mode="error",
                    name=full,
                    description=description or None,
                    configuration=configuration,
                    storage_options=self.storage_options,
                    raise_if_key_not_exists=False,  # our own properties are not Delta's
                )
            except Exception as exc:
                if "exists" in str(exc).lower():
                    raise ResourceAlreadyExists(f"Table {full!r} already exists.") from None
                raise
        if data is not None:
            return self.write(full, data, mode="overwrite")
        return self.get(full)

    def write(
        self, name: str, data: pa.Table, mode: Literal["merge", "overwrite"] = "merge"
    ) -> FeatureTableInfo:
        """Upsert (``merge``) or replace (``overwrite``) the rows of ``name`` with ``data``, in one commit.

        A merge of no rows makes no commit. See the module docstring for the rules on columns.
        """
        if mode not in ("merge", "overwrite"):
            raise InvalidParameterValue(f"mode must be 'merge' or 'overwrite'; got {mode!r}.")
        if not isinstance(data, pa.Table):
            raise InvalidParameterValue("data must be an Arrow table.")
        full, uri = self._resolve(name)
        with _lock(uri):
            dt = self._open(full, uri)
            info = self._info(full, dt)
            schema = pa.schema(dt.schema().to_arrow())
            source = _conform(info, schema, data)
            if mode == "merge" and source.num_rows == 0:
                return info
            for attempt in range(_COMMIT_RETRIES + 1):
                try:
                    if mode == "overwrite":
                        write_deltalake(dt, _fill_missing(schema, source), mode="overwrite")
                    else:
                        _merge(dt, info, source)
                    break
                except CommitFailedError as exc:
                    if attempt >= _COMMIT_RETRIES:
                        raise Aborted(
                            f"Writing feature table {full!r} kept conflicting with other writers: {exc}"
                        ) from None
                    time.sleep(0.05 * 2**attempt * (0.5 + random.random()))
                    dt = self._open(full, uri)
            return self._info(full, self._open(full, uri))

    def read(self, name: str, version: int | None = None) -> pa.Table:
        """Every row of ``name`` (at ``version``, else the latest) as an Arrow table."""
        full, uri = self._resolve(name)
        if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
            raise InvalidParameterValue(f"version must be a non-negative integer; got {version!r}.")
        dt = self._open(full, uri, version)
        self._info(full, self._open(full, uri) if version is not None else dt)  # a feature table?
        return dt.to_pyarrow_table()

    def get(self, name: str) -> FeatureTableInfo:
        """The feature table ``name``; :class:`~modelport.errors.ResourceDoesNotExist` when it is none."""
        full, uri = self._resolve(name)
        return self._info(full, self._open(full, uri))

    def list(self) -> list[FeatureTableInfo]:
        """Every feature table under the root, by name. Tables that cannot be read are left out."""
        out: list[FeatureTableInfo] = []
        for name, uri in sorted(discover_tables(self.root).items()):
            try:
                dt = DeltaTable(uri, storage_options=self.storage_options)
                if PRIMARY_KEYS_PROPERTY in dt.metadata().configuration:
                    out.append(self._info(name, dt))
            except Exception as exc:  # one broken table must not hide the others
                log.warning("features: cannot read table %s: %s", name, exc)
        return out

    def drop(self, name: str) -> None:
        """Delete feature table ``name`` and its files. Only feature tables can be dropped here."""
        full, uri = self._resolve(name)
        with _lock(uri):
            self.get(full)
            if is_uri(uri):
                fs, path = pafs.FileSystem.from_uri(uri)
                fs.delete_dir(path)
            else:
                shutil.rmtree(uri)

    # -- helpers ----------------------------------------------------------------------------------

    def _exists(self, uri: str) -> bool:
        if DeltaTable.is_deltatable(uri, storage_options=self.storage_options):
            return True
        if is_uri(uri):
            return False
        path = Path(uri)
        return path.exists() and any(path.iterdir())


def _check_keys(
    table: str, primary_keys: Any, timestamp_keys: Any, schema: pa.Schema
) -> tuple[list[str], list[str]]:
    if not isinstance(schema, pa.Schema) or len(schema) == 0:
        raise InvalidParameterValue(f"Feature table {table!r} needs a schema with at least one column.")
    if isinstance(primary_keys, str):
        primary_keys = [primary_keys]
    if isinstance(timestamp_keys, str):
        timestamp_keys = [timestamp_keys]
    timestamp_keys = list(timestamp_keys or [])
    if not isinstance(primary_keys, list | tuple) or not all(isinstance(k, str) for k in primary_keys):
        raise InvalidParameterValue("primary_keys must be a list of column names.")
    if not all(isinstance(k, str) for k in timestamp_keys):
        raise InvalidParameterValue("timestamp_keys must be a list of column names.")
    if len(timestamp_keys) > 1:
        raise InvalidParameterValue(
            f"Feature table {table!r}: at most one timestamp key is allowed; got {timestamp_keys}."
        )
    # Unity Catalog lists the time-series column among the primary keys: take it out of them.
    pks = [k for k in primary_keys if k not in timestamp_keys]
    if not pks:
        raise InvalidParameterValue(f"Feature table {table!r} needs at least one primary key.")
    if len(set(pks)) != len(pks):
        raise InvalidParameterValue(f"Feature table {table!r}: primary_keys {pks} repeat a column.")
    names = set(schema.names)
    for key in [*pks, *timestamp_keys]:
        if key not in names:
            raise InvalidParameterValue(f"Key {key!r} of feature table {table!r} is not one of its columns.")
    for key in timestamp_keys:
        typ = schema.field(key).type
        if not (pa.types.is_timestamp(typ) or pa.types.is_date(typ)):
            raise InvalidParameterValue(
                f"Timestamp key {key!r} of feature table {table!r} must be a timestamp or date column; "
                f"it is {typ}."
            )
    return pks, timestamp_keys


def _conform(info: FeatureTableInfo, schema: pa.Schema, data: pa.Table) -> pa.Table:
    """``data`` with the table's types, in its column order; checked as the module docstring says."""
    types = {f.name: f.type for f in schema}
    unknown = [n for n in data.column_names if n not in types]
    if unknown:
        raise InvalidParameterValue(
            f"Feature table {info.name!r} has no column(s) {', '.join(map(repr, unknown))}."
        )
    if len(set(data.column_names)) != len(data.column_names):
        raise InvalidParameterValue(f"Data for feature table {info.name!r} repeats a column.")
    keys = [*info.primary_keys, *info.timestamp_keys]
    for key in keys:
        if key not in data.column_names:
            raise InvalidParameterValue(f"Data for feature table {info.name!r} lacks key column {key!r}.")
    names = [n for n in schema.names if n in data.column_names]
    columns = [_cast(data[n], types[n], n, info.name) for n in names]
    out = pa.table(columns, names=names)
    for key in keys:
        if out[key].null_count:
            raise InvalidParameterValue(
                f"Key column {key!r} of feature table {info.name!r} holds {out[key].null_count} null(s)."
            )
    if out.num_rows > 1:
        counts = out.group_by(keys).aggregate([([], "count_all")])
        dup = counts.filter(pc.greater(counts["count_all"], 1))
        if dup.num_rows:
            first = {k: dup[k][0].as_py() for k in keys}
            raise InvalidParameterValue(
                f"Data for feature table {info.name!r} has {dup.num_rows} key(s) on more than one row, "
                f"e.g. {first}."
            )
    return out


def _fill_missing(schema: pa.Schema, source: pa.Table) -> pa.Table:
    """``source`` with null columns for the table's columns it lacks, in the table's order."""
    columns = [
        source[f.name] if f.name in source.column_names else pa.nulls(source.num_rows, f.type) for f in schema
    ]
    return pa.table(columns, names=schema.names)


def _quoted(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def _merge(dt: DeltaTable, info: FeatureTableInfo, source: pa.Table) -> None:
    keys = [*info.primary_keys, *info.timestamp_keys]
    predicate = " AND ".join(f"t.{_quoted(k)} = s.{_quoted(k)}" for k in keys)
    values = {_quoted(n): f"s.{_quoted(n)}" for n in source.column_names}
    updates = {q: v for q, v in values.items() if q not in {_quoted(k) for k in keys}}
    merger = dt.merge(source, predicate, source_alias="s", target_alias="t")
    if updates:
        merger = merger.when_matched_update(updates)
    merger.when_not_matched_insert(values).execute()
