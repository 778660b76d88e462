"""Quality monitors on tables: Databricks' ``MonitorInfo`` and ``MonitorRefreshInfo``, checked
for shape. No I/O.

A monitor's configuration is what ``POST``/``PUT /api/2.1/unity-catalog/tables/{name}/monitor``
carry (the field names and enums of ``databricks.sdk.service.catalog``): ``output_schema_name``
(required), ``assets_dir`` (required on create, kept as given: modelport draws no dashboards),
exactly one profile type (``inference_log``, ``time_series`` or ``snapshot``),
``baseline_table_name``, ``custom_metrics``, ``slicing_exprs``, ``schedule``, ``notifications``
and ``data_classification_config`` (kept, not acted on), ``skip_builtin_dashboard`` and
``warehouse_id`` (accepted, ignored).

modelport's own fields, which Databricks' clients never send:

- ``include_traffic``: the kinds of inference-table rows a monitor of an inference table reads
  besides live traffic, any of ``shadow`` (rows with ``shadow_of``), ``replay`` (``replay_of``),
  ``batch`` (``batch_job_id``) and ``cache`` (``cache_hit``); default none of them;
- ``labels``: ``{"table_name": "c.s.t", "key_cols": ["client_request_id"]}``: a table LEFT
  JOINed to the monitored rows at each refresh on ``key_cols`` (default
  ``client_request_id``; an inference table's unpacked rows also carry ``request_row``, the
  record's place in its request, for labels of requests with several records). It must hold
  the ``inference_log.label_col`` column;
- ``alerts``: thresholds on the metrics tables, with an optional webhook each, and
  ``notifications.on_failure.webhooks`` beside Databricks' ``email_addresses``
  (:mod:`modelport.spec.monitor_alerts`).

What this module cannot check (the table's columns, the granularities' spelling, the cron
expression's fields) :mod:`modelport.control.monitors` checks against the table and
:mod:`modelport.monitoring`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelport.errors import InvalidParameterValue
from modelport.spec.monitor_alerts import AlertDef, Webhook, failure_webhooks, parse_alerts

__all__ = [
    "METRIC_TYPES",
    "MONITOR_STATUSES",
    "PAUSE_STATUSES",
    "PROBLEM_TYPES",
    "PROFILE_TYPES",
    "REFRESH_STATES",
    "TRAFFIC_KINDS",
    "TRIGGERS",
    "CronSchedule",
    "CustomMetricDef",
    "InferenceLog",
    "Labels",
    "MonitorConfig",
    "TimeSeries",
    "parse_config",
]

PROFILE_TYPES = ("inference_log", "time_series", "snapshot")
PROBLEM_TYPES = ("PROBLEM_TYPE_CLASSIFICATION", "PROBLEM_TYPE_REGRESSION")
METRIC_TYPES = ("CUSTOM_METRIC_TYPE_AGGREGATE", "CUSTOM_METRIC_TYPE_DERIVED", "CUSTOM_METRIC_TYPE_DRIFT")
MONITOR_STATUSES = (
    "MONITOR_STATUS_ACTIVE",
    "MONITOR_STATUS_DELETE_PENDING",
    "MONITOR_STATUS_ERROR",
    "MONITOR_STATUS_FAILED",
    "MONITOR_STATUS_PENDING",
)
REFRESH_STATES = ("PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELED", "UNKNOWN")
TRIGGERS = ("MANUAL", "SCHEDULE")
PAUSE_STATUSES = ("PAUSED", "UNPAUSED")
TRAFFIC_KINDS = ("shadow", "replay", "batch", "cache")

#: Longest custom metric name and most custom metrics / slicing expressions a monitor takes.
_MAX_METRICS, _MAX_SLICES = 100, 100


def _text(body: Mapping[str, Any], key: str, path: str, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise InvalidParameterValue(f"Missing required field '{path}'.")
        return None
    if not isinstance(value, str):
        raise InvalidParameterValue(f"Invalid value for '{path}': must be a string.")
    return value


def _texts(value: Any, path: str, *, required: bool = False) -> tuple[str, ...]:
    if value is None:
        if required:
            raise InvalidParameterValue(f"Missing required field '{path}'.")
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidParameterValue(f"Invalid value for '{path}': must be a list of non-empty strings.")
    if required and not value:
        raise InvalidParameterValue(f"Invalid value for '{path}': must not be empty.")
    return tuple(value)


def _object(body: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidParameterValue(f"Invalid value for '{key}': must be an object.")
    return value


def _enum(value: Any, path: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidParameterValue(
            f"Invalid value for '{path}': {value!r} is not one of {', '.join(allowed)}."
        )
    return str(value)


@dataclass(frozen=True)
class InferenceLog:
    """``MonitorInferenceLog``: every field but ``label_col`` and ``prediction_proba_col`` required."""

    problem_type: str
    timestamp_col: str
    granularities: tuple[str, ...]
    prediction_col: str
    model_id_col: str
    label_col: str | None = None
    prediction_proba_col: str | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> InferenceLog:
        p = "inference_log"
        return cls(
            problem_type=_enum(body.get("problem_type"), f"{p}.problem_type", PROBLEM_TYPES),
            timestamp_col=str(_text(body, "timestamp_col", f"{p}.timestamp_col", required=True)),
            granularities=_texts(body.get("granularities"), f"{p}.granularities", required=True),
            prediction_col=str(_text(body, "prediction_col", f"{p}.prediction_col", required=True)),
            model_id_col=str(_text(body, "model_id_col", f"{p}.model_id_col", required=True)),
            label_col=_text(body, "label_col", f"{p}.label_col", required=False),
            prediction_proba_col=_text(
                body, "prediction_proba_col", f"{p}.prediction_proba_col", required=False
            ),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "problem_type": self.problem_type,
            "timestamp_col": self.timestamp_col,
            "granularities": list(self.granularities),
            "prediction_col": self.prediction_col,
            "model_id_col": self.model_id_col,
        }
        if self.label_col is not None:
            out["label_col"] = self.label_col
        if self.prediction_proba_col is not None:
            out["prediction_proba_col"] = self.prediction_proba_col
        return out


@dataclass(frozen=True)
class TimeSeries:
    """``MonitorTimeSeries``."""

    timestamp_col: str
    granularities: tuple[str, ...]

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> TimeSeries:
        return cls(
            timestamp_col=str(_text(body, "timestamp_col", "time_series.timestamp_col", required=True)),
            granularities=_texts(body.get("granularities"), "time_series.granularities", required=True),
        )

    def to_json(self) -> dict[str, Any]:
        return {"timestamp_col": self.timestamp_col, "granularities": list(self.granularities)}


@dataclass(frozen=True)
class CustomMetricDef:
    """``MonitorMetric``: every field required."""

    name: str
    definition: str
    input_columns: tuple[str, ...]
    output_data_type: str
    type: str

    @classmethod
    def parse(cls, body: Any, path: str) -> CustomMetricDef:
        if not isinstance(body, Mapping):
            raise InvalidParameterValue(f"Invalid value for '{path}': must be an object.")
        name = str(_text(body, "name", f"{path}.name", required=True))
        if not name.replace("_", "").isalnum() or name[0].isdigit():
            raise InvalidParameterValue(
                f"Invalid value for '{path}.name': {name!r} must be letters, digits and underscores, "
                "not starting with a digit."
            )
        return cls(
            name=name,
            definition=str(_text(body, "definition", f"{path}.definition", required=True)),
            input_columns=_texts(body.get("input_columns"), f"{path}.input_columns", required=True),
            output_data_type=str(_text(body, "output_data_type", f"{path}.output_data_type", required=True)),
            type=_enum(body.get("type"), f"{path}.type", METRIC_TYPES),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "definition": self.definition,
            "input_columns": list(self.input_columns),
            "output_data_type": self.output_data_type,
            "type": self.type,
        }


@dataclass(frozen=True)
class CronSchedule:
    """``MonitorCronSchedule``; ``pause_status`` defaults to UNPAUSED."""

    quartz_cron_expression: str
    timezone_id: str
    pause_status: str = "UNPAUSED"

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> CronSchedule:
        pause = body.get("pause_status") or "UNPAUSED"
        if pause == "UNSPECIFIED":
            pause = "UNPAUSED"
        return cls(
            quartz_cron_expression=str(
                _text(body, "quartz_cron_expression", "schedule.quartz_cron_expression", required=True)
            ),
            timezone_id=str(_text(body, "timezone_id", "schedule.timezone_id", required=True)),
            pause_status=_enum(pause, "schedule.pause_status", PAUSE_STATUSES),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "quartz_cron_expression": self.quartz_cron_expression,
            "timezone_id": self.timezone_id,
            "pause_status": self.pause_status,
        }


@dataclass(frozen=True)
class Labels:
    """modelport's ``labels``: a table joined on ``key_cols`` at refresh time."""

    table_name: str
    key_cols: tuple[str, ...] = ("client_request_id",)

    @classmethod
    def parse(cls, body: Any) -> Labels:
        if not isinstance(body, Mapping):
            raise InvalidParameterValue("Invalid value for 'labels': must be an object.")
        keys = _texts(body.get("key_cols"), "labels.key_cols") or ("client_request_id",)
        return cls(str(_text(body, "table_name", "labels.table_name", required=True)), keys)

    def to_json(self) -> dict[str, Any]:
        return {"table_name": self.table_name, "key_cols": list(self.key_cols)}


@dataclass(frozen=True)
class MonitorConfig:
    """What a create or update sets (the fields a monitor keeps beside its state)."""

    output_schema_name: str
    assets_dir: str | None = None
    inference_log: InferenceLog | None = None
    time_series: TimeSeries | None = None
    snapshot: bool = False
    baseline_table_name: str | None = None
    custom_metrics: tuple[CustomMetricDef, ...] = ()
    slicing_exprs: tuple[str, ...] = ()
    schedule: CronSchedule | None = None
    notifications: dict[str, Any] | None = None
    data_classification_config: dict[str, Any] | None = None
    include_traffic: tuple[str, ...] = ()
    labels: Labels | None = None
    alerts: tuple[AlertDef, ...] = ()
    failure_webhooks: tuple[Webhook, ...] = ()

    @property
    def profile_type(self) -> str:
        """``InferenceLog``, ``TimeSeries`` or ``Snapshot``."""
        if self.inference_log is not None:
            return "InferenceLog"
        return "TimeSeries" if self.time_series is not None else "Snapshot"

    @property
    def timestamp_col(self) -> str | None:
        source = self.inference_log or self.time_series
        return source.timestamp_col if source is not None else None

    @property
    def granularities(self) -> tuple[str, ...]:
        source = self.inference_log or self.time_series
        return source.granularities if source is not None else ()

    def to_json(self, *, redact: bool = False) -> dict[str, Any]:
        """The fields as ``MonitorInfo`` names them (those not set left out); ``redact``: plain
        webhook header values shown as ``[REDACTED]`` (what readers get)."""
        out: dict[str, Any] = {"output_schema_name": self.output_schema_name}
        if self.assets_dir is not None:
            out["assets_dir"] = self.assets_dir
        if self.inference_log is not None:
            out["inference_log"] = self.inference_log.to_json()
        if self.time_series is not None:
            out["time_series"] = self.time_series.to_json()
        if self.snapshot:
            out["snapshot"] = {}
        if self.baseline_table_name is not None:
            out["baseline_table_name"] = self.baseline_table_name
        if self.custom_metrics:
            out["custom_metrics"] = [m.to_json() for m in self.custom_metrics]
        if self.slicing_exprs:
            out["slicing_exprs"] = list(self.slicing_exprs)
        if self.schedule is not None:
            out["schedule"] = self.schedule.to_json()
        notifications = dict(self.notifications or {})
        if self.failure_webhooks:
            on_failure = dict(notifications.get("on_failure") or {})
            on_failure["webhooks"] = [w.to_json(redact=redact) for w in self.failure_webhooks]
            notifications["on_failure"] = on_failure
        if notifications or self.notifications is not None:
            out["notifications"] = notifications
        if self.data_classification_config is not None:
            out["data_classification_config"] = self.data_classification_config
        if self.include_traffic:
            out["include_traffic"] = list(self.include_traffic)
        if self.labels is not None:
            out["labels"] = self.labels.to_json()
        if self.alerts:
            out["alerts"] = [a.to_json(redact=redact) for a in self.alerts]
        return out


def parse_config(body: Any, *, creating: bool, current: MonitorConfig | None = None) -> MonitorConfig:
    """A create (``creating``) or update body, checked for shape (400 naming the field).

    An update replaces every Databricks field (one left out is cleared, as Databricks' update
    does) but keeps ``assets_dir`` (not updatable), the profile type when the body names none,
    and modelport's ``include_traffic``, ``labels``, ``alerts`` and failure webhooks when the body
    leaves them out (Databricks' clients never send them).
    """
    if not isinstance(body, Mapping):
        raise InvalidParameterValue("The request body must be a JSON object.")
    output_schema = _text(body, "output_schema_name", "output_schema_name", required=True)
    assets_dir = _text(body, "assets_dir", "assets_dir", required=creating)
    profiles = [key for key in PROFILE_TYPES if body.get(key) is not None]
    if not profiles and current is not None:
        inference_log, time_series, snapshot = current.inference_log, current.time_series, current.snapshot
    else:
        if len(profiles) != 1:
            raise InvalidParameterValue(
                "Exactly one of inference_log, time_series and snapshot must be given"
                + (f"; got {', '.join(profiles)}." if profiles else ".")
            )
        inference = _object(body, "inference_log")
        series = _object(body, "time_series")
        _object(body, "snapshot")
        inference_log = InferenceLog.parse(inference) if inference is not None else None
        time_series = TimeSeries.parse(series) if series is not None else None
        snapshot = profiles == ["snapshot"]
    metrics_body = body.get("custom_metrics")
    if metrics_body is not None and not isinstance(metrics_body, list):
        raise InvalidParameterValue("Invalid value for 'custom_metrics': must be a list.")
    metrics = tuple(
        CustomMetricDef.parse(m, f"custom_metrics[{i}]") for i, m in enumerate(metrics_body or [])
    )
    if len(metrics) > _MAX_METRICS:
        raise InvalidParameterValue(f"A monitor takes at most {_MAX_METRICS} custom metrics.")
    names = [m.name for m in metrics]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InvalidParameterValue(f"Custom metric names must be unique; repeated: {', '.join(duplicated)}.")
    slices = _texts(body.get("slicing_exprs"), "slicing_exprs")
    if len(slices) > _MAX_SLICES:
        raise InvalidParameterValue(f"A monitor takes at most {_MAX_SLICES} slicing expressions.")
    schedule_body = _object(body, "schedule")
    traffic = _texts(body.get("include_traffic"), "include_traffic")
    for kind in traffic:
        _enum(kind, "include_traffic", TRAFFIC_KINDS)
    labels_body = body.get("labels")
    if current is not None:
        traffic = traffic if "include_traffic" in body else current.include_traffic
        labels = Labels.parse(labels_body) if labels_body is not None else None
        if "labels" not in body:
            labels = current.labels
        assets_dir = current.assets_dir
    else:
        labels = Labels.parse(labels_body) if labels_body is not None else None
    notifications = _object(body, "notifications")
    old_hooks = current.failure_webhooks if current is not None else ()
    on_failure = (notifications or {}).get("on_failure")
    if current is not None and not (isinstance(on_failure, Mapping) and "webhooks" in on_failure):
        hooks = old_hooks
    else:
        hooks = failure_webhooks(notifications, old_hooks)
    if notifications is not None and isinstance(on_failure, Mapping) and "webhooks" in on_failure:
        rest = {k: v for k, v in on_failure.items() if k != "webhooks"}
        notifications = (
            {**notifications, "on_failure": rest}
            if rest
            else {k: v for k, v in notifications.items() if k != "on_failure"}
        )
    if current is not None and "alerts" not in body:
        alerts = current.alerts
    else:
        alerts = parse_alerts(body.get("alerts"), current.alerts if current is not None else ())
    classification = _object(body, "data_classification_config")
    baseline = _text(body, "baseline_table_name", "baseline_table_name", required=False)
    return MonitorConfig(
        output_schema_name=str(output_schema),
        assets_dir=assets_dir,
        inference_log=inference_log,
        time_series=time_series,
        snapshot=snapshot,
        baseline_table_name=baseline,
        custom_metrics=metrics,
        slicing_exprs=slices,
        schedule=CronSchedule.parse(schedule_body) if schedule_body is not None else None,
        notifications=dict(notifications) if notifications is not None else None,
        data_classification_config=dict(classification) if classification is not None else None,
        include_traffic=tuple(dict.fromkeys(traffic)),
        labels=labels,
        alerts=alerts,
        failure_webhooks=hooks,
    )
