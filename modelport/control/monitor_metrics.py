"""The monitor pages' reads: the monitors a caller may see (with their newest drift), and a
monitor's metrics tables as compact series (``api/control/monitor_metrics.py`` answers them;
not part of the Databricks API, which reads the metrics tables through SQL).

Privileges: SELECT on the monitored table (to see the monitor: its 403, or 404 without a
monitor) and SELECT on the metrics table read (403 naming it). A metrics table not written yet
(no refresh has succeeded) answers empty series.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb
from deltalake import DeltaTable

from modelport.control.monitors import MonitorService
from modelport.control.table_acl import TableAccess
from modelport.errors import InvalidParameterValue, ModelportError
from modelport.monitoring import canonical_granularity
from modelport.spec.identity import Caller
from modelport.spec.table_privileges import TablePrivilege
from modelport.tables.names import split_name, table_uri
from modelport.tables.query import json_cell

__all__ = [
    "DRIFT_COLUMNS",
    "JS_DISTANCE",
    "KS_PVALUE",
    "MAX_ROWS",
    "PROFILE_COLUMNS",
    "list_for",
    "metrics_for",
]

MAX_ROWS = 20_000
#: A column drifts when its Jensen-Shannon distance reaches this, or its KS p-value is below
#: :data:`KS_PVALUE` (what the UI marks, and the list counts).
JS_DISTANCE = 0.1
KS_PVALUE = 0.05

_WINDOW = [
    'epoch_ms("window".start) AS window_start_ms',
    'epoch_ms("window"."end") AS window_end_ms',
]
#: Answer column -> SQL over the drift metrics table.
DRIFT_COLUMNS: dict[str, str] = {
    "window_cmp_start_ms": "epoch_ms(window_cmp.start)",
    "drift_type": "drift_type",
    "column_name": "column_name",
    "model_id": "model_id",
    "count_delta": "count_delta",
    "avg_delta": "avg_delta",
    "percent_null_delta": "percent_null_delta",
    "js_distance": "js_distance",
    "ks_statistic": "ks_test.statistic",
    "ks_pvalue": "ks_test.pvalue",
    "wasserstein_distance": "wasserstein_distance",
    "population_stability_index": "population_stability_index",
    "chi_squared_statistic": "chi_squared_test.statistic",
    "chi_squared_pvalue": "chi_squared_test.pvalue",
    "tv_distance": "tv_distance",
    "l_infinity_distance": "l_infinity_distance",
}
#: Answer column -> SQL over the profile metrics table.
PROFILE_COLUMNS: dict[str, str] = {
    "column_name": "column_name",
    "model_id": "model_id",
    "data_type": "data_type",
    "count": "count",
    "num_nulls": "num_nulls",
    "avg": "avg",
    "min": "min",
    "max": "max",
    "stddev": "stddev",
    "median": "median",
    "quantiles": "quantiles",
    "distinct_count": "distinct_count",
    "percent_null": "percent_null",
    "percent_zeros": "percent_zeros",
    "percent_distinct": "percent_distinct",
    "avg_length": "avg_length",
    "accuracy_score": "accuracy_score",
    "precision_weighted": "precision.weighted",
    "recall_weighted": "recall.weighted",
    "f1_score_macro": "f1_score.macro",
    "f1_score_weighted": "f1_score.weighted",
    "log_loss": "log_loss",
    "roc_auc_score": "roc_auc_score",
    "mean_squared_error": "mean_squared_error",
    "root_mean_squared_error": "root_mean_squared_error",
    "mean_absolute_error": "mean_absolute_error",
    "mean_absolute_percentage_error": "mean_absolute_percentage_error",
    "r2_score": "r2_score",
}
_KINDS = ("drift", "profile")
_DRIFT_TYPES = ("CONSECUTIVE", "BASELINE")


def _open(root: str, name: str) -> DeltaTable | None:
    """The metrics table, or None before its first write."""
    uri = table_uri(root, *split_name(name))
    if not DeltaTable.is_deltatable(uri):
        return None
    return DeltaTable(uri)


def _select(table: DeltaTable, sql: str, params: list[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` over the table registered as ``m`` (a read-only in-memory DuckDB)."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("m", table.to_pyarrow_dataset())
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description or []]
        return names, cur.fetchall()
    finally:
        con.close()


def _columns_sql(table: DeltaTable, wanted: Mapping[str, str]) -> str:
    """The SELECT list of ``wanted`` whose source column exists (older tables may lack some)."""
    have = set(table.schema().to_arrow().names)
    parts = []
    for alias, expr in wanted.items():
        base = expr.split(".")[0]
        parts.append(f"{expr} AS {alias}" if base in have else f"NULL AS {alias}")
    return ", ".join(_WINDOW + parts)


def _slice_filter(slice_key: str | None, slice_value: str | None) -> tuple[str, list[Any]]:
    if not slice_key:
        return "slice_key IS NULL", []
    if slice_value is None:
        raise InvalidParameterValue("'slice_value' is required with 'slice_key'.")
    return "slice_key = ? AND slice_value = ?", [slice_key, slice_value]


def latest_drift(root: str, drift_name: str, granularity: str) -> dict[str, Any] | None:
    """The newest window's CONSECUTIVE drift of the whole table: which columns drifted."""
    table = _open(root, drift_name)
    if table is None:
        return None
    _, rows = _select(
        table,
        """WITH d AS (SELECT * FROM m WHERE drift_type = 'CONSECUTIVE' AND granularity = ?
                      AND slice_key IS NULL AND model_id IS NULL AND column_name <> ':table'),
                last AS (SELECT max("window".start) AS s FROM d)
           SELECT epoch_ms(d."window".start), d.column_name,
                  coalesce(d.js_distance >= ? OR d.ks_test.pvalue < ?, false)
           FROM d, last WHERE d."window".start = last.s ORDER BY d.column_name""",
        [granularity, JS_DISTANCE, KS_PVALUE],
    )
    if not rows:
        return None
    return {
        "window_start_ms": rows[0][0],
        "granularity": granularity,
        "drifted_columns": [r[1] for r in rows if r[2]],
    }


def _granularities(info: Mapping[str, Any]) -> list[str]:
    for profile in ("inference_log", "time_series"):
        if isinstance(info.get(profile), Mapping):
            return [canonical_granularity(g) for g in info[profile].get("granularities") or []]
    return []


def _readable(access: TableAccess, caller: Caller, name: str) -> bool:
    try:
        access.require(caller, name, TablePrivilege.SELECT)
    except ModelportError:
        return False
    return True


def list_for(service: MonitorService, access: TableAccess, caller: Caller) -> list[dict[str, Any]]:
    out = []
    for table in sorted(service.store.tables()):
        try:
            info = service.get(caller, table)
        except ModelportError:  # no SELECT, or deleted meanwhile
            continue
        try:
            refreshes = service.list_refreshes(caller, table)
        except ModelportError:
            refreshes = []
        info["latest_refresh"] = refreshes[0] if refreshes else None
        granularities = _granularities(info)
        drift = None
        drift_name = info["drift_metrics_table_name"]
        if granularities and _readable(access, caller, drift_name):
            drift = latest_drift(service.root, drift_name, granularities[0])
        info["drift"] = drift
        out.append(info)
    return out


def metrics_for(
    service: MonitorService, access: TableAccess, caller: Caller, params: Mapping[str, Any]
) -> dict[str, Any]:
    table_name = params.get("table_name")
    if not table_name:
        raise InvalidParameterValue("'table_name' is required.")
    kind = params.get("kind") or "drift"
    if kind not in _KINDS:
        raise InvalidParameterValue(f"'kind' must be drift or profile; got {kind!r}.")
    info = service.get(caller, table_name)
    metrics_name = info["drift_metrics_table_name" if kind == "drift" else "profile_metrics_table_name"]
    access.require(caller, metrics_name, TablePrivilege.SELECT)
    granularities = _granularities(info)
    granularity = params.get("granularity") or (granularities[0] if granularities else None)
    if granularity is not None:
        granularity = canonical_granularity(granularity)
    answer: dict[str, Any] = {
        "table_name": info["table_name"],
        "kind": kind,
        "metrics_table": metrics_name,
        "granularity": granularity,
        "granularities": granularities,
        "slices": [],
        "column_names": [],
        "model_ids": [],
        "columns": [],
        "rows": [],
        "truncated": False,
    }
    table = _open(service.root, metrics_name)
    if table is None:
        return answer
    _, slices = _select(
        table,
        "SELECT DISTINCT slice_key, slice_value FROM m WHERE slice_key IS NOT NULL ORDER BY 1, 2",
        [],
    )
    answer["slices"] = [{"slice_key": k, "slice_value": v} for k, v in slices]
    where, args = _slice_filter(params.get("slice_key"), params.get("slice_value"))
    clauses = [where]
    if granularity is not None:
        clauses.append("granularity = ?")
        args.append(granularity)
    if kind == "drift":
        drift_type = params.get("drift_type") or "CONSECUTIVE"
        if drift_type not in _DRIFT_TYPES:
            raise InvalidParameterValue(f"'drift_type' must be CONSECUTIVE or BASELINE; got {drift_type!r}.")
        clauses.append("drift_type = ?")
        args.append(drift_type)
        wanted = DRIFT_COLUMNS
    else:
        clauses.append("log_type = ?")
        args.append(params.get("log_type") or "INPUT")
        wanted = PROFILE_COLUMNS
    where_sql = " AND ".join(clauses)
    _, names = _select(table, f"SELECT DISTINCT column_name FROM m WHERE {where_sql} ORDER BY 1", args)
    answer["column_names"] = [n for (n,) in names]
    _, models = _select(
        table, f"SELECT DISTINCT model_id FROM m WHERE {where_sql} AND model_id IS NOT NULL ORDER BY 1", args
    )
    answer["model_ids"] = [m for (m,) in models]
    columns = [c for c in params.get("column_name", []) if c]
    if columns:
        where_sql += f" AND column_name IN ({', '.join('?' for _ in columns)})"
        args.extend(columns)
    names_out, rows = _select(
        table,
        f"""SELECT {_columns_sql(table, wanted)} FROM m WHERE {where_sql}
            ORDER BY "window".start, column_name, model_id NULLS FIRST LIMIT {MAX_ROWS + 1}""",
        args,
    )
    answer["truncated"] = len(rows) > MAX_ROWS
    answer["columns"] = names_out
    answer["rows"] = json_cell([list(r) for r in rows[:MAX_ROWS]])
    return answer
