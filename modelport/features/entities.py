"""What a user builds and gets back: :class:`FeatureLookup`, :class:`FeatureFunction` and
:class:`FeatureTable`.

``FeatureLookup`` takes Databricks' arguments and applies its validation at construction
(``databricks.ml_features.entities.feature_lookup``): one timestamp lookup key at most, a
non-negative ``lookback_window`` only with a timestamp lookup key, ``default_values`` keyed by
the *output* (renamed) name and only for listed features. Checks that need the feature table
(keys, feature names, types) happen in :func:`modelport.features.training.resolve_lookups`.

``FeatureFunction`` names a feature function registered with modelport
(``FeatureEngineeringClient.create_function``) and binds its parameters to columns; checks that
need the definition happen in :func:`modelport.features.training.resolve_functions`.

Mistakes raise :class:`~modelport.errors.InvalidParameterValue` naming the argument, where
Databricks raises ``ValueError``; an unknown keyword raises ``TypeError`` as there.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import InvalidParameterValue
from modelport.tables.feature_functions import function_name
from modelport.tables.names import split_name

__all__ = ["DEFAULT_VALUE_TYPES", "FeatureFunction", "FeatureLookup", "FeatureTable", "feature_table_name"]

#: Python types a default value may have (Databricks: INT, FLOAT, BOOLEAN, STRING, DOUBLE, LONG, SHORT).
DEFAULT_VALUE_TYPES = (bool, int, float, str)


def _as_list(value: str | list[str] | tuple[str, ...] | None, argument: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidParameterValue(f"{argument} must hold non-empty column names; got {item!r}.")
    return items


def feature_table_name(name: str) -> str:
    """A feature table's ``catalog.schema.table`` name, checked and lower-cased."""
    if not isinstance(name, str):
        raise InvalidParameterValue(f"table_name must be a string; got {name!r}.")
    return ".".join(split_name(name))


class FeatureLookup:
    """Features of one feature table, joined to a training set by ``lookup_key``.

    ``lookup_key`` names columns of the DataFrame given to ``create_training_set``, matched in
    order to the table's primary keys (the timestamp key apart). ``feature_names=None`` takes
    every column of the table that is not a key, as it is when the training set is created.
    With ``timestamp_lookup_key`` the join is point-in-time: the latest row at or before that
    column's time, and no older than ``lookback_window`` when one is given (``timedelta(0)``:
    exact matches only). ``default_values`` fill a feature that found no value, in training
    and at serving alike.
    """

    def __init__(
        self,
        table_name: str,
        lookup_key: str | list[str],
        *,
        feature_names: str | list[str] | None = None,
        rename_outputs: dict[str, str] | None = None,
        timestamp_lookup_key: str | list[str] | None = None,
        lookback_window: datetime.timedelta | None = None,
        default_values: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # Databricks' deprecated spellings, still accepted there.
        feature_name = kwargs.pop("feature_name", None)
        output_name = kwargs.pop("output_name", None)
        if kwargs:
            raise TypeError(f"FeatureLookup got unexpected keyword argument(s): {sorted(kwargs)}")

        self._table_name = feature_table_name(table_name)
        self._lookup_key = _as_list(lookup_key, "lookup_key")
        if not self._lookup_key:
            raise InvalidParameterValue("lookup_key must name at least one column.")

        timestamp_keys = _as_list(timestamp_lookup_key, "timestamp_lookup_key")
        if len(timestamp_keys) > 1:
            raise InvalidParameterValue("Setting multiple timestamp lookup keys is not supported.")
        self._timestamp_lookup_key = timestamp_keys[0] if timestamp_keys else None

        if rename_outputs is not None and not isinstance(rename_outputs, dict):
            raise InvalidParameterValue(
                f"Unexpected type for rename_outputs: {type(rename_outputs).__name__}."
            )
        self._rename_outputs = dict(rename_outputs or {})
        for source, target in self._rename_outputs.items():
            if not isinstance(source, str) or not isinstance(target, str) or not target:
                raise InvalidParameterValue(
                    f"rename_outputs must map feature names to non-empty names; got {source!r}: {target!r}."
                )

        self._feature_names = _as_list(feature_names, "feature_names")
        if feature_name is not None:
            if self._feature_names:
                raise InvalidParameterValue("Use either feature_names or feature_name, but not both.")
            self._feature_names = _as_list(feature_name, "feature_name")
        if output_name is not None and len(self._feature_names) == 1:
            if self._rename_outputs:
                raise InvalidParameterValue("Use either output_name or rename_outputs, but not both.")
            self._rename_outputs[self._feature_names[0]] = output_name
        unknown_renames = [
            f for f in self._rename_outputs if self._feature_names and f not in self._feature_names
        ]
        if unknown_renames:
            raise InvalidParameterValue(
                f"rename_outputs names features {unknown_renames} that are not in feature_names "
                f"{self._feature_names}."
            )

        if lookback_window is not None:
            if self._timestamp_lookup_key is None:
                raise InvalidParameterValue(
                    f"Unexpected lookback_window value: {lookback_window}, lookback windows can only be "
                    "applied on time series feature tables. Use timestamp_lookup_key to perform "
                    "point-in-time lookups with lookback window."
                )
            if not isinstance(lookback_window, datetime.timedelta) or lookback_window < datetime.timedelta(0):
                raise InvalidParameterValue(
                    f"Unexpected value for lookback_window: {lookback_window}, only non-negative "
                    "datetime.timedelta allowed."
                )
        self._lookback_window = lookback_window

        if default_values is not None and not isinstance(default_values, dict):
            raise InvalidParameterValue("default_values must be a dictionary.")
        self._default_values = dict(default_values or {})
        renamed = [self._rename_outputs.get(f, f) for f in self._feature_names]
        for key, value in self._default_values.items():
            if key in self._rename_outputs:
                raise InvalidParameterValue(
                    f"Feature {key} is being renamed to {self._rename_outputs[key]}, please use the "
                    "renamed feature name to set default value."
                )
            if self._feature_names and key not in renamed:
                raise InvalidParameterValue(
                    f"Feature {key} is not specified by the feature_names, must be one of {renamed}."
                )
            if not isinstance(value, DEFAULT_VALUE_TYPES):
                raise InvalidParameterValue(
                    f"default_values[{key!r}] must be an int, float, bool or str; got {type(value).__name__}."
                )

    @property
    def table_name(self) -> str:
        return self._table_name

    @property
    def lookup_key(self) -> list[str]:
        return list(self._lookup_key)

    @property
    def feature_names(self) -> list[str]:
        """The listed features; empty when every non-key column of the table is meant."""
        return list(self._feature_names)

    @property
    def rename_outputs(self) -> dict[str, str]:
        return dict(self._rename_outputs)

    @property
    def timestamp_lookup_key(self) -> str | None:
        return self._timestamp_lookup_key

    @property
    def lookback_window(self) -> datetime.timedelta | None:
        return self._lookback_window

    @property
    def default_values(self) -> dict[str, Any]:
        return dict(self._default_values)

    def output_name(self, feature_name: str) -> str:
        """The column a feature becomes in the training set (renamed, or its own name)."""
        return self._rename_outputs.get(feature_name, feature_name)

    def __repr__(self) -> str:
        return (
            f"FeatureLookup(table_name={self._table_name!r}, lookup_key={self._lookup_key!r}, "
            f"feature_names={self._feature_names!r}, timestamp_lookup_key={self._timestamp_lookup_key!r})"
        )


class FeatureFunction:
    """A feature computed by a registered feature function (Databricks' ``FeatureFunction``).

    ``udf_name`` is the function's ``catalog.schema.function`` (lower-cased). ``input_bindings``
    maps a parameter of the function to the column it reads: a column of the training DataFrame
    (at serving: of the request), a feature of a ``FeatureLookup``, or the output of a
    ``FeatureFunction`` listed before this one; a parameter it leaves out reads the column of
    its own name. ``output_name`` defaults to ``udf_name``, as in Databricks.
    """

    def __init__(
        self,
        udf_name: str | None = None,
        input_bindings: dict[str, str] | None = None,
        output_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"FeatureFunction got unexpected keyword argument(s): {sorted(kwargs)}")
        if udf_name is None:
            raise InvalidParameterValue("FeatureFunction needs udf_name.")
        self._udf_name = function_name(udf_name)
        if input_bindings is not None and not isinstance(input_bindings, dict):
            raise InvalidParameterValue(
                "input_bindings must map parameter names to column names; "
                f"got {type(input_bindings).__name__}."
            )
        self._input_bindings = dict(input_bindings or {})
        for parameter, column in self._input_bindings.items():
            if not isinstance(parameter, str) or not isinstance(column, str) or not column:
                raise InvalidParameterValue(
                    f"input_bindings must map parameter names to column names; got {parameter!r}: {column!r}."
                )
        if output_name is not None and (not isinstance(output_name, str) or not output_name):
            raise InvalidParameterValue(f"output_name must be a non-empty string; got {output_name!r}.")
        self._output_name = output_name or self._udf_name

    @property
    def udf_name(self) -> str:
        return self._udf_name

    @property
    def input_bindings(self) -> dict[str, str]:
        return dict(self._input_bindings)

    @property
    def output_name(self) -> str:
        return self._output_name

    def __repr__(self) -> str:
        return (
            f"FeatureFunction(udf_name={self._udf_name!r}, input_bindings={self._input_bindings!r}, "
            f"output_name={self._output_name!r})"
        )


@dataclass(frozen=True)
class FeatureTable:
    """A feature table as the server describes it (``GET /api/2.0/feature-engineering/tables/{name}``).

    ``features`` are the columns that are neither primary nor timestamp keys. ``online`` is the
    online store's state of the table (``None`` when it is not published).
    """

    name: str
    primary_keys: list[str]
    timestamp_keys: list[str]
    description: str
    features: list[str]
    #: ``[{"name", "type" (an Arrow type, e.g. "double"), "nullable"}]``, in table order.
    columns: list[dict[str, Any]]
    #: The Delta table's current version.
    version: int
    #: Creation and last-commit times, in milliseconds since the epoch (the last is the freshness).
    creation_timestamp: int
    update_timestamp: int
    online: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> FeatureTable:
        """Build from the server's table info (``FeatureTableInfo.to_json()`` plus ``online``)."""
        primary = [str(k) for k in body.get("primary_keys") or []]
        timestamp = [str(k) for k in body.get("timestamp_keys") or []]
        columns = [dict(c) for c in body.get("columns") or []]
        keys = set(primary) | set(timestamp)
        return cls(
            name=str(body["name"]),
            primary_keys=primary,
            timestamp_keys=timestamp,
            description=str(body.get("description") or ""),
            features=[str(c["name"]) for c in columns if c["name"] not in keys],
            columns=columns,
            version=int(body.get("version", 0)),
            creation_timestamp=int(body.get("created_ms", 0)),
            update_timestamp=int(body.get("updated_ms", 0)),
            online=body.get("online"),
            raw=dict(body),
        )

    @property
    def lookup_keys(self) -> list[str]:
        """The primary keys a lookup gives, in order (the timestamp key apart)."""
        return [k for k in self.primary_keys if k not in self.timestamp_keys]

    def column_type(self, name: str) -> str | None:
        """The Arrow type (as text) of column ``name``, or ``None`` when the table lacks it."""
        for column in self.columns:
            if column["name"] == name:
                return str(column["type"])
        return None
