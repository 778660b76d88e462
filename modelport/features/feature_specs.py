"""Feature specs for feature-serving endpoints: built from lookups and functions, described by
the server.

:func:`serving_spec` is what ``FeatureEngineeringClient.create_feature_spec`` builds, as
Databricks' ``create_feature_spec`` does. There is no training DataFrame, so the source columns
are the lookup keys (and timestamp lookup keys) the features need, typed as the tables' primary
keys (and timestamp keys) are, then the request-time inputs of the feature functions (the
columns they read that no lookup or earlier function gives), typed as the functions'
parameters. Then come the features, typed by the tables' schemas as they are now, with their
renames and defaults, and the function outputs in order. ``exclude_columns`` leaves outputs out
of the answer: an excluded feature is dropped (unless a function reads it), an excluded source
column is still required in a query but not echoed.

The checks of :func:`~modelport.features.training.resolve_lookups` and
:func:`~modelport.features.training.resolve_functions` apply (keys, feature names, renames,
defaults, bindings), and a column two tables (or a table and a function) type differently is
refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from modelport.errors import InvalidParameterValue
from modelport.features.entities import FeatureFunction, FeatureLookup, FeatureTable
from modelport.features.training import build_feature_spec, resolve_functions, resolve_lookups
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.feature_spec import FeatureSpec, SourceColumn, arrow_type, spark_type

__all__ = ["FeatureSpecInfo", "serving_spec"]


def _spark(table: FeatureTable, column: str) -> str | None:
    text = table.column_type(column)
    if text is None:
        return None
    arrow = arrow_type(text)
    return spark_type(arrow) if arrow is not None else text


def _key_types(lookups: Sequence[FeatureLookup], tables: dict[str, FeatureTable]) -> dict[str, str | None]:
    """The source columns the lookups need, in order, each typed as the table column it matches."""
    types: dict[str, str | None] = {}
    origin: dict[str, str] = {}

    def add(column: str, table: FeatureTable, table_column: str) -> None:
        kind = _spark(table, table_column)
        if column in types and types[column] != kind:
            raise InvalidParameterValue(
                f"Lookup key '{column}' is {types[column]} for feature table '{origin[column]}' and "
                f"{kind} for '{table.name}': one column cannot be both."
            )
        types[column] = kind
        origin.setdefault(column, table.name)

    for lookup in lookups:
        table = tables[lookup.table_name]
        for column, primary in zip(lookup.lookup_key, table.lookup_keys, strict=False):
            add(column, table, primary)
        if lookup.timestamp_lookup_key is not None and table.timestamp_keys:
            add(lookup.timestamp_lookup_key, table, table.timestamp_keys[0])
    return types


def _request_inputs(
    functions: Sequence[FeatureFunction], definitions: dict[str, FunctionDef], produced: set[str]
) -> dict[str, str]:
    """The columns the functions read that neither a lookup nor an earlier function gives (what
    a query carries for them), each typed as the first parameter that reads it."""
    inputs: dict[str, str] = {}
    made = set(produced)
    for function in functions:
        definition = definitions.get(function.udf_name)
        for parameter, kind in definition.parameters if definition is not None else ():
            column = function.input_bindings.get(parameter, parameter)
            if column not in made:
                inputs.setdefault(column, kind)
        made.add(function.output_name)
    return inputs


def serving_spec(
    features: Sequence[FeatureLookup | FeatureFunction],
    tables: dict[str, FeatureTable],
    exclude_columns: Sequence[str] = (),
    client_version: str = "modelport",
    definitions: dict[str, FunctionDef] | None = None,
) -> FeatureSpec:
    """The spec of a feature-serving endpoint (see the module docstring). ``tables`` holds each
    table the lookups name and ``definitions`` each function the functions name, as the server
    describes them now."""
    if not features:
        raise InvalidParameterValue("features must hold at least one FeatureLookup or FeatureFunction.")
    for item in features:
        if not isinstance(item, FeatureLookup | FeatureFunction):
            raise InvalidParameterValue(
                f"features must hold FeatureLookup or FeatureFunction objects; got {type(item).__name__}."
            )
    for name in exclude_columns:
        if not isinstance(name, str):
            raise InvalidParameterValue(f"exclude_columns must hold column names; got {name!r}.")
    lookups = [f for f in features if isinstance(f, FeatureLookup)]
    functions = [f for f in features if isinstance(f, FeatureFunction)]
    definitions = definitions or {}
    unknown = sorted({f.udf_name for f in functions} - set(definitions))
    if unknown:
        raise InvalidParameterValue(f"No definition was given for the feature function(s) {unknown}.")
    keys = list(dict.fromkeys([*(k for lk in lookups for k in lk.lookup_key), *_timestamps(lookups)]))
    resolved = resolve_lookups(lookups, tables, keys)
    types = _key_types(lookups, tables)
    inputs = _request_inputs(functions, definitions, {o for lookup in resolved for o in lookup.outputs})
    for column, kind in inputs.items():
        if types.setdefault(column, kind) != kind:
            raise InvalidParameterValue(
                f"Column '{column}' is {types[column]} as a lookup key and {kind} as a feature function's "
                "input: one column cannot be both."
            )
    sources = list(types)
    computed = resolve_functions(functions, definitions, sources, resolved)
    frame = pd.DataFrame({name: pd.Series([], dtype=object) for name in sources})
    spec = build_feature_spec(
        frame, resolved, [], list(exclude_columns), client_version=client_version, functions=computed
    )
    columns = tuple(
        dataclasses.replace(c, data_type=types.get(c.name)) if isinstance(c, SourceColumn) else c
        for c in spec.columns
    )
    if not any(c.include for c in columns if not isinstance(c, SourceColumn)):
        raise InvalidParameterValue(
            "exclude_columns leaves out every feature: the spec would look nothing up."
        )
    return FeatureSpec(
        columns,
        spec.tables,
        spec.functions,
        feature_store_client_version=spec.feature_store_client_version,
    )


def _timestamps(lookups: Sequence[FeatureLookup]) -> list[str]:
    return [lk.timestamp_lookup_key for lk in lookups if lk.timestamp_lookup_key is not None]


@dataclass(frozen=True)
class FeatureSpecInfo:
    """A feature spec as the server keeps it (``GET /api/2.0/feature-engineering/feature-specs/{name}``).

    ``inputs`` are the columns each query row must carry; ``outputs`` the columns each answer row
    has, in order.
    """

    name: str
    owner: str
    created_ms: int
    tables: list[str]
    functions: list[str]
    inputs: list[str]
    outputs: list[str]
    feature_spec: FeatureSpec
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> FeatureSpecInfo:
        return cls(
            name=str(body["name"]),
            owner=str(body.get("owner") or ""),
            created_ms=int(body.get("created_ms") or 0),
            tables=[str(t) for t in body.get("tables") or []],
            functions=[str(f) for f in body.get("functions") or []],
            inputs=[str(c) for c in body.get("inputs") or []],
            outputs=[str(c) for c in body.get("outputs") or []],
            feature_spec=FeatureSpec.from_dict(body["feature_spec"]),
            raw=dict(body),
        )
