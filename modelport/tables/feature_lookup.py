"""Evaluating a feature spec for request rows: look features up, apply defaults and overrides,
compute feature functions. Used by a served feature-aware model (``FeatureLookupModel``, in a
replica) and by feature-spec endpoints (in the gateway), so both answer alike.

The rules are those of Databricks' lookup client (``databricks/feature_store/mlflow_model.py``):

1. every source column of the spec is required, an excluded one too: a missing one is an
   :class:`~modelport.errors.InvalidParameterValue` naming it (``Input is missing columns [...]``),
   so is a column given twice (``Input has duplicate columns: [...]``);
2. a null in a lookup key column is an ``InvalidParameterValue`` naming the column;
3. features are looked up in the online store with one :meth:`LookupReader.lookup` per table per
   call, whatever the number of rows and key groups; with a ``timestamp_lookup_key`` the row's
   value of that column is the point in time (the latest row at or before it, within the table's
   lookback window; a null time finds no row, as in a training set);
4. a key with no row gives nulls, which the spec's defaults then fill (counted in
   :attr:`FeatureEvaluator.missing_rows`, per table; :meth:`FeatureEvaluator.frame` also says
   which rows, so that a served model reports them per request);
5. a feature or function output present in the request overrides: fully (no null in it: not
   looked up, or not computed, at all) or per cell (its nulls are looked up or computed);
6. feature functions run after the lookups, in spec order, one call per row; what a function
   raises is an ``InvalidParameterValue`` naming the function and the row;
7. the answer holds the spec's included columns, in the spec's order.

A table that is not published, or published without a feature the spec reads, is the store's
:class:`~modelport.errors.TemporarilyUnavailable` naming the table (and the feature); so is a
published value whose type no longer fits the feature: never a wrong value.

:meth:`FeatureEvaluator.records` works on plain dicts (no pandas: the gateway's path);
:meth:`FeatureEvaluator.frame` on a DataFrame and gives the frame a training set would have had
(the dtypes Arrow gives the offline join), for the raw model.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.feature_spec import FeatureColumn, FeatureSpec, FunctionColumn, arrow_type
from modelport.tables.online_stores import LookupReader

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FeatureEvaluator", "function_columns"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
_INTEGERS = {"tinyint": "int8", "smallint": "int16", "int": "int32", "bigint": "int64"}
_FLOATS = {"float": "float32", "double": "float64"}


# --- values from the store ---------------------------------------------------------------------


class _WrongType(Exception):
    pass


def _as_int(value: Any) -> Any:
    if type(value) is not int:
        raise _WrongType
    return value


def _as_float(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    raise _WrongType


def _as_kind(kind: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise _WrongType
        return value

    return check


def _as_json(value: Any) -> Any:
    return value


def _checker(data_type: str | None) -> Callable[[Any], Any]:
    """What checks a value the store returns for a feature of ``data_type`` (the store's types:
    int, float, str, bool, bytes, ISO text for dates and times, lists and dicts)."""
    kind = (data_type or "").lower()
    if kind in _INTEGERS:
        return _as_int
    if kind in _FLOATS or kind.startswith("decimal"):
        return _as_float
    if kind == "boolean":
        return _as_kind(bool)
    if kind in ("string", "date", "timestamp", "timestamp_ntz"):
        return _as_kind(str)
    if kind == "binary":
        return _as_kind(bytes)
    return _as_json


def _epoch_ms(value: Any, column: str) -> int | None:
    """A timestamp lookup key's value in epoch milliseconds; ``None`` for a null. Datetimes (naive
    ones are UTC), dates (midnight UTC), ISO 8601 text, or epoch milliseconds."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if isinstance(value, dt.datetime):
            if value != value:  # NaT
                return None
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return (value - _EPOCH) // _MS
        if isinstance(value, dt.date):
            return (dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC) - _EPOCH) // _MS
        if isinstance(value, float):
            if value != value:  # NaN
                return None
            raise TypeError
        if isinstance(value, bool):
            raise TypeError
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameterValue(
            f"Column '{column}' must hold timestamps (ISO 8601 text or epoch milliseconds); got {value!r}."
        ) from None


# --- the plan --------------------------------------------------------------------------------------


class _Feature:
    __slots__ = ("check", "column", "default", "name", "output")

    def __init__(self, column: FeatureColumn) -> None:
        self.column = column
        self.output = column.output_name
        self.name = column.feature_name
        self.default = column.default
        self.check = _checker(column.data_type)


class _Group:
    """Features of one table looked up with the same keys."""

    __slots__ = ("features", "keys", "timestamp")

    def __init__(self, keys: tuple[str, ...], timestamp: str | None) -> None:
        self.keys = keys
        self.timestamp = timestamp
        self.features: list[_Feature] = []


class _Table:
    __slots__ = ("groups", "lookback_ms", "name")

    def __init__(self, name: str, lookback_ms: int | None) -> None:
        self.name = name
        self.lookback_ms = lookback_ms
        self.groups: dict[tuple[tuple[str, ...], str | None], _Group] = {}


class _Function:
    __slots__ = ("bindings", "definition", "output")

    def __init__(self, column: FunctionColumn, definition: FunctionDef) -> None:
        self.output = column.output_name
        self.definition = definition
        self.bindings = list(column.input_bindings)


def _is_null(value: Any) -> bool:
    """Null as a DataFrame cell may be: None, NaN, NaT, pd.NA."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pd.NA
        return True
    except ValueError:  # an array
        return False


def _complete(values: list[Any]) -> bool:
    return all(v is not None for v in values)


# --- the evaluator ---------------------------------------------------------------------------------


class FeatureEvaluator:
    """Evaluates one feature spec against one online store (see the module docstring).

    ``reader`` is the store's reader, or a callable that opens it: it is then called on the first
    lookup (so that building the evaluator needs no store). Safe to use from several threads when
    the reader is (the store readers are). :attr:`missing_rows` counts, per table, the keys that
    found no row; whoever exports a metric reads it.
    """

    def __init__(self, spec: FeatureSpec, reader: LookupReader | Callable[[], LookupReader]) -> None:
        self.spec = spec
        if hasattr(reader, "lookup"):
            self._reader: LookupReader | None = reader  # type: ignore[assignment]
            self._open: Callable[[], LookupReader] | None = None
        else:
            self._reader = None
            self._open = reader  # type: ignore[assignment]
        self._reader_lock = threading.Lock()
        self._required = spec.required_columns
        self._sources = set(self._required)
        self._keys = spec.lookup_key_columns
        self._outputs = spec.output_columns
        self._features = [_Feature(f) for f in spec.needed_features]
        lookback = {
            t.table_name: None if t.lookback_window is None else round(t.lookback_window * 1000)
            for t in spec.tables
        }
        self._tables: list[_Table] = []
        by_name: dict[str, _Table] = {}
        for feature in self._features:
            column = feature.column
            table = by_name.get(column.table_name)
            if table is None:
                table = by_name[column.table_name] = _Table(
                    column.table_name, lookback.get(column.table_name)
                )
                self._tables.append(table)
            timestamp = column.timestamp_lookup_key[0] if column.timestamp_lookup_key else None
            group = table.groups.setdefault(
                (column.lookup_key, timestamp), _Group(column.lookup_key, timestamp)
            )
            group.features.append(feature)
        self._functions = [_Function(c, spec.function(c.udf_name)) for c in spec.function_columns]
        #: Outputs a request may carry to override them.
        self._overridable = [f.output for f in self._features] + [f.output for f in self._functions]
        self._unique = set(self._required) | set(self._overridable)
        self._types = {c.output_name: c.data_type for c in spec.columns}
        self._binary = [c for c in self._outputs if self._types.get(c) == "binary"]
        self._columns: pd.Index | None = None  # the frame's column index, built on first use
        self._missing_lock = threading.Lock()
        #: Keys that found no row in the online store, per table, since the evaluator was made.
        self.missing_rows: dict[str, int] = {t.name: 0 for t in self._tables}

    # ---- the store ------------------------------------------------------------------------------
    def _online(self) -> LookupReader:
        reader = self._reader
        if reader is None:
            with self._reader_lock:
                if self._reader is None:
                    assert self._open is not None
                    self._reader = self._open()
                reader = self._reader
        return reader

    # ---- rows as dicts --------------------------------------------------------------------------
    def records(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One dict per row of ``rows`` with the spec's included columns, in spec order.

        Values are JSON-ready: what the request gave for its own columns, the store's values for
        features (dates and times as ISO 8601 text; bytes as UTF-8 text), defaults, function
        results. Raises as the module docstring says.
        """
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InvalidParameterValue("The input must be a list of records (objects).")
        n = len(rows)
        if n == 0:
            return []
        if n == 1:
            present: set[str] | dict[str, Any] = rows[0]
        else:
            present = set().union(*rows)
        missing = [c for c in self._required if c not in present]
        if missing:
            raise _missing(missing, self._required)
        null_keys = [k for k in self._keys if any(r.get(k) is None for r in rows)]
        if null_keys:
            raise _null_keys(null_keys, self._keys)
        columns: dict[str, list[Any]] = {c: [r.get(c) for r in rows] for c in self._required}
        overrides = {c: [r.get(c) for r in rows] for c in self._overridable if c in present}
        values = self._evaluate(columns, overrides, n)
        for name in self._binary:  # JSON has no bytes: UTF-8 text, as the lookup route gives them
            values[name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values[name]]
        outputs = self._outputs
        out_columns = [values[c] for c in outputs]
        return [dict(zip(outputs, cells, strict=True)) for cells in zip(*out_columns, strict=True)]

    # ---- DataFrames -----------------------------------------------------------------------------
    def frame(self, df: pd.DataFrame, missed: dict[str, list[int]] | None = None) -> pd.DataFrame:
        """What the raw model receives for ``df``: the spec's included columns, in spec order, with
        the dtypes a training set gives them (source columns and fully overridden ones as ``df``
        has them).

        ``missed``, when given, receives per table the position in ``df`` of each row whose key
        found no row (a row once per key it was looked up with): what a served model reports
        per request (``modelport/features/mlflow_model.py``); :attr:`missing_rows` counts them
        all the same."""
        import pandas as pd

        columns_index = df.columns
        if not columns_index.is_unique:
            duplicated = sorted(
                {str(c) for c in columns_index[columns_index.duplicated()] if c in self._unique}
            )
            if duplicated:
                raise InvalidParameterValue(
                    f"Input has duplicate columns: {duplicated}. These column names must be unique: "
                    f"{sorted(self._unique)}."
                )
        missing = [c for c in self._required if c not in columns_index]
        if missing:
            raise _missing(missing, self._required)
        n = len(df)
        columns: dict[str, list[Any]] = {c: df[c].tolist() for c in self._required}
        null_keys = [k for k in self._keys if any(map(_is_null, columns[k]))]
        if null_keys:
            raise _null_keys(null_keys, self._keys)
        overrides: dict[str, list[Any]] = {}
        full: set[str] = set()
        for name in self._overridable:
            if name in columns_index:
                given = [None if _is_null(v) else v for v in df[name].tolist()]
                overrides[name] = given
                if _complete(given):
                    full.add(name)
        values = self._evaluate(columns, overrides, n, missed)
        arrays: list[Any] = []
        for name in self._outputs:
            if name in full or name in self._sources:
                arrays.append(df[name].array)
            else:
                column = _column(values[name], self._types.get(name), name, df.index)
                arrays.append(column.array if isinstance(column, pd.Series) else column)
        if self._columns is None:
            self._columns = pd.Index(self._outputs)
        try:
            # A third of the cost of DataFrame(dict): the column index is built once, not per
            # call (pandas' own constructor uses this; the fallback keeps a future pandas working).
            return pd.DataFrame._from_arrays(
                arrays, columns=self._columns, index=df.index, verify_integrity=True
            )
        except (AttributeError, TypeError):  # pragma: no cover - a pandas without it
            return pd.DataFrame(dict(zip(self._outputs, arrays, strict=True)), index=df.index)

    # ---- the work -------------------------------------------------------------------------------
    def _evaluate(
        self,
        columns: dict[str, list[Any]],
        overrides: dict[str, list[Any]],
        n: int,
        missed: dict[str, list[int]] | None = None,
    ) -> dict[str, list[Any]]:
        """``columns`` (the source columns, as lists) completed with every feature and function
        output; ``overrides``: the request's values of those (``None``: not given); ``missed``:
        as :meth:`frame` says."""
        full = {c for c, v in overrides.items() if _complete(v)}
        for table in self._tables:
            self._lookup(table, columns, overrides, full, n, missed)
        for function in self._functions:
            name = function.output
            given = overrides.get(name)
            if name in full:
                columns[name] = given  # type: ignore[assignment]
                continue
            definition = function.definition
            out: list[Any] = []
            for i in range(n):
                if given is not None and given[i] is not None:
                    out.append(given[i])
                    continue
                kwargs = {parameter: columns[column][i] for parameter, column in function.bindings}
                try:
                    out.append(definition.call(**kwargs))
                except Exception as exc:  # the function's own code: the request's problem
                    raise InvalidParameterValue(
                        f"Feature function {definition.name} (column '{name}') failed on row {i}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
            columns[name] = out
        return columns

    def _lookup(
        self,
        table: _Table,
        columns: dict[str, list[Any]],
        overrides: dict[str, list[Any]],
        full: set[str],
        n: int,
        missed: dict[str, list[int]] | None,
    ) -> None:
        """Look ``table``'s features up (one store call) and put them into ``columns``; the rows
        whose key found no row go into ``missed`` (when given) and :attr:`missing_rows`."""
        groups = []
        for group in table.groups.values():
            wanted = [f for f in group.features if f.output not in full]
            if wanted:
                groups.append((group, wanted))
            for feature in group.features:
                if feature.output in full:
                    columns[feature.output] = overrides[feature.output]
        if not groups:
            return
        keys: list[tuple[Any, ...]] = []
        as_of: list[int | None] = []
        slots: list[list[int]] = []  # per group: the rows its keys stand for, in order
        timed = False
        for group, _ in groups:
            key_columns = [columns[k] for k in group.keys]
            if group.timestamp is None:
                keys.extend(zip(*key_columns, strict=True))
                as_of.extend([None] * n)
                slots.append(list(range(n)))
                continue
            timed = True
            times = columns[group.timestamp]
            rows: list[int] = []
            for i in range(n):
                moment = _epoch_ms(times[i], group.timestamp)
                if moment is not None:  # a null time finds no row, as in a training set
                    rows.append(i)
                    keys.append(tuple(c[i] for c in key_columns))
                    as_of.append(moment)
            slots.append(rows)
        names = list(dict.fromkeys(f.name for _, wanted in groups for f in wanted))
        found = self._online().lookup(
            table.name,
            keys,
            names,
            as_of_ms=as_of if timed else None,
            lookback_ms=table.lookback_ms if timed else None,
        )
        start = 0
        misses = 0
        for (_, wanted), rows in zip(groups, slots, strict=True):
            part = found[start : start + len(rows)]
            start += len(rows)
            group_misses = part.count(None) + n - len(rows)
            misses += group_misses
            if group_misses and missed is not None:
                positions = missed.setdefault(table.name, [])
                if len(rows) < n:  # a null time: no key looked up, no row found
                    looked = set(rows)
                    positions.extend(i for i in range(n) if i not in looked)
                positions.extend(i for i, row in zip(rows, part, strict=True) if row is None)
            for feature in wanted:
                fname = feature.name
                check = feature.check
                values: list[Any] = [None] * n
                try:
                    for i, row in zip(rows, part, strict=True):
                        if row is not None:
                            value = row.get(fname)
                            if value is not None:
                                values[i] = check(value)
                except _WrongType:
                    raise TemporarilyUnavailable(
                        f"Feature '{fname}' of table '{table.name}' in the online store no longer has the "
                        f"type the feature spec reads ({feature.column.data_type})."
                    ) from None
                default = feature.default
                if default is not None:
                    values = [default if v is None else v for v in values]
                given = overrides.get(feature.output)
                if given is not None:
                    values = [v if g is None else g for g, v in zip(given, values, strict=True)]
                columns[feature.output] = values
        if misses:
            with self._missing_lock:
                self.missing_rows[table.name] += misses


def _missing(missing: list[str], required: list[str]) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Input is missing columns {missing}. The following columns are required: {required}."
    )


def _null_keys(null_keys: list[str], keys: list[str]) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Failed to lookup feature values due to null values for lookup_key columns {null_keys}. "
        f"The following columns cannot contain null values: {keys}."
    )


# --- columns as a training set has them --------------------------------------------------------------


def _column(values: list[Any], data_type: str | None, name: str, index: pd.Index) -> Any:
    """``values`` (``None`` for nulls) as the column a training set holds for a ``data_type``
    feature: what ``pyarrow`` gives for that type, as ``to_pandas`` converts it."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    kind = (data_type or "").lower()
    try:
        if kind in _INTEGERS:
            if all(type(v) is int for v in values):
                return np.array(values, dtype=_INTEGERS[kind])
            return np.array([np.nan if v is None else v for v in values], dtype="float64")
        if kind in _FLOATS:
            return np.array([np.nan if v is None else v for v in values], dtype=_FLOATS[kind])
        if kind == "boolean":
            if all(type(v) is bool for v in values):
                return np.array(values, dtype=bool)
            return np.array(values, dtype=object)
        if kind in ("timestamp", "timestamp_ntz"):
            times = pd.to_datetime(pd.Series(values, index=index, dtype=object), utc=True).dt.as_unit("us")
            return times if kind == "timestamp" else times.dt.tz_localize(None)
        if kind == "date":
            dates = [dt.date.fromisoformat(v) if isinstance(v, str) else v for v in values]
            return np.array(dates, dtype=object)
        typ = arrow_type(kind) if kind else None
        array = pa.array(values, type=typ) if typ is not None else pa.array(values)
        series = array.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError):
        raise InvalidParameterValue(
            f"Column '{name}' cannot be read as {data_type}: the request gave a value of another type."
        ) from None
    series.index = index
    return series


def function_columns(spec: FeatureSpec, df: pd.DataFrame) -> dict[str, Any]:
    """The outputs of the spec's function columns for ``df`` (which holds every column they
    read), each as a training set holds it; functions run in spec order, a later one reading an
    earlier one's output. For training sets: the served side gets the same values and types
    from :class:`FeatureEvaluator`."""
    n = len(df)
    values: dict[str, list[Any]] = {}
    out: dict[str, Any] = {}
    for column in spec.function_columns:
        definition = spec.function(column.udf_name)
        inputs = []
        for parameter, bound in column.input_bindings:
            if bound not in values:
                series = df[bound]
                nulls = series.isna().tolist()
                values[bound] = [None if m else v for v, m in zip(series.tolist(), nulls, strict=True)]
            inputs.append((parameter, values[bound]))
        results: list[Any] = []
        for i in range(n):
            try:
                results.append(definition.call(**{p: v[i] for p, v in inputs}))
            except Exception as exc:  # the function's own code
                raise InvalidParameterValue(
                    f"Feature function {definition.name} (column '{column.output_name}') failed on row {i}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        values[column.output_name] = results
        out[column.output_name] = _column(results, definition.return_type, column.output_name, df.index)
    return out
