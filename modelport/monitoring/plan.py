"""The monitor's definition (Window, CustomMetric, ProfileSpec) and its plan: the spec checked
against the source once (column types, canonical granularities, resolved slices, rendered custom
metrics, classes of a classifier)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

from modelport.errors import InvalidParameterValue
from modelport.monitoring import custom_metrics
from modelport.monitoring.granularity import Granularity, granularity
from modelport.monitoring.profile import ColumnInfo, column_info
from modelport.monitoring.schemas import DRIFT_SCHEMA, PROFILE_SCHEMA
from modelport.monitoring.slicing import Slice, resolve_slices
from modelport.monitoring.sqltext import describe, ident

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "CustomMetric",
    "Plan",
    "ProfileSpec",
    "Window",
    "make_plan",
    "timestamp_sql",
]

CLASSIFICATION = "PROBLEM_TYPE_CLASSIFICATION"
REGRESSION = "PROBLEM_TYPE_REGRESSION"
_PROFILE_TYPES = {"inferencelog": "InferenceLog", "timeseries": "TimeSeries", "snapshot": "Snapshot"}


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)`` in UTC (tz-aware) of one granularity."""

    start: datetime
    end: datetime
    granularity: str


@dataclass(frozen=True)
class CustomMetric:
    """A Databricks ``MonitorMetric`` (see :mod:`~modelport.monitoring.custom_metrics`)."""

    name: str
    definition: str
    input_columns: tuple[str, ...]
    output_data_type: str
    type: str


@dataclass(frozen=True)
class ProfileSpec:
    """What to profile: the monitor's profile type, columns, granularities, slices, metrics."""

    profile_type: str
    timestamp_col: str | None
    granularities: tuple[str, ...]
    columns: tuple[str, ...]
    problem_type: str | None = None
    prediction_col: str | None = None
    label_col: str | None = None
    model_id_col: str | None = None
    prediction_proba_col: str | None = None
    slicing_exprs: tuple[str, ...] = ()
    custom_metrics: tuple[CustomMetric, ...] = ()


@dataclass
class Plan:
    """A spec checked against its source: column types, canonical granularities, slices, metrics."""

    spec: ProfileSpec
    profile_type: str
    problem_type: str | None
    source_types: dict[str, str]
    columns: list[ColumnInfo]
    granularities: list[Granularity]
    slices: list[Slice]
    metrics: list[custom_metrics.RenderedMetric]
    ts_sql: str | None
    classes: list[str]
    class_type: str | None

    def kept_columns(self, rel_types: dict[str, str]) -> str:
        """The SELECT list of the relation's columns the computation reads (all of them when an
        aggregate custom metric may refer to any column)."""
        spec = self.spec
        if any(m.type == custom_metrics.AGGREGATE for m in self.metrics):
            return "s.*"
        roles = (
            spec.timestamp_col,
            spec.prediction_col,
            spec.label_col,
            spec.model_id_col,
            spec.prediction_proba_col,
        )
        wanted = [c.name for c in self.columns] + [c for c in roles if c is not None]
        wanted += [c for m in self.metrics for c in m.sql_by_column if c != custom_metrics.TABLE]
        kept = [c for c in dict.fromkeys(wanted) if c in rel_types]
        return ", ".join(f"s.{ident(c)}" for c in kept) if kept else "NULL AS __mp_none"

    @property
    def custom_fields(self) -> list[pa.Field]:
        return [pa.field(m.name, m.arrow_type) for m in self.metrics if m.type != custom_metrics.DRIFT]

    @property
    def drift_fields(self) -> list[pa.Field]:
        return [pa.field(m.name, m.arrow_type) for m in self.metrics if m.type == custom_metrics.DRIFT]


def timestamp_sql(name: str, duck_type: str) -> str:
    upper = duck_type.upper()
    col = ident(name)
    if upper == "TIMESTAMP WITH TIME ZONE":
        return f"timezone('UTC', {col})"
    if upper.startswith("TIMESTAMP") or upper == "DATE":
        return f"CAST({col} AS TIMESTAMP)"
    if upper in ("BIGINT", "INTEGER", "HUGEINT", "UBIGINT", "UINTEGER"):
        return f"make_timestamp(CAST({col} AS BIGINT) * 1000)"
    raise InvalidParameterValue(
        f"timestamp_col {name!r} has type {duck_type}: use a timestamp, a date or epoch milliseconds"
    )


def make_plan(con: duckdb.DuckDBPyConnection, source: str, spec: ProfileSpec, baseline: str | None) -> Plan:
    types = describe(con, source)
    profile_type = _PROFILE_TYPES.get(spec.profile_type.replace("_", "").lower())
    if profile_type is None:
        raise InvalidParameterValue(
            f"Unknown profile_type {spec.profile_type!r}: use InferenceLog, TimeSeries or Snapshot"
        )
    named = {
        "timestamp_col": spec.timestamp_col,
        "prediction_col": spec.prediction_col,
        "label_col": spec.label_col,
        "model_id_col": spec.model_id_col,
        "prediction_proba_col": spec.prediction_proba_col,
    }
    for role, name in [*named.items(), *(("columns", c) for c in spec.columns)]:
        if name is not None and name not in types:
            raise InvalidParameterValue(f"{role} {name!r} is not a column of the monitored table")
    problem_type = None
    if profile_type == "InferenceLog":
        problem_type = (spec.problem_type or "").upper()
        if not problem_type.startswith("PROBLEM_TYPE_"):
            problem_type = "PROBLEM_TYPE_" + problem_type.removeprefix("INFERENCE_PROBLEM_TYPE_")
        if problem_type not in (CLASSIFICATION, REGRESSION):
            raise InvalidParameterValue(f"Unknown problem_type {spec.problem_type!r}")
        if spec.prediction_col is None:
            raise InvalidParameterValue("An InferenceLog monitor needs prediction_col")
    ts_sql = None
    grans: list[Granularity] = []
    if profile_type != "Snapshot":
        if spec.timestamp_col is None:
            raise InvalidParameterValue(f"A {profile_type} monitor needs timestamp_col")
        ts_sql = timestamp_sql(spec.timestamp_col, types[spec.timestamp_col])
        if not spec.granularities:
            raise InvalidParameterValue(f"A {profile_type} monitor needs at least one granularity")
        seen: set[str] = set()
        for text in spec.granularities:
            g = granularity(text)
            if g.name not in seen:
                seen.add(g.name)
                grans.append(g)
    categorical = {spec.prediction_col, spec.label_col} if problem_type == CLASSIFICATION else set()
    columns = [column_info(c, types[c], categorical=c in categorical) for c in dict.fromkeys(spec.columns)]
    slices = resolve_slices(con, source, spec.slicing_exprs)
    metrics = [custom_metrics.render(m, spec) for m in spec.custom_metrics]
    names = [m.name for m in metrics]
    reserved = {f.name for f in PROFILE_SCHEMA} | {f.name for f in DRIFT_SCHEMA}
    for name in names:
        if names.count(name) > 1 or name in reserved:
            raise InvalidParameterValue(f"Custom metric name {name!r} is used twice or is a built-in metric")
    classes: list[str] = []
    class_type = None
    if problem_type == CLASSIFICATION and spec.label_col is not None:
        assert spec.prediction_col is not None
        rels = [source] + ([baseline] if baseline is not None else [])
        parts = []
        for rel in rels:
            rel_types = types if rel == source else describe(con, rel)
            for col in (spec.label_col, spec.prediction_col):
                if col in rel_types:
                    parts.append(f"SELECT {ident(col)} AS v FROM {rel}")
        union = " UNION ALL ".join(parts)
        class_type = describe(con, f"SELECT v FROM ({union})")["v"]
        rows = con.execute(
            f"SELECT CAST(v AS VARCHAR) FROM (SELECT DISTINCT v FROM ({union}) WHERE v IS NOT NULL) "
            "ORDER BY v"
        ).fetchall()
        classes = [str(r[0]) for r in rows]
    return Plan(
        spec, profile_type, problem_type, types, columns, grans, slices, metrics, ts_sql, classes, class_type
    )
