"""Custom metrics (Databricks ``MonitorMetric``): rendering their Jinja-style SQL for DuckDB.

What is supported:

- **AGGREGATE**: ``definition`` is a SQL aggregate expression evaluated over the rows of each
  window x slice x model id, once per entry of ``input_columns``; ``{{input_column}}`` is replaced
  by that column (quoted). With ``input_columns=[":table"]`` the value lands on the ``:table`` row.
  ``{{prediction_col}}``, ``{{label_col}}``, ``{{model_id_col}}``, ``{{timestamp_col}}`` and
  ``{{prediction_proba_col}}`` are replaced by the monitor's columns.
- **DERIVED**: ``definition`` is a SQL expression over other metrics of the same profile row,
  referred to by name: the built-in ones (``count``, ``avg``, ``stddev``, ``num_nulls``, ...) and
  AGGREGATE/DERIVED metrics defined before it.
- **DRIFT**: ``definition`` refers to the two rows being compared as ``{{current_df}}.<metric>`` and
  ``{{base_df}}.<metric>`` (e.g. ``{{current_df}}.avg - {{base_df}}.avg``), for any profile metric;
  the value lands on the drift row.

Definitions are Databricks (Spark) SQL and are translated with sqlglot; the result is cast to
``output_data_type``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from modelport.errors import InvalidParameterValue
from modelport.monitoring.sqltext import ident, literal, output_type, spark_to_duckdb

if TYPE_CHECKING:
    from modelport.monitoring.plan import CustomMetric, ProfileSpec

__all__ = [
    "AGGREGATE",
    "DERIVED",
    "DRIFT",
    "TABLE",
    "RenderedMetric",
    "apply_derived",
    "apply_drift",
    "render",
]

AGGREGATE = "CUSTOM_METRIC_TYPE_AGGREGATE"
DERIVED = "CUSTOM_METRIC_TYPE_DERIVED"
DRIFT = "CUSTOM_METRIC_TYPE_DRIFT"
TABLE = ":table"
_TYPES = {AGGREGATE, DERIVED, DRIFT}
# A placeholder, with the backticks Databricks' examples put around it ("`{{input_column}}`").
_VAR = re.compile(r"(`?)\{\{\s*([A-Za-z_]+)\s*\}\}(`?)")
#: Names the engine reserves in its own tables.
_RESERVED = re.compile(r"^__mp_")


@dataclass(frozen=True)
class RenderedMetric:
    """A custom metric ready to run: one DuckDB SQL text per input column."""

    name: str
    type: str
    sql_by_column: dict[str, str]
    duckdb_type: str
    arrow_type: pa.DataType


def _spark_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def render(metric: CustomMetric, spec: ProfileSpec) -> RenderedMetric:
    """The DuckDB SQL of ``metric`` for each of its input columns; InvalidParameterValue if malformed."""
    kind = metric.type.upper()
    if not kind.startswith("CUSTOM_METRIC_TYPE_"):
        kind = "CUSTOM_METRIC_TYPE_" + kind
    if kind not in _TYPES:
        raise InvalidParameterValue(f"Custom metric {metric.name!r}: unknown type {metric.type!r}")
    if not metric.name or _RESERVED.match(metric.name):
        raise InvalidParameterValue(f"Custom metric name {metric.name!r} is not allowed")
    if not metric.input_columns:
        raise InvalidParameterValue(f"Custom metric {metric.name!r} needs input_columns")
    duck_type, arrow_type = output_type(metric.output_data_type)
    names = {
        "prediction_col": spec.prediction_col,
        "label_col": spec.label_col,
        "model_id_col": spec.model_id_col,
        "timestamp_col": spec.timestamp_col,
        "prediction_proba_col": spec.prediction_proba_col,
    }
    sql_by_column = {}
    for column in metric.input_columns:

        def substitute(match: re.Match[str], column: str = column) -> str:
            var = match.group(2)
            if var in ("current_df", "base_df") or match.group(1) != match.group(3):
                # Only identifiers take the surrounding backticks.
                prefix, suffix = match.group(1), match.group(3)
            else:
                prefix = suffix = ""
            if var == "input_column":
                if column == TABLE:
                    raise InvalidParameterValue(
                        f"Custom metric {metric.name!r} uses {{{{input_column}}}} with input_columns ':table'"
                    )
                return _spark_ident(column)
            if var in ("current_df", "base_df") and kind == DRIFT:
                return prefix + ("__mp_cur" if var == "current_df" else "__mp_base") + suffix
            value = names.get(var)
            if value is None:
                raise InvalidParameterValue(
                    f"Custom metric {metric.name!r}: {{{{{var}}}}} is not defined for this monitor"
                )
            return _spark_ident(value)

        text = _VAR.sub(substitute, metric.definition)
        sql_by_column[column] = f"CAST(({spark_to_duckdb(text)}) AS {duck_type})"
    return RenderedMetric(metric.name, kind, sql_by_column, duck_type, arrow_type)


def _case_by_column(m: RenderedMetric, column_ref: str) -> str:
    whens = " ".join(f"WHEN {column_ref} = {literal(c)} THEN {sql}" for c, sql in m.sql_by_column.items())
    return f"CASE {whens} END"


def apply_derived(
    con: duckdb.DuckDBPyConnection, metrics: list[RenderedMetric], profile: pa.Table
) -> pa.Table:
    """Fill the DERIVED metrics' columns of ``profile`` (rows numbered by ``__mp_row``), in order."""
    for m in metrics:
        if m.type != DERIVED:
            continue
        con.register("__mp_profile", profile)
        try:
            values = (
                con.sql(
                    f"SELECT {_case_by_column(m, 'column_name')} AS v FROM __mp_profile ORDER BY __mp_row"
                )
                .to_arrow_table()
                .column("v")
            )
        except duckdb.Error as exc:
            raise InvalidParameterValue(
                f"Derived custom metric {m.name!r} could not be computed: {exc}"
            ) from exc
        finally:
            con.unregister("__mp_profile")
        profile = profile.set_column(
            profile.schema.get_field_index(m.name), m.name, values.cast(m.arrow_type)
        )
    return profile


def apply_drift(
    con: duckdb.DuckDBPyConnection, metrics: list[RenderedMetric], profile: pa.Table, drift: pa.Table
) -> pa.Table:
    """Append the DRIFT metrics to ``drift``, whose rows point at their two profile rows
    (``__mp_cur_row``, ``__mp_cmp_row``)."""
    metrics = [m for m in metrics if m.type == DRIFT]
    if not metrics:
        return drift
    drift = drift.append_column("__mp_drow", pa.array(np.arange(drift.num_rows), pa.int64()))
    con.register("__mp_profile", profile)
    con.register("__mp_drift", drift)
    try:
        exprs = ", ".join(f"{_case_by_column(m, 'd.column_name')} AS {ident(m.name)}" for m in metrics)
        values = con.sql(
            f"SELECT {exprs} FROM __mp_drift d "
            "LEFT JOIN __mp_profile __mp_cur ON __mp_cur.__mp_row = d.__mp_cur_row "
            "LEFT JOIN __mp_profile __mp_base ON __mp_base.__mp_row = d.__mp_cmp_row ORDER BY d.__mp_drow"
        ).to_arrow_table()
    except duckdb.Error as exc:
        raise InvalidParameterValue(f"A drift custom metric could not be computed: {exc}") from exc
    finally:
        con.unregister("__mp_profile")
        con.unregister("__mp_drift")
    drift = drift.drop_columns(["__mp_drow"])
    for m in metrics:
        drift = drift.append_column(pa.field(m.name, m.arrow_type), values.column(m.name).cast(m.arrow_type))
    return drift
