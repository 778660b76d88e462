"""A monitor's alerts: their metrics checked against the metrics tables' columns, and their
evaluation over the rows a refresh computed.

An alert (:class:`~modelport.spec.monitor_alerts.AlertDef`) names a metric of the drift or the
profile table: a numeric column (``js_distance``, ``accuracy_score``, ``percent_null``...), a
field of a struct column (``ks_test.pvalue``, ``chi_squared_test.statistic``,
``precision.macro``, ``f1_score.weighted``, ``non_null_columns_delta.missing``), or a custom
metric of the matching kind (aggregate and derived ones on the profile table, drift ones on the
drift table).

**Evaluation** (:func:`evaluate`), after each refresh that computed rows, over those rows only
(the windows the refresh computed or recomputed; the profile table's ``BASELINE`` rows are left
out): the rows matching the alert's column, drift type, granularity, slice and model id whose
metric is not null nor NaN are its *matching* rows; it is ``TRIGGERED`` when any of them
breaches the threshold, else ``OK``. Its ``value`` is the worst matching value (the highest for
``>``/``>=``, the lowest for ``<``/``<=``, the first breaching one for ``==``/``!=``), and its
``breaching`` rows are listed worst first, at most :data:`MAX_BREACHING`.

:func:`transition` keeps the state between refreshes and says which notification a change calls
for: ``TRIGGERED`` on OK (or never evaluated) → TRIGGERED, ``RESOLVED`` on TRIGGERED → OK.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelport.errors import InvalidParameterValue
from modelport.monitoring.granularity import canonical_granularity
from modelport.monitoring.schemas import DRIFT_SCHEMA, PROFILE_SCHEMA
from modelport.spec.monitor import CustomMetricDef
from modelport.spec.monitor_alerts import AlertDef

__all__ = [
    "MAX_BREACHING",
    "Evaluation",
    "alert_metrics",
    "alert_views",
    "check_alerts",
    "evaluate",
    "notification_body",
    "transition",
]

#: Breaching rows kept in an alert's state and sent in a notification.
MAX_BREACHING = 20
#: Numeric columns that are bookkeeping, not metrics.
_NOT_METRICS = {"monitor_version", "logging_table_commit_version"}
_CUSTOM_TABLE = {
    "CUSTOM_METRIC_TYPE_AGGREGATE": "profile",
    "CUSTOM_METRIC_TYPE_DERIVED": "profile",
    "CUSTOM_METRIC_TYPE_DRIFT": "drift",
}


def _numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _schema_metrics(schema: pa.Schema) -> list[str]:
    out = []
    for f in schema:
        if f.name in _NOT_METRICS:
            continue
        if _numeric(f.type):
            out.append(f.name)
        elif pa.types.is_struct(f.type):
            out += [f"{f.name}.{sub.name}" for sub in f.type if _numeric(sub.type)]
    return out


def alert_metrics(table: str, custom_metrics: Sequence[CustomMetricDef] = ()) -> list[str]:
    """The metric names an alert on ``table`` (``drift`` or ``profile``) may use."""
    schema = DRIFT_SCHEMA if table == "drift" else PROFILE_SCHEMA
    return _schema_metrics(schema) + [m.name for m in custom_metrics if _CUSTOM_TABLE[m.type] == table]


def check_alerts(
    alerts: Sequence[AlertDef],
    custom_metrics: Sequence[CustomMetricDef],
    granularities: Sequence[str],
    profile_type: str,
) -> tuple[AlertDef, ...]:
    """``alerts`` with canonical granularities, once their metrics and granularities are known
    (400 naming the field otherwise)."""
    out = []
    for i, alert in enumerate(alerts):
        path = f"alerts[{i}]"
        known = alert_metrics(alert.table, custom_metrics)
        if alert.metric not in known:
            other = "profile" if alert.table == "drift" else "drift"
            hint = (
                f' It is a metric of the {other} table: set "table": "{other}".'
                if alert.metric in alert_metrics(other, custom_metrics)
                else ""
            )
            raise InvalidParameterValue(
                f"Invalid value for '{path}.metric': {alert.metric!r} is not a metric of the "
                f"{alert.table} table.{hint} Its metrics: {', '.join(known)}."
            )
        grain = alert.granularity
        if grain is not None:
            if profile_type == "Snapshot":
                raise InvalidParameterValue(
                    f"Invalid value for '{path}.granularity': a Snapshot monitor has no granularities."
                )
            grain = canonical_granularity(grain)
            if grain not in granularities:
                raise InvalidParameterValue(
                    f"Invalid value for '{path}.granularity': {alert.granularity!r} is not one of the "
                    f"monitor's granularities ({', '.join(granularities)})."
                )
        out.append(AlertDef(**{**alert.__dict__, "granularity": grain}))
    return tuple(out)


@dataclass
class Evaluation:
    """One alert's verdict over one refresh's rows."""

    state: str  # OK | TRIGGERED
    value: float | None = None
    matched: int = 0
    breaching: list[dict[str, Any]] = field(default_factory=list)
    breaching_count: int = 0


def _metric(rows: pa.Table, metric: str) -> pa.ChunkedArray | None:
    head, _, sub = metric.partition(".")
    if head not in rows.column_names:
        return None
    column = rows.column(head)
    if sub:
        if not pa.types.is_struct(column.type) or column.type.get_field_index(sub) < 0:
            return None
        column = pc.struct_field(column, sub)
    try:
        return pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _match(rows: pa.Table, column: str, wanted: str | None, *, star: bool = True) -> pa.Array | None:
    """The mask of rows whose ``column`` is ``wanted`` (None: null; ``*``: any)."""
    if column not in rows.column_names:
        return None if wanted is None or (star and wanted == "*") else pa.array([False] * rows.num_rows)
    values = rows.column(column)
    if wanted is None:
        return pc.is_null(values)
    if star and wanted == "*":
        return None
    return pc.fill_null(pc.equal(values, pa.scalar(wanted)), False)


def _ms(value: Any) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def evaluate(alert: AlertDef, rows: pa.Table | None) -> Evaluation:
    """``alert`` over the rows of its table that a refresh computed (see the module docstring)."""
    if rows is None or rows.num_rows == 0:
        return Evaluation("OK")
    masks = []
    if alert.table == "profile" and "log_type" in rows.column_names:
        masks.append(pc.fill_null(pc.equal(rows.column("log_type"), "INPUT"), False))
    if alert.column_name != "*":
        masks.append(_match(rows, "column_name", alert.column_name))
    if alert.drift_type is not None:
        masks.append(_match(rows, "drift_type", alert.drift_type))
    if alert.granularity is not None:
        masks.append(_match(rows, "granularity", alert.granularity))
    masks.append(_match(rows, "slice_key", alert.slice_key))
    if alert.slice_value is not None:
        masks.append(_match(rows, "slice_value", alert.slice_value, star=False))
    masks.append(_match(rows, "model_id", alert.model_id))
    values = _metric(rows, alert.metric)
    if values is None:
        return Evaluation("OK")
    keep = pc.and_(pc.is_valid(values), pc.invert(pc.is_nan(pc.fill_null(values, 0.0))))
    for mask in masks:
        if mask is not None:
            keep = pc.and_(keep, mask)
    picked = rows.filter(keep)
    picked_values = values.filter(keep).to_numpy(zero_copy_only=False)
    if len(picked_values) == 0:
        return Evaluation("OK")
    breach = {
        ">": picked_values > alert.threshold,
        ">=": picked_values >= alert.threshold,
        "<": picked_values < alert.threshold,
        "<=": picked_values <= alert.threshold,
        "==": picked_values == alert.threshold,
        "!=": picked_values != alert.threshold,
    }[alert.op]
    descending = alert.op in (">", ">=")
    if alert.op in (">", ">="):
        worst = float(picked_values.max())
    elif alert.op in ("<", "<="):
        worst = float(picked_values.min())
    else:
        worst = float(picked_values[breach][0]) if breach.any() else float(picked_values[0])
    hits = np.flatnonzero(breach)
    order = hits[np.argsort(picked_values[hits], kind="stable")]
    if descending:
        order = order[::-1]
    listed = []
    names = set(picked.column_names)
    for i in order[:MAX_BREACHING]:
        row = {
            c: picked.column(c)[int(i)].as_py()
            for c in (
                "window",
                "granularity",
                "column_name",
                "model_id",
                "slice_key",
                "slice_value",
                "drift_type",
            )
            if c in names
        }
        window = row.pop("window", None) or {}
        listed.append(
            {
                "window_start_ms": _ms(window.get("start")),
                "window_end_ms": _ms(window.get("end")),
                **row,
                "value": float(picked_values[int(i)]),
            }
        )
    return Evaluation(
        "TRIGGERED" if len(hits) else "OK",
        value=worst if math.isfinite(worst) else None,
        matched=len(picked_values),
        breaching=listed,
        breaching_count=len(hits),
    )


def transition(
    previous: Mapping[str, Any] | None, result: Evaluation, *, refresh_id: int, now_ms: int
) -> tuple[dict[str, Any], str | None]:
    """The alert's new state and the notification it calls for (``TRIGGERED``, ``RESOLVED`` or
    None)."""
    before = (previous or {}).get("state") or "UNKNOWN"
    state = {
        "state": result.state,
        "value": result.value,
        "matched_count": result.matched,
        "breaching_count": result.breaching_count,
        "breaching": result.breaching,
        "evaluated_at_ms": now_ms,
        "refresh_id": refresh_id,
        "since_ms": now_ms if before != result.state else (previous or {}).get("since_ms", now_ms),
    }
    if previous and previous.get("notification"):
        state["notification"] = previous["notification"]
    event = None
    if result.state == "TRIGGERED" and before != "TRIGGERED":
        event = "TRIGGERED"
    elif result.state == "OK" and before == "TRIGGERED":
        event = "RESOLVED"
    return state, event


def notification_body(table: str, alert: AlertDef, state: Mapping[str, Any], event: str) -> dict[str, Any]:
    """The JSON an alert's webhook receives on a change of state."""
    definition = alert.to_json()
    definition.pop("webhook", None)
    return {
        "event": f"monitor.alert.{event.lower()}",
        "table_name": table,
        "alert": definition,
        "state": state["state"],
        "value": state.get("value"),
        "breaching_count": state.get("breaching_count", 0),
        "breaching": state.get("breaching", []),
        "refresh_id": state.get("refresh_id"),
        "evaluated_at_ms": state.get("evaluated_at_ms"),
    }


def alert_views(alerts: Sequence[AlertDef], states: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Each alert's definition (header values redacted) with its state, as readers get them."""
    out = []
    for alert in alerts:
        state = (states or {}).get(alert.name)
        view = alert.to_json(redact=True)
        if isinstance(state, Mapping):
            view.update(state)
        else:
            view["state"] = "UNKNOWN"
        out.append(view)
    return out
