"""The quality monitors' routes (Databricks' ``quality_monitors``, ``api/control/monitors.py``), as
the OpenAPI document describes them."""

from __future__ import annotations

from modelport.api.openapi_schemas import Operation, Param, Schema, array_of, obj, string
from modelport.spec.monitor import (
    METRIC_TYPES,
    MONITOR_STATUSES,
    PAUSE_STATUSES,
    PROBLEM_TYPES,
    REFRESH_STATES,
    TRAFFIC_KINDS,
    TRIGGERS,
)
from modelport.spec.monitor_alerts import ALERT_OPS, ALERT_TABLES, DRIFT_TYPES

__all__ = ["monitor_operations"]

_MONITOR = "/api/2.1/unity-catalog/tables/{table_name}/monitor"
_TAG = "tables"
_SELECT, _MANAGE = "SELECT on the table", "MANAGE on the table"
_GRANULARITIES = array_of(
    string('"5 minutes", "30 minutes", "1 hour", "1 day", "<n> week(s)", "1 month", "1 year"')
)
_WEBHOOK = obj(
    {
        "url": string("http(s) URL, or a {{secrets/scope/key}} reference."),
        "headers": obj(
            {}, description="Header values: text or {{secrets/scope/key}}; plain ones read back redacted."
        ),
    },
    ("url",),
)
_ALERT = obj(
    {
        "name": string(),
        "table": string(enum=list(ALERT_TABLES)),
        "metric": string(
            "A numeric column of the metrics table, a struct field (ks_test.pvalue), or a custom metric."
        ),
        "column_name": string('"*" (any), a column, or ":table".'),
        "op": string(enum=list(ALERT_OPS)),
        "threshold": {"type": "number"},
        "drift_type": string(enum=list(DRIFT_TYPES)),
        "granularity": string(),
        "slice_key": string(),
        "slice_value": string(),
        "model_id": string(),
        "webhook": _WEBHOOK,
    },
    ("name", "metric", "op", "threshold"),
    description="modelport: a threshold on a metrics table, notifying its webhook on each change of state.",
)
_ALERT_STATE = obj(
    {
        **_ALERT["properties"],
        "state": string(enum=["OK", "TRIGGERED", "UNKNOWN"]),
        "value": {"type": "number"},
        "breaching_count": {"type": "integer"},
        "breaching": array_of(obj({})),
        "evaluated_at_ms": {"type": "integer"},
        "refresh_id": {"type": "integer"},
        "since_ms": {"type": "integer"},
        "notification": obj({}),
    }
)
_INFERENCE_LOG = obj(
    {
        "problem_type": string(enum=list(PROBLEM_TYPES)),
        "timestamp_col": string(),
        "granularities": _GRANULARITIES,
        "prediction_col": string(),
        "model_id_col": string(),
        "label_col": string(),
        "prediction_proba_col": string(),
    },
    ("problem_type", "timestamp_col", "granularities", "prediction_col", "model_id_col"),
)
_CONFIG: dict[str, Schema] = {
    "output_schema_name": string("catalog.schema of the metrics tables."),
    "assets_dir": string("Kept as given (modelport draws no dashboards)."),
    "inference_log": _INFERENCE_LOG,
    "time_series": obj(
        {"timestamp_col": string(), "granularities": _GRANULARITIES}, ("timestamp_col", "granularities")
    ),
    "snapshot": obj({}),
    "baseline_table_name": string(),
    "custom_metrics": array_of(
        obj(
            {
                "name": string(),
                "definition": string("SQL; {{input_column}} is each input column."),
                "input_columns": array_of(string()),
                "output_data_type": string(),
                "type": string(enum=list(METRIC_TYPES)),
            },
            ("name", "definition", "input_columns", "output_data_type", "type"),
        )
    ),
    "slicing_exprs": array_of(string()),
    "schedule": obj(
        {
            "quartz_cron_expression": string(
                "Quartz: seconds minutes hours day-of-month month day-of-week [year]."
            ),
            "timezone_id": string(),
            "pause_status": string(enum=list(PAUSE_STATUSES)),
        },
        ("quartz_cron_expression", "timezone_id"),
    ),
    "notifications": obj(
        {
            "on_failure": obj(
                {
                    "email_addresses": array_of(string("Kept; modelport sends no email.")),
                    "webhooks": array_of(_WEBHOOK),
                }
            )
        }
    ),
    "data_classification_config": obj({}),
    "include_traffic": array_of(
        string("modelport: inference-table rows read besides live traffic.", enum=list(TRAFFIC_KINDS))
    ),
    "labels": obj(
        {"table_name": string(), "key_cols": array_of(string())},
        ("table_name",),
        description="modelport: a table of labels LEFT JOINed at each refresh on key_cols "
        "(default client_request_id).",
    ),
    "alerts": array_of(_ALERT),
}
_INFO = obj(
    {
        "table_name": string(),
        "status": string(enum=list(MONITOR_STATUSES)),
        "profile_metrics_table_name": string(),
        "drift_metrics_table_name": string(),
        "monitor_version": {"type": "integer"},
        "latest_monitor_failure_msg": string(),
        **_CONFIG,
        "alerts": array_of(_ALERT_STATE),
    }
)
_REFRESH = obj(
    {
        "refresh_id": {"type": "integer"},
        "state": string(enum=list(REFRESH_STATES)),
        "start_time_ms": {"type": "integer"},
        "end_time_ms": {"type": "integer"},
        "message": string(),
        "trigger": string(enum=list(TRIGGERS)),
    }
)
_ID = {"refresh_id": {"type": "integer"}}


def monitor_operations() -> list[Operation]:
    return [
        Operation(
            "POST",
            _MONITOR,
            "Create the table's monitor (one per table); refresh it to write its metrics tables.",
            _TAG,
            _MANAGE,
            body=obj(_CONFIG, ("output_schema_name", "assets_dir")),
            response=_INFO,
        ),
        Operation("GET", _MONITOR, "The table's monitor (MonitorInfo).", _TAG, _SELECT, response=_INFO),
        Operation(
            "PUT",
            _MONITOR,
            "Replace the monitor's configuration; the next refresh recomputes every window.",
            _TAG,
            _MANAGE,
            body=obj(_CONFIG, ("output_schema_name",)),
            response=_INFO,
        ),
        Operation(
            "DELETE",
            _MONITOR,
            "Delete the monitor and its refreshes (the metrics tables stay).",
            _TAG,
            _MANAGE,
        ),
        Operation(
            "POST",
            f"{_MONITOR}/refreshes",
            "Queue a refresh (409 while one is pending or running); the leader runs it.",
            _TAG,
            _MANAGE,
            body_required=False,
            response=_REFRESH,
        ),
        Operation(
            "GET",
            f"{_MONITOR}/refreshes",
            "The monitor's refreshes, newest first.",
            _TAG,
            _SELECT,
            response=obj({"refreshes": array_of(_REFRESH)}),
        ),
        Operation(
            "GET",
            f"{_MONITOR}/refreshes/{{refresh_id}}",
            "One refresh: its state, times and message.",
            _TAG,
            _SELECT,
            path_params=_ID,
            response=_REFRESH,
        ),
        Operation(
            "POST",
            f"{_MONITOR}/refreshes/{{refresh_id}}/cancel",
            "Cancel a pending or running refresh (400 once it has ended).",
            _TAG,
            _MANAGE,
            body_required=False,
            path_params=_ID,
        ),
        Operation(
            "GET",
            "/api/2.0/modelport/monitors/alerts",
            "The alerts, with their state, of the monitors on an endpoint's inference tables (or one table).",
            _TAG,
            _SELECT,
            query=(Param("endpoint", string()), Param("table_name", string())),
            response=obj(
                {
                    "endpoint_name": string(),
                    "monitors": array_of(
                        obj(
                            {
                                "table_name": string(),
                                "status": string(enum=list(MONITOR_STATUSES)),
                                "latest_monitor_failure_msg": string(),
                                "alerts": array_of(_ALERT_STATE),
                            }
                        )
                    ),
                }
            ),
        ),
    ]
