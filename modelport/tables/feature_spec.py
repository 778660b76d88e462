"""The feature spec: which columns a model reads, and where each comes from (``feature_spec.yaml``).

The file has Databricks' layout (``ml_features_common/entities/feature_spec.py``, serialization
version 9), so a model logged here reads like one logged there::

    input_columns:
    - customer_id: {data_type: bigint, topological_ordering: 0, source: training_data}
    - amount_30d:
        table_name: main.fraud.customer_features
        feature_name: amount_30d
        lookup_key: [customer_id]
        default_value: '0.0'
        data_type: double
        topological_ordering: 1
        source: feature_store
    input_tables:
    - main.fraud.customer_features: {table_version: 3}
    workspace_id: '0'
    feature_store_client_version: modelport-0.1.0
    serialization_version: 9

``input_columns`` is ordered: the model receives the columns whose ``include`` is true, in this
order. Source columns (``training_data``) are what a request must carry, excluded ones too;
feature columns (``feature_store``) are looked up by their ``lookup_key`` (source columns, in the
order of the table's primary keys), point-in-time when ``timestamp_lookup_key`` names one.
``default_value`` is the text of the value (``'0.5'``, ``'true'``, ``'abc'``), read back with the
column's ``data_type``, a Spark SQL type name (``bigint``, ``double``, ``string``, ``timestamp``...).
``input_tables`` entries may carry ``lookback_window`` (seconds, a float) and, a modelport
addition, ``table_version``: the Delta version the training set was read at.

Function columns (``on_demand_feature``) are computed by a feature function from other columns::

    - amount_ratio:
        udf_name: main.fraud.ratio
        input_bindings: {amount: amount, average: avg_amount}
        data_type: double
        topological_ordering: 2
        source: on_demand_feature
    input_functions:
    - main.fraud.ratio: {parameters: [...], return_type: double, entry_point: ratio, source: '...'}

``input_bindings`` maps each parameter of the function to the column it reads: a source column,
a feature column (included or not) or the output of a function column listed before it.
``input_functions`` carries each function's whole definition
(:class:`~modelport.tables.feature_functions.FunctionDef`), a modelport addition that makes a
logged model self-contained: Databricks lists only the names and resolves them in Unity Catalog.

This module lives below both the replica (``FeatureLookupModel``) and the gateway (feature-spec
endpoints); ``modelport.features.spec`` re-exports it for the client side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from modelport.errors import InvalidParameterValue
from modelport.tables.feature_functions import FunctionDef

__all__ = [
    "FEATURE_SPEC_FILE",
    "SERIALIZATION_VERSION",
    "FeatureColumn",
    "FeatureSpec",
    "FunctionColumn",
    "SourceColumn",
    "TableInfo",
    "arrow_type",
    "default_value_text",
    "parse_default_value",
    "spark_type",
]

#: Name of the spec inside ``data/feature_store/`` of the MLflow model (Databricks' FEATURE_ARTIFACT_FILE).
FEATURE_SPEC_FILE = "feature_spec.yaml"
#: The Databricks serialization version whose fields this module writes (v9: lookback_window in seconds).
SERIALIZATION_VERSION = 9

TRAINING_DATA = "training_data"
FEATURE_STORE = "feature_store"
ON_DEMAND_FEATURE = "on_demand_feature"

_INTEGER_TYPES = {"tinyint", "smallint", "int", "bigint"}
_FLOAT_TYPES = {"float", "double"}
_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]$")
_DECIMAL = re.compile(r"^decimal(?:128|256)?\((\d+), ?(\d+)\)$")


# --- types ---------------------------------------------------------------------------------------


def spark_type(arrow: pa.DataType) -> str:
    """The Spark SQL name Databricks records for a column of Arrow type ``arrow``."""
    if pa.types.is_int8(arrow) or pa.types.is_uint8(arrow):
        return "tinyint"
    if pa.types.is_int16(arrow) or pa.types.is_uint16(arrow):
        return "smallint"
    if pa.types.is_int32(arrow) or pa.types.is_uint32(arrow):
        return "int"
    if pa.types.is_integer(arrow):
        return "bigint"
    if pa.types.is_float16(arrow) or pa.types.is_float32(arrow):
        return "float"
    if pa.types.is_float64(arrow):
        return "double"
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return "binary"
    if pa.types.is_date(arrow):
        return "date"
    if pa.types.is_timestamp(arrow):
        return "timestamp" if arrow.tz else "timestamp_ntz"
    if pa.types.is_decimal(arrow):
        return f"decimal({arrow.precision},{arrow.scale})"
    return str(arrow)


_SPARK_TO_ARROW: dict[str, pa.DataType] = {
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamp_ntz": pa.timestamp("us"),
}


def arrow_type(text: str) -> pa.DataType | None:
    """The Arrow type for a Spark SQL name (``bigint``) or an Arrow type's text (``int64``,
    ``timestamp[us, tz=UTC]``); ``None`` when neither is known."""
    text = text.strip()
    if text in _SPARK_TO_ARROW:
        return _SPARK_TO_ARROW[text]
    if match := _TIMESTAMP.match(text):
        return pa.timestamp(match.group(1), tz=match.group(2))
    if match := _DECIMAL.match(text):
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    try:
        return pa.type_for_alias(text)
    except ValueError:
        return None


def default_value_text(value: Any, data_type: str | None) -> str:
    """A default value as the spec stores it; raises when it does not fit ``data_type``."""
    kind = (data_type or "").lower()
    if isinstance(value, bool):
        if kind and kind != "boolean":
            raise InvalidParameterValue(f"default value {value!r} does not fit a {data_type} feature")
        return "true" if value else "false"
    if isinstance(value, int):
        if kind and kind not in _INTEGER_TYPES | _FLOAT_TYPES:
            raise InvalidParameterValue(f"default value {value!r} does not fit a {data_type} feature")
        return str(value)
    if isinstance(value, float):
        if kind and kind not in _FLOAT_TYPES:
            raise InvalidParameterValue(f"default value {value!r} does not fit a {data_type} feature")
        return repr(value)
    if isinstance(value, str):
        if kind and kind != "string":
            raise InvalidParameterValue(f"default value {value!r} does not fit a {data_type} feature")
        return value
    raise InvalidParameterValue(f"default value {value!r} must be an int, float, bool or str")


def parse_default_value(text: str | None, data_type: str | None) -> Any:
    """The value a spec's ``default_value`` text stands for, read with the column's type."""
    if text is None:
        return None
    kind = (data_type or "string").lower()
    try:
        if kind in _INTEGER_TYPES:
            return int(text)
        if kind in _FLOAT_TYPES:
            return float(text)
        if kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
    except ValueError:
        raise InvalidParameterValue(f"default value {text!r} is not a {data_type}") from None
    return text


# --- the spec --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceColumn:
    """A column the request (or the training DataFrame) carries itself."""

    name: str
    data_type: str | None = None
    include: bool = True

    @property
    def output_name(self) -> str:
        return self.name


@dataclass(frozen=True)
class FeatureColumn:
    """A column looked up in a feature table."""

    output_name: str
    table_name: str
    feature_name: str
    lookup_key: tuple[str, ...]
    timestamp_lookup_key: tuple[str, ...] = ()
    #: The default's text (see :func:`default_value_text`), or ``None``.
    default_value: str | None = None
    data_type: str | None = None
    include: bool = True

    @property
    def default(self) -> Any:
        """The default value, typed by ``data_type`` (``None`` when there is none)."""
        return parse_default_value(self.default_value, self.data_type)


@dataclass(frozen=True)
class TableInfo:
    """A feature table the spec reads."""

    table_name: str
    #: Seconds; ``None``: no lookback limit.
    lookback_window: float | None = None
    #: The Delta version the training set was read at (modelport's addition).
    table_version: int | None = None


@dataclass(frozen=True)
class FunctionColumn:
    """A column computed by a feature function from other columns of the spec."""

    output_name: str
    udf_name: str
    #: ``(parameter, column)`` pairs, in the function's parameter order.
    input_bindings: tuple[tuple[str, str], ...]
    data_type: str | None = None
    include: bool = True

    @property
    def bound_columns(self) -> list[str]:
        """The columns the function reads, in parameter order."""
        return [column for _, column in self.input_bindings]


Column = SourceColumn | FeatureColumn | FunctionColumn


@dataclass(frozen=True)
class FeatureSpec:
    """The validated content of ``feature_spec.yaml``.

    Invariants (checked on construction): at least one column; output names unique; every
    lookup key and timestamp lookup key is a source column; the tables of ``tables`` are exactly
    those the feature columns read; the definitions of ``functions`` are exactly those the
    function columns name; each function column binds every parameter of its function, each to a
    source column, a feature column or the output of a function column before it.
    """

    columns: tuple[Column, ...]
    tables: tuple[TableInfo, ...]
    functions: tuple[FunctionDef, ...] = ()
    serialization_version: int = SERIALIZATION_VERSION
    feature_store_client_version: str = "modelport"
    workspace_id: int = 0
    _by_table: dict[str, TableInfo] = field(init=False, repr=False, compare=False)
    _by_function: dict[str, FunctionDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise InvalidParameterValue("A feature spec needs at least one input column.")
        seen: set[str] = set()
        for column in self.columns:
            if column.output_name in seen:
                raise InvalidParameterValue(
                    f"Column {column.output_name!r} appears twice in the feature spec."
                )
            seen.add(column.output_name)
        sources = {c.name for c in self.source_columns}
        for feature in self.feature_columns:
            for key in (*feature.lookup_key, *feature.timestamp_lookup_key):
                if key not in sources:
                    raise InvalidParameterValue(
                        f"Lookup key {key!r} of feature {feature.output_name!r} is not a source column "
                        "of the feature spec."
                    )
        table_names = [t.table_name for t in self.tables]
        if len(set(table_names)) != len(table_names):
            raise InvalidParameterValue(f"input_tables lists a table twice: {table_names}.")
        used = {f.table_name for f in self.feature_columns}
        if used != set(table_names):
            raise InvalidParameterValue(
                f"input_tables {sorted(table_names)} must be the tables of the features {sorted(used)}."
            )
        object.__setattr__(self, "_by_table", {t.table_name: t for t in self.tables})
        self._check_functions(sources)

    def _check_functions(self, sources: set[str]) -> None:
        by_name: dict[str, FunctionDef] = {}
        for definition in self.functions:
            if definition.name in by_name:
                raise InvalidParameterValue(f"input_functions lists {definition.name} twice.")
            by_name[definition.name] = definition
        readable = sources | {f.output_name for f in self.feature_columns}
        for column in self.columns:
            if not isinstance(column, FunctionColumn):
                continue
            definition = by_name.get(column.udf_name)
            if definition is None:
                raise InvalidParameterValue(
                    f"Column {column.output_name!r} is computed by {column.udf_name}, which input_functions "
                    "does not define."
                )
            bound = [p for p, _ in column.input_bindings]
            if sorted(bound) != sorted(definition.parameter_names) or len(set(bound)) != len(bound):
                raise InvalidParameterValue(
                    f"Column {column.output_name!r} binds the parameters {bound} of {column.udf_name}, "
                    f"which takes {definition.parameter_names}."
                )
            for parameter, target in column.input_bindings:
                if target not in readable:
                    raise InvalidParameterValue(
                        f"Parameter {parameter!r} of {column.udf_name} (column {column.output_name!r}) is "
                        f"bound to {target!r}, which is not a source column, a feature or the output of "
                        "an earlier function of the feature spec."
                    )
            if column.data_type is not None and column.data_type != definition.return_type:
                raise InvalidParameterValue(
                    f"Column {column.output_name!r} has type {column.data_type}, but {column.udf_name} "
                    f"returns {definition.return_type}."
                )
            readable.add(column.output_name)
        unused = sorted(set(by_name) - {c.udf_name for c in self.function_columns})
        if unused:
            raise InvalidParameterValue(f"input_functions defines {unused}, which no column uses.")
        object.__setattr__(self, "_by_function", by_name)

    # ---- views ----------------------------------------------------------------------------------
    @property
    def source_columns(self) -> list[SourceColumn]:
        return [c for c in self.columns if isinstance(c, SourceColumn)]

    @property
    def feature_columns(self) -> list[FeatureColumn]:
        return [c for c in self.columns if isinstance(c, FeatureColumn)]

    @property
    def function_columns(self) -> list[FunctionColumn]:
        return [c for c in self.columns if isinstance(c, FunctionColumn)]

    @property
    def output_columns(self) -> list[str]:
        """What the model receives, in order: the included columns."""
        return [c.output_name for c in self.columns if c.include]

    @property
    def required_columns(self) -> list[str]:
        """Columns every request must carry: the source columns, included or not."""
        return [c.name for c in self.source_columns]

    @property
    def lookup_key_columns(self) -> list[str]:
        """The source columns some lookup uses as a key, in spec order, each once."""
        keys = {k for f in self.feature_columns for k in f.lookup_key}
        return [c.name for c in self.source_columns if c.name in keys]

    @property
    def needed_features(self) -> list[FeatureColumn]:
        """The feature columns a request looks up: the included ones and those a function reads."""
        bound = {c for f in self.function_columns for c in f.bound_columns}
        return [f for f in self.feature_columns if f.include or f.output_name in bound]

    def table(self, name: str) -> TableInfo:
        return self._by_table[name]

    def function(self, udf_name: str) -> FunctionDef:
        return self._by_function[udf_name]

    # ---- YAML -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The YAML document, in Databricks' key order."""
        columns: list[dict[str, Any]] = []
        order = 2
        for column in self.columns:
            attrs: dict[str, Any] = {}
            if isinstance(column, FeatureColumn):
                attrs["table_name"] = column.table_name
                attrs["feature_name"] = column.feature_name
                attrs["lookup_key"] = list(column.lookup_key)
                if column.timestamp_lookup_key:
                    attrs["timestamp_lookup_key"] = list(column.timestamp_lookup_key)
                if column.default_value is not None:
                    attrs["default_value"] = column.default_value
            elif isinstance(column, FunctionColumn):
                attrs["udf_name"] = column.udf_name
                attrs["input_bindings"] = dict(column.input_bindings)
            if column.data_type is not None:
                attrs["data_type"] = column.data_type
            if not column.include:
                attrs["include"] = False
            if isinstance(column, FunctionColumn):
                attrs["topological_ordering"] = order
                attrs["source"] = ON_DEMAND_FEATURE
                order += 1
            elif isinstance(column, FeatureColumn):
                attrs["topological_ordering"] = 1
                attrs["source"] = FEATURE_STORE
            else:
                attrs["topological_ordering"] = 0
                attrs["source"] = TRAINING_DATA
            columns.append({column.output_name: attrs})
        tables: list[dict[str, Any]] = []
        for table in self.tables:
            table_attrs: dict[str, Any] = {}
            if table.table_version is not None:
                table_attrs["table_version"] = table.table_version
            if table.lookback_window is not None:
                table_attrs["lookback_window"] = float(table.lookback_window)
            tables.append({table.table_name: table_attrs})
        doc: dict[str, Any] = {"input_columns": columns, "input_tables": tables}
        if self.functions:
            functions = []
            for definition in self.functions:
                body = definition.to_dict()
                del body["name"]
                functions.append({definition.name: body})
            doc["input_functions"] = functions
        # int64 fields are strings in the protobuf JSON mapping Databricks writes with.
        doc["workspace_id"] = str(self.workspace_id)
        doc["feature_store_client_version"] = self.feature_store_client_version
        doc["serialization_version"] = self.serialization_version
        return doc

    @classmethod
    def from_dict(cls, doc: Any) -> FeatureSpec:
        """Parse a YAML document; raises :class:`InvalidParameterValue` saying what is wrong."""
        if not isinstance(doc, dict):
            raise InvalidParameterValue("feature_spec.yaml must hold a mapping.")
        columns: list[Column] = []
        for entry in _entries(doc.get("input_columns"), "input_columns"):
            name, attrs = entry
            source = attrs.get("source")
            include = bool(attrs.get("include", True))
            data_type = attrs.get("data_type")
            data_type = str(data_type) if data_type is not None else None
            if source == TRAINING_DATA:
                columns.append(SourceColumn(name, data_type, include))
            elif source == FEATURE_STORE:
                default = attrs.get("default_value")
                columns.append(
                    FeatureColumn(
                        output_name=name,
                        table_name=str(_required(attrs, "table_name", name)),
                        feature_name=str(_required(attrs, "feature_name", name)),
                        lookup_key=tuple(str(k) for k in _as_list(_required(attrs, "lookup_key", name))),
                        timestamp_lookup_key=tuple(
                            str(k) for k in _as_list(attrs.get("timestamp_lookup_key"))
                        ),
                        default_value=None if default is None else str(default),
                        data_type=data_type,
                        include=include,
                    )
                )
            elif source == ON_DEMAND_FEATURE:
                bindings = attrs.get("input_bindings") or {}
                if not isinstance(bindings, dict):
                    raise InvalidParameterValue(f"input_bindings of column {name!r} must be a mapping.")
                columns.append(
                    FunctionColumn(
                        output_name=name,
                        udf_name=str(_required(attrs, "udf_name", name)).lower(),
                        input_bindings=tuple((str(p), str(c)) for p, c in bindings.items()),
                        data_type=data_type,
                        include=include,
                    )
                )
            else:
                raise InvalidParameterValue(f"Column {name!r} has an unknown source {source!r}.")
        tables = []
        for name, attrs in _entries(doc.get("input_tables") or [], "input_tables"):
            lookback = attrs.get("lookback_window")
            version = attrs.get("table_version")
            tables.append(
                TableInfo(
                    name,
                    lookback_window=None if lookback is None else float(lookback),
                    table_version=None if version is None else int(version),
                )
            )
        functions = []
        for name, attrs in _entries(doc.get("input_functions") or [], "input_functions"):
            if "source" not in attrs:
                raise InvalidParameterValue(
                    f"input_functions entry {name} carries no definition (a spec written by Databricks "
                    "names Unity Catalog functions, which modelport cannot read)."
                )
            functions.append(FunctionDef.from_dict({**attrs, "name": name}))
        return cls(
            columns=tuple(columns),
            tables=tuple(tables),
            functions=tuple(functions),
            serialization_version=int(doc.get("serialization_version", SERIALIZATION_VERSION)),
            feature_store_client_version=str(doc.get("feature_store_client_version", "")),
            workspace_id=int(doc.get("workspace_id", 0) or 0),
        )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    @classmethod
    def from_yaml(cls, text: str) -> FeatureSpec:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidParameterValue(f"feature_spec.yaml is not valid YAML: {exc}") from None
        return cls.from_dict(doc)

    def save(self, directory: str | Path) -> Path:
        """Write ``feature_spec.yaml`` into ``directory``; returns the file's path."""
        path = Path(directory) / FEATURE_SPEC_FILE
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> FeatureSpec:
        """Read ``feature_spec.yaml`` from ``directory``."""
        return cls.from_yaml((Path(directory) / FEATURE_SPEC_FILE).read_text(encoding="utf-8"))


def _entries(value: Any, what: str) -> Iterable[tuple[str, dict[str, Any]]]:
    if not isinstance(value, list):
        raise InvalidParameterValue(f"{what} must be a list.")
    for entry in value:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise InvalidParameterValue(f"Each entry of {what} must be a one-key mapping; got {entry!r}.")
        ((name, attrs),) = entry.items()
        yield str(name), dict(attrs or {})


def _required(attrs: dict[str, Any], key: str, column: str) -> Any:
    if attrs.get(key) in (None, "", []):
        raise InvalidParameterValue(f"Feature column {column!r} lacks {key}.")
    return attrs[key]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
