"""Training sets: feature lookups checked against their tables, point-in-time joins, the spec.

Everything here works on DataFrames and :class:`~modelport.features.entities.FeatureTable`
descriptions, not on the server: :class:`~modelport.features.client.FeatureEngineeringClient`
fetches the tables and hands them in. The join rule, per :class:`FeatureLookup`:

* without ``timestamp_lookup_key``: the table row whose primary keys equal the lookup keys (the
  latest row per key when the table has a timestamp key);
* with it: the latest row of the same keys whose timestamp is at or before the row's
  ``timestamp_lookup_key`` value, and, with ``lookback_window``, no older than that window
  (``timedelta(0)``: an exact match only);
* no such row: the features are null, then ``default_values`` fill them.

Feature functions (:class:`~modelport.features.entities.FeatureFunction`) run after the
joins, in the order they are listed, one call per row: each reads the columns its
``input_bindings`` name (a column of the DataFrame, a looked-up feature, or the output of a
function listed before it), with the code the served model runs
(:func:`modelport.tables.feature_lookup.function_columns`), so that training and serving compute
the same values with the same types.

Rows keep their order and index. ``load_df()`` returns the included source columns, the
features and the function outputs in spec order, then the labels: dropping the labels gives
exactly the frame the served model receives.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from modelport.errors import InvalidParameterValue
from modelport.features.entities import FeatureFunction, FeatureLookup, FeatureTable
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.feature_lookup import function_columns
from modelport.tables.feature_spec import (
    FeatureColumn,
    FeatureSpec,
    FunctionColumn,
    SourceColumn,
    TableInfo,
    arrow_type,
    default_value_text,
    spark_type,
)

__all__ = [
    "MAX_FUNCTIONS",
    "ResolvedFunction",
    "ResolvedLookup",
    "TrainingSet",
    "build_feature_spec",
    "fill_defaults",
    "point_in_time_join",
    "resolve_functions",
    "resolve_lookups",
    "utc_times",
]

#: Most feature functions one training set or spec may use (Databricks' limit).
MAX_FUNCTIONS = 100

_ROW = "__modelport_row"
_TS = "__modelport_ts"


@dataclass(frozen=True)
class ResolvedLookup:
    """A :class:`FeatureLookup` checked against its table: every name resolved."""

    table_name: str
    #: Columns of the training DataFrame, in the order of ``primary_keys``.
    lookup_key: tuple[str, ...]
    #: The table's primary keys (its timestamp key apart).
    primary_keys: tuple[str, ...]
    #: Table columns to fetch, and the names they take in the training set.
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    #: Spark type names of the features (as the spec records them).
    data_types: tuple[str, ...]
    timestamp_lookup_key: str | None
    #: The table's timestamp key (``None``: the table is not a time series).
    timestamp_key: str | None
    lookback_window: datetime.timedelta | None
    #: Default values by output name.
    defaults: dict[str, Any]


def resolve_lookups(
    lookups: Sequence[FeatureLookup],
    tables: dict[str, FeatureTable],
    df_columns: Sequence[str],
    label_names: Sequence[str] = (),
) -> list[ResolvedLookup]:
    """Check ``lookups`` against their tables and the training DataFrame's columns.

    Raises :class:`InvalidParameterValue` naming the table and column: a lookup key that is not
    a column of the DataFrame, or whose count differs from the table's primary keys; a timestamp
    lookup key on a table without a timestamp key; an unknown feature; a default of the wrong
    type; an output name that another column already has.
    """
    columns = list(df_columns)
    taken = set(columns)
    resolved: list[ResolvedLookup] = []
    for lookup in lookups:
        if not isinstance(lookup, FeatureLookup):
            raise InvalidParameterValue(
                f"feature_lookups must hold FeatureLookup or FeatureFunction objects; got "
                f"{type(lookup).__name__}."
            )
        table = tables[lookup.table_name]
        name = table.name
        primary = table.lookup_keys
        if len(lookup.lookup_key) != len(primary):
            raise InvalidParameterValue(
                f"Feature table '{name}' has primary keys {primary}, but the FeatureLookup gives "
                f"{len(lookup.lookup_key)} lookup_key columns: {lookup.lookup_key}."
            )
        for key in lookup.lookup_key:
            if key not in columns:
                raise InvalidParameterValue(
                    f"lookup_key column '{key}' (feature table '{name}') is not a column of the DataFrame."
                )
            if key in label_names:
                raise InvalidParameterValue(f"lookup_key column '{key}' is a label column.")
        timestamp_key = table.timestamp_keys[0] if table.timestamp_keys else None
        if lookup.timestamp_lookup_key is not None:
            if timestamp_key is None:
                raise InvalidParameterValue(
                    f"Feature table '{name}' has no timestamp key, so a FeatureLookup on it cannot have "
                    f"timestamp_lookup_key '{lookup.timestamp_lookup_key}'."
                )
            if lookup.timestamp_lookup_key not in columns:
                raise InvalidParameterValue(
                    f"timestamp_lookup_key column '{lookup.timestamp_lookup_key}' (feature table '{name}') "
                    "is not a column of the DataFrame."
                )

        features = lookup.feature_names or list(table.features)
        if not features:
            raise InvalidParameterValue(f"Feature table '{name}' has no features besides its keys.")
        for feature in features:
            if table.column_type(feature) is None:
                raise InvalidParameterValue(f"Feature table '{name}' has no feature '{feature}'.")
        for renamed in lookup.rename_outputs:
            if renamed not in features:
                raise InvalidParameterValue(
                    f"rename_outputs names '{renamed}', which is not a feature looked up in '{name}'."
                )
        outputs = [lookup.output_name(f) for f in features]
        types = []
        for feature in features:
            arrow = arrow_type(str(table.column_type(feature)))
            types.append(spark_type(arrow) if arrow is not None else str(table.column_type(feature)))
        for output in outputs:
            if output in taken:
                raise InvalidParameterValue(
                    f"Feature '{output}' of table '{name}' has the name of another column of the training "
                    "set; give it another with rename_outputs."
                )
            taken.add(output)
        defaults: dict[str, Any] = {}
        for output, value in lookup.default_values.items():
            if output not in outputs:
                raise InvalidParameterValue(
                    f"default_values names '{output}', which is not a feature looked up in '{name}'."
                )
            default_value_text(value, types[outputs.index(output)])  # type check
            defaults[output] = value
        resolved.append(
            ResolvedLookup(
                table_name=name,
                lookup_key=tuple(lookup.lookup_key),
                primary_keys=tuple(primary),
                features=tuple(features),
                outputs=tuple(outputs),
                data_types=tuple(types),
                timestamp_lookup_key=lookup.timestamp_lookup_key,
                timestamp_key=timestamp_key,
                lookback_window=lookup.lookback_window,
                defaults=defaults,
            )
        )
    return resolved


@dataclass(frozen=True)
class ResolvedFunction:
    """A :class:`FeatureFunction` checked against its definition and the columns it reads."""

    definition: FunctionDef
    output: str
    #: ``(parameter, column)``, in the function's parameter order.
    bindings: tuple[tuple[str, str], ...]


def resolve_functions(
    functions: Sequence[FeatureFunction],
    definitions: dict[str, FunctionDef],
    df_columns: Sequence[str],
    lookups: Sequence[ResolvedLookup] = (),
    label_names: Sequence[str] = (),
) -> list[ResolvedFunction]:
    """Check ``functions`` (in the order they run) against their definitions and the columns
    they may read: the DataFrame's (labels apart), the lookups' outputs, and the outputs of the
    functions before each. Raises :class:`InvalidParameterValue` naming the function and the
    parameter or column at fault."""
    if len(functions) > MAX_FUNCTIONS:
        raise InvalidParameterValue(
            f"A training set may use at most {MAX_FUNCTIONS} FeatureFunctions; got {len(functions)}."
        )
    outputs = [o for lookup in lookups for o in lookup.outputs]
    readable = {c for c in df_columns if c not in label_names} | set(outputs)
    taken = set(df_columns) | set(outputs)
    resolved: list[ResolvedFunction] = []
    for function in functions:
        definition = definitions[function.udf_name]
        parameters = definition.parameter_names
        unknown = [p for p in function.input_bindings if p not in parameters]
        if unknown:
            raise InvalidParameterValue(
                f"input_bindings of FeatureFunction '{function.udf_name}' names {unknown}, which are not "
                f"parameters of the function ({parameters})."
            )
        bindings = []
        for parameter in parameters:
            column = function.input_bindings.get(parameter, parameter)
            if column in label_names:
                raise InvalidParameterValue(
                    f"Parameter '{parameter}' of FeatureFunction '{function.udf_name}' is bound to the "
                    f"label column '{column}'."
                )
            if column not in readable:
                raise InvalidParameterValue(
                    f"Parameter '{parameter}' of FeatureFunction '{function.udf_name}' is bound to "
                    f"'{column}', which is neither a column of the DataFrame, a looked-up feature nor the "
                    "output of an earlier FeatureFunction."
                )
            bindings.append((parameter, column))
        output = function.output_name
        if output in taken:
            raise InvalidParameterValue(
                f"The output '{output}' of FeatureFunction '{function.udf_name}' has the name of another "
                "column of the training set; give it another with output_name."
            )
        taken.add(output)
        readable.add(output)
        resolved.append(ResolvedFunction(definition, output, tuple(bindings)))
    return resolved


# --- the join ------------------------------------------------------------------------------------


def utc_times(values: pd.Series) -> pd.Series:
    """Times as ``datetime64[ns, UTC]``: naive values are taken as UTC; dates as midnight UTC."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        out = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        out = values.dt.tz_localize("UTC")
    else:
        out = pd.to_datetime(values, utc=True)
    return out.dt.as_unit("ns")


def fill_defaults(values: pd.Series, default: Any, data_type: str | None) -> pd.Series:
    """``values`` with nulls replaced by ``default``; an integer feature left without nulls
    becomes ``int64`` again (nulls made it ``float64``), as a full column reads from Arrow."""
    if default is None or not values.isna().any():
        return values
    filled = values.fillna(default)
    if data_type in ("tinyint", "smallint", "int", "bigint") and not filled.isna().any():
        filled = filled.astype("int64")
    return filled


def point_in_time_join(
    df: pd.DataFrame, lookups: Sequence[ResolvedLookup], tables: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """``df`` with each lookup's features added as columns (see the module docstring).

    ``tables`` maps a table's name to its rows (every column the lookups name). The result keeps
    ``df``'s rows, order and index; ``df`` is not changed.
    """
    result = df.copy()
    for lookup in lookups:
        found = _join_one(df, lookup, tables[lookup.table_name])
        for feature, output, data_type in zip(
            lookup.features, lookup.outputs, lookup.data_types, strict=True
        ):
            column = found[feature]
            column.index = df.index
            result[output] = fill_defaults(column, lookup.defaults.get(output), data_type)
    return result


def _join_one(df: pd.DataFrame, lookup: ResolvedLookup, table: pd.DataFrame) -> pd.DataFrame:
    """The feature columns of ``lookup`` for each row of ``df``, positionally (a RangeIndex)."""
    keys = list(lookup.primary_keys)
    ts_key = lookup.timestamp_key
    # Features travel under names of their own: a feature may be a key column itself (Databricks
    # allows looking a primary key up), and must then be null where no row matched.
    carried = [f"__modelport_f{i}" for i in range(len(lookup.features))]
    right = pd.DataFrame({k: table[k] for k in keys})
    if ts_key is not None:
        right[_TS] = _times(table[ts_key], f"timestamp key '{ts_key}' of feature table '{lookup.table_name}'")
    for name, feature in zip(carried, lookup.features, strict=True):
        right[name] = table[feature]
    left = pd.DataFrame(
        {pk: df[lk].reset_index(drop=True) for pk, lk in zip(keys, lookup.lookup_key, strict=True)}
    )
    left[_ROW] = range(len(df))
    point_in_time = lookup.timestamp_lookup_key is not None and ts_key is not None
    if point_in_time:
        column = str(lookup.timestamp_lookup_key)
        left[_TS] = _times(df[column].reset_index(drop=True), f"timestamp_lookup_key column '{column}'")
    try:
        if not point_in_time:
            if ts_key is not None:
                # A time series looked up without a time: the latest row of each key.
                right = right.sort_values(_TS, kind="stable")
            right = right.drop_duplicates(keys, keep="last")
            merged = left.merge(right[[*keys, *carried]], on=keys, how="left", sort=False)
        else:
            usable = left.dropna(subset=[_TS, *keys]).sort_values(_TS, kind="stable")
            merged = pd.merge_asof(
                usable,
                right.dropna(subset=[_TS]).sort_values(_TS, kind="stable"),
                on=_TS,
                by=keys,
                direction="backward",
                allow_exact_matches=True,
                tolerance=pd.Timedelta(lookup.lookback_window)
                if lookup.lookback_window is not None
                else None,
            )
    except (ValueError, TypeError) as exc:  # pandas' MergeError is a ValueError
        raise InvalidParameterValue(
            f"Cannot join feature table '{lookup.table_name}' on lookup_key {list(lookup.lookup_key)}: "
            f"the key types differ from the table's primary keys {keys} ({exc})."
        ) from None
    found = merged.set_index(_ROW).reindex(range(len(df)))[carried]
    found.columns = list(lookup.features)
    return found.reset_index(drop=True)


def _times(values: pd.Series, what: str) -> pd.Series:
    try:
        return utc_times(values)
    except (ValueError, TypeError):
        raise InvalidParameterValue(f"The {what} must hold timestamps or dates.") from None


# --- the spec ------------------------------------------------------------------------------------


def _spark_types(df: pd.DataFrame) -> dict[str, str | None]:
    types: dict[str, str | None] = {}
    for name in df.columns:
        try:
            arrow = pa.Array.from_pandas(df[name]).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            types[str(name)] = None
            continue
        types[str(name)] = spark_type(arrow) if not pa.types.is_null(arrow) else None
    return types


def build_feature_spec(
    df: pd.DataFrame,
    lookups: Sequence[ResolvedLookup],
    label_names: Sequence[str],
    exclude_columns: Sequence[str],
    table_versions: dict[str, int] | None = None,
    client_version: str = "modelport",
    functions: Sequence[ResolvedFunction] = (),
) -> FeatureSpec:
    """The spec of a training set, as Databricks builds it: every DataFrame column but the labels
    is a source column (``include: false`` when excluded, still required at serving), then the
    features in lookup order, then the function outputs in order. An excluded feature or
    function output is left out, unless a function reads it (it stays, ``include: false``)."""
    columns_in_df = [str(c) for c in df.columns]
    outputs = {o for lookup in lookups for o in lookup.outputs} | {f.output for f in functions}
    read = {column for f in functions for _, column in f.bindings}
    for name in exclude_columns:
        if name in label_names:
            raise InvalidParameterValue(f"exclude_columns names the label column '{name}'.")
        if name not in columns_in_df and name not in outputs:
            raise InvalidParameterValue(
                f"exclude_columns names '{name}', which is neither a column of the DataFrame nor a feature."
            )
    types = _spark_types(df)
    columns: list[SourceColumn | FeatureColumn | FunctionColumn] = [
        SourceColumn(name, types[name], include=name not in exclude_columns)
        for name in columns_in_df
        if name not in label_names
    ]
    windows: dict[str, datetime.timedelta | None] = {}
    for lookup in lookups:
        kept = [i for i, o in enumerate(lookup.outputs) if o not in exclude_columns or o in read]
        if not kept:
            continue
        previous = windows.setdefault(lookup.table_name, lookup.lookback_window)
        if previous != lookup.lookback_window:
            raise InvalidParameterValue(
                f"Feature table '{lookup.table_name}' is looked up with two lookback windows "
                f"({previous} and {lookup.lookback_window}); use one."
            )
        for i in kept:
            output = lookup.outputs[i]
            default = lookup.defaults.get(output)
            columns.append(
                FeatureColumn(
                    output_name=output,
                    table_name=lookup.table_name,
                    feature_name=lookup.features[i],
                    lookup_key=lookup.lookup_key,
                    timestamp_lookup_key=(lookup.timestamp_lookup_key,)
                    if lookup.timestamp_lookup_key
                    else (),
                    default_value=None
                    if default is None
                    else default_value_text(default, lookup.data_types[i]),
                    data_type=lookup.data_types[i],
                    include=output not in exclude_columns,
                )
            )
    definitions: dict[str, FunctionDef] = {}
    for function in functions:
        if function.output in exclude_columns and function.output not in read:
            continue
        definitions.setdefault(function.definition.name, function.definition)
        columns.append(
            FunctionColumn(
                output_name=function.output,
                udf_name=function.definition.name,
                input_bindings=function.bindings,
                data_type=function.definition.return_type,
                include=function.output not in exclude_columns,
            )
        )
    versions = table_versions or {}
    tables = tuple(
        TableInfo(
            name,
            lookback_window=None if window is None else window.total_seconds(),
            table_version=versions.get(name),
        )
        for name, window in windows.items()
    )
    return FeatureSpec(
        tuple(columns),
        tables,
        tuple(definitions.values()),
        feature_store_client_version=client_version,
    )


# --- the training set ----------------------------------------------------------------------------

#: Reads a feature table's rows at a Delta version: ``(name, version) -> DataFrame``.
TableReader = Callable[[str, int | None], pd.DataFrame]


class TrainingSet:
    """A DataFrame joined with feature tables, and the spec that repeats the join at serving.

    The tables are read when :meth:`load_df` is called, at the Delta versions current when the
    training set was created, so that loading twice gives the same rows.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        lookups: Sequence[ResolvedLookup],
        label_names: Sequence[str],
        feature_spec: FeatureSpec,
        reader: TableReader,
        table_versions: dict[str, int] | None = None,
    ) -> None:
        self._df = df
        self._lookups = list(lookups)
        self._labels = list(label_names)
        self._spec = feature_spec
        self._reader = reader
        self._versions = dict(table_versions or {})

    @property
    def feature_spec(self) -> FeatureSpec:
        return self._spec

    @property
    def label_names(self) -> list[str]:
        return list(self._labels)

    def label_types(self) -> dict[str, str | None]:
        """The Spark type names of the label columns (``None`` where Arrow has no plain type)."""
        types = _spark_types(self._df[self._labels]) if self._labels else {}
        return {name: types[name] for name in self._labels}

    def load_df(self) -> pd.DataFrame:
        """The training DataFrame: the spec's included columns in order, then the labels."""
        tables = {name: self._reader(name, self._versions.get(name)) for name in self._needed_tables()}
        joined = point_in_time_join(self._df, self._lookups, tables)
        for name, column in function_columns(self._spec, joined).items():
            joined[name] = column
        return joined[self._spec.output_columns + self._labels]

    def _needed_tables(self) -> list[str]:
        return list(dict.fromkeys(lookup.table_name for lookup in self._lookups))
