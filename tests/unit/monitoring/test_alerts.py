"""Alerts: definitions checked for shape and metric names, evaluated over metrics rows, their
state carried between refreshes (the webhooks' delivery: tests/integration/test_monitor_alerts.py)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pyarrow as pa
import pytest

from modelport.errors import InvalidParameterValue
from modelport.monitoring.alerts import alert_views, check_alerts, evaluate, transition
from modelport.monitoring.schemas import DRIFT_SCHEMA, PROFILE_SCHEMA
from modelport.spec.monitor import CustomMetricDef, parse_config
from modelport.spec.monitor_alerts import REDACTED, AlertDef, parse_alerts

H = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _window(hours: int) -> dict[str, dt.datetime]:
    return {"start": H + dt.timedelta(hours=hours), "end": H + dt.timedelta(hours=hours + 1)}


def _table(schema: pa.Schema, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


def _drift() -> pa.Table:
    base = {"granularity": "1 hour", "drift_type": "CONSECUTIVE"}
    return _table(
        DRIFT_SCHEMA,
        [
            {**base, "window": _window(1), "column_name": "f0", "js_distance": 0.05},
            {**base, "window": _window(1), "column_name": "f1", "js_distance": 0.7},
            {**base, "window": _window(2), "column_name": "f1", "js_distance": 0.3},
            {**base, "window": _window(2), "column_name": "f2", "js_distance": float("nan")},
            {**base, "window": _window(2), "column_name": "f1", "js_distance": 0.9, "model_id": "a"},
            {**base, "window": _window(2), "column_name": "f1", "js_distance": 0.95, "slice_key": "s"},
            {
                "window": _window(2),
                "drift_type": "BASELINE",
                "granularity": "1 hour",
                "column_name": "f0",
                "js_distance": 0.5,
                "ks_test": {"statistic": 0.4, "pvalue": 0.001},
            },
        ],
    )


def _alert(**fields: Any) -> AlertDef:
    return parse_alerts([{"name": "a", "metric": "js_distance", "op": ">", "threshold": 0.1, **fields}])[0]


def test_any_column_triggers_on_the_whole_table_rows_worst_first() -> None:
    result = evaluate(_alert(), _drift())
    assert result.state == "TRIGGERED"
    # The model "a" and slice "s" rows are not whole-table rows; NaN never breaches.
    assert [r["value"] for r in result.breaching] == [0.7, 0.5, 0.3]
    assert result.value == 0.7 and result.breaching_count == 3 and result.matched == 4
    first = result.breaching[0]
    assert first["column_name"] == "f1" and first["window_start_ms"] == int(
        (H + dt.timedelta(hours=1)).timestamp() * 1000
    )


def test_filters_on_column_drift_type_model_and_slice() -> None:
    drift = _drift()
    assert evaluate(_alert(column_name="f0", drift_type="CONSECUTIVE"), drift).state == "OK"
    assert evaluate(_alert(column_name="f0"), drift).breaching_count == 1  # the BASELINE row
    assert evaluate(_alert(model_id="a"), drift).value == 0.9
    assert evaluate(_alert(model_id="*"), drift).breaching_count == 4
    assert evaluate(_alert(slice_key="s", slice_value="x"), drift).state == "OK"
    assert evaluate(_alert(slice_key="*"), drift).value == 0.95


def test_struct_fields_and_below_thresholds() -> None:
    result = evaluate(_alert(metric="ks_test.pvalue", op="<", threshold=0.05), _drift())
    assert result.state == "TRIGGERED" and result.value == 0.001
    profile = _table(
        PROFILE_SCHEMA,
        [
            {"window": _window(1), "log_type": "INPUT", "column_name": ":table", "accuracy_score": 0.95},
            {"window": _window(2), "log_type": "INPUT", "column_name": ":table", "accuracy_score": 0.6},
            {"log_type": "BASELINE", "column_name": ":table", "accuracy_score": 0.1},
        ],
    )
    below = _alert(table="profile", metric="accuracy_score", op="<", threshold=0.9)
    result = evaluate(below, profile)
    assert result.state == "TRIGGERED" and result.value == 0.6 and result.breaching_count == 1
    assert (
        evaluate(_alert(table="profile", metric="accuracy_score", op="<", threshold=0.5), profile).state
        == "OK"
    )
    assert evaluate(below, None).state == "OK"


def test_transitions_notify_on_changes_only() -> None:
    trig = evaluate(_alert(), _drift())
    ok = evaluate(_alert(threshold=5.0), _drift())
    state, event = transition(None, trig, refresh_id=1, now_ms=10)
    assert (state["state"], event, state["since_ms"]) == ("TRIGGERED", "TRIGGERED", 10)
    state["notification"] = {"delivered": True}
    again, event = transition(state, trig, refresh_id=2, now_ms=20)
    assert event is None and again["since_ms"] == 10 and again["notification"] == {"delivered": True}
    resolved, event = transition(again, ok, refresh_id=3, now_ms=30)
    assert (resolved["state"], event, resolved["since_ms"]) == ("OK", "RESOLVED", 30)
    assert transition(None, ok, refresh_id=1, now_ms=1)[1] is None


@pytest.mark.parametrize(
    ("alert", "reason"),
    [
        ({"name": "a", "metric": "js_distance", "op": "~", "threshold": 1}, "'alerts[0].op'"),
        ({"name": "a", "metric": "js_distance", "op": ">", "threshold": "x"}, "finite number"),
        ({"name": "a", "metric": "js_distance", "op": ">", "threshold": True}, "finite number"),
        ({"name": "a b", "metric": "js_distance", "op": ">", "threshold": 1}, "'alerts[0].name'"),
        ({"metric": "js_distance", "op": ">", "threshold": 1}, "Missing required field 'alerts[0].name'"),
        ({"name": "a", "metric": "x", "op": ">", "threshold": 1, "table": "t"}, "'alerts[0].table'"),
        (
            {
                "name": "a",
                "metric": "x",
                "op": ">",
                "threshold": 1,
                "table": "profile",
                "drift_type": "BASELINE",
            },
            "drift table only",
        ),
        ({"name": "a", "metric": "x", "op": ">", "threshold": 1, "webhook": {"url": "ftp://h/x"}}, "http(s)"),
        (
            {
                "name": "a",
                "metric": "x",
                "op": ">",
                "threshold": 1,
                "webhook": {"url": "http://h", "headers": {"X": REDACTED}},
            },
            "stored value",
        ),
        ({"name": "a", "metric": "x", "op": ">", "threshold": 1, "slice_value": "v"}, "slice_key"),
    ],
)
def test_bad_definitions_are_refused(alert: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidParameterValue, match=re.escape(reason)):
        parse_alerts([alert])


def test_metric_names_are_checked_against_the_schemas_and_custom_metrics() -> None:
    custom = (CustomMetricDef("gap", "avg(x)", (":table",), "double", "CUSTOM_METRIC_TYPE_AGGREGATE"),)
    ok = parse_alerts(
        [
            {"name": "a", "metric": "ks_test.pvalue", "op": "<", "threshold": 0.05, "granularity": "1 HOUR"},
            {"name": "b", "metric": "gap", "op": ">", "threshold": 1, "table": "profile"},
            {"name": "c", "metric": "precision.macro", "op": "<", "threshold": 0.5, "table": "profile"},
        ]
    )
    checked = check_alerts(ok, custom, ("1 hour",), "InferenceLog")
    assert checked[0].granularity == "1 hour"
    with pytest.raises(InvalidParameterValue, match="is a metric of the profile table"):
        check_alerts(
            parse_alerts([{"name": "a", "metric": "accuracy_score", "op": "<", "threshold": 1}]),
            (),
            (),
            "InferenceLog",
        )
    with pytest.raises(InvalidParameterValue, match=re.escape("'alerts[0].metric': 'js_dist'")):
        check_alerts(
            parse_alerts([{"name": "a", "metric": "js_dist", "op": ">", "threshold": 1}]),
            (),
            (),
            "InferenceLog",
        )
    with pytest.raises(InvalidParameterValue, match="not a metric"):  # a custom metric of the other kind
        check_alerts(
            parse_alerts([{"name": "a", "metric": "gap", "op": ">", "threshold": 1}]),
            custom,
            (),
            "InferenceLog",
        )
    with pytest.raises(InvalidParameterValue, match="monitor's granularities"):
        check_alerts(
            parse_alerts(
                [{"name": "a", "metric": "js_distance", "op": ">", "threshold": 1, "granularity": "1 day"}]
            ),
            (),
            ("1 hour",),
            "InferenceLog",
        )


def test_header_values_are_redacted_and_kept_on_update() -> None:
    body = {
        "output_schema_name": "c.s",
        "assets_dir": "/x",
        "snapshot": {},
        "alerts": [
            {
                "name": "a",
                "metric": "js_distance",
                "op": ">",
                "threshold": 0.1,
                "webhook": {"url": "http://h/x", "headers": {"X-Key": "s3cret", "X-Ref": "{{secrets/s/k}}"}},
            }
        ],
        "notifications": {
            "on_failure": {
                "email_addresses": ["a@b.c"],
                "webhooks": [{"url": "https://h/f", "headers": {"T": "t0k"}}],
            }
        },
    }
    config = parse_config(body, creating=True)
    shown = config.to_json(redact=True)
    assert shown["alerts"][0]["webhook"]["headers"] == {"X-Key": REDACTED, "X-Ref": "{{secrets/s/k}}"}
    assert shown["notifications"] == {
        "on_failure": {
            "email_addresses": ["a@b.c"],
            "webhooks": [{"url": "https://h/f", "headers": {"T": REDACTED}}],
        }
    }
    stored = parse_config(config.to_json(), creating=True)
    assert stored == config
    updated = parse_config(
        {**shown, "alerts": alert_views(config.alerts, {"a": {"state": "OK"}})},
        creating=False,
        current=stored,
    )
    assert dict(updated.alerts[0].webhook.headers)["X-Key"] == "s3cret"  # type: ignore[union-attr]
    assert dict(updated.failure_webhooks[0].headers) == {"T": "t0k"}
    # An SDK update (no webhooks: it cannot send them) keeps them.
    sdk = parse_config(
        {"output_schema_name": "c.s", "notifications": {"on_failure": {"email_addresses": []}}},
        creating=False,
        current=stored,
    )
    assert sdk.failure_webhooks == stored.failure_webhooks and sdk.alerts == stored.alerts
