"""A monitor's alerts and failure webhooks, checked for shape. No I/O.

modelport's ``alerts`` field of a monitor (Databricks' clients never send it) is a list of
thresholds on its metrics tables::

    {"name": "f1-drift", "table": "drift", "metric": "js_distance", "column_name": "*",
     "op": ">", "threshold": 0.1, "drift_type": "CONSECUTIVE", "granularity": "1 hour",
     "slice_key": null, "slice_value": null, "model_id": null,
     "webhook": {"url": "https://hooks.example.com/x", "headers": {"Authorization": "{{secrets/s/k}}"}}}

``name``, ``metric``, ``op`` and ``threshold`` are required; ``table`` defaults to ``drift``,
``column_name`` to ``*`` (any column, ``:table`` rows included). ``slice_key`` and ``model_id``
left out or null match the whole-table, all-models rows; ``"*"`` matches any. Whether the
metric exists (a column of the metrics table, a struct field such as ``ks_test.pvalue``, or a
custom metric) is checked by :mod:`modelport.monitoring.alerts`, which knows the schemas.
Other fields are ignored (as everywhere in the API), so that a monitor read back, alerts' state
included, can be sent back as an update.

Databricks' ``notifications.on_failure`` (``MonitorDestination``) carries ``email_addresses``,
which modelport keeps and cannot send; modelport reads ``webhooks`` beside them, a list of the
same ``{"url", "headers"}`` objects, posted when a refresh fails.

A webhook's URL is ``http`` or ``https`` (or a whole ``{{secrets/scope/key}}`` reference whose
value is one, for URLs that are credentials themselves); a header value is text or such a
reference. Plain header values are shown as :data:`REDACTED` to readers; an update that sends
:data:`REDACTED` back keeps the value stored under the same alert and header name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from modelport.errors import InvalidParameterValue
from modelport.spec.secrets import parse_reference

__all__ = [
    "ALERT_OPS",
    "ALERT_TABLES",
    "DRIFT_TYPES",
    "MAX_ALERTS",
    "REDACTED",
    "AlertDef",
    "Webhook",
    "failure_webhooks",
    "parse_alerts",
]

ALERT_OPS = (">", ">=", "<", "<=", "==", "!=")
ALERT_TABLES = ("drift", "profile")
DRIFT_TYPES = ("CONSECUTIVE", "BASELINE")
#: Most alerts a monitor takes, and most webhooks in ``notifications.on_failure``.
MAX_ALERTS, MAX_WEBHOOKS = 100, 10
#: How a plain header value is shown.
REDACTED = "[REDACTED]"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,100}\Z")
_HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~\-]{1,100}\Z")


def _bad(path: str, why: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Invalid value for '{path}': {why}")


@dataclass(frozen=True)
class Webhook:
    """Where a notification is POSTed: ``url`` and ``headers`` (values may be secret references)."""

    url: str
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, body: Any, path: str, kept: Webhook | None = None) -> Webhook:
        if not isinstance(body, Mapping):
            raise _bad(path, "must be an object with 'url' and optional 'headers'.")
        url = body.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidParameterValue(f"Missing required field '{path}.url'.")
        if parse_reference(url) is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _bad(
                    f"{path}.url",
                    f"{url!r} is not an http(s) URL (or a {{{{secrets/scope/key}}}} reference).",
                )
        headers = body.get("headers")
        if headers is None:
            headers = {}
        if not isinstance(headers, Mapping):
            raise _bad(f"{path}.headers", "must be an object of header names to values.")
        old = dict(kept.headers) if kept is not None else {}
        out: list[tuple[str, str]] = []
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_RE.match(name):
                raise _bad(f"{path}.headers", f"{name!r} is not a header name.")
            if not isinstance(value, str) or "\n" in value or "\r" in value:
                raise _bad(f"{path}.headers.{name}", "must be one line of text.")
            if value == REDACTED:
                if name not in old:
                    raise _bad(
                        f"{path}.headers.{name}", f"{REDACTED} stands for a stored value; there is none."
                    )
                value = old[name]
            out.append((name, value))
        return cls(url, tuple(out))

    def to_json(self, *, redact: bool = False) -> dict[str, Any]:
        headers = {k: (REDACTED if redact and parse_reference(v) is None else v) for k, v in self.headers}
        out: dict[str, Any] = {"url": self.url}
        if headers:
            out["headers"] = headers
        return out


def _opt_text(body: Mapping[str, Any], key: str, path: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(f"{path}.{key}", "must be a non-empty string.")
    return value


@dataclass(frozen=True)
class AlertDef:
    """One threshold on a metrics table (see the module docstring)."""

    name: str
    metric: str
    op: str
    threshold: float
    table: str = "drift"
    column_name: str = "*"
    drift_type: str | None = None
    granularity: str | None = None
    slice_key: str | None = None
    slice_value: str | None = None
    model_id: str | None = None
    webhook: Webhook | None = field(default=None)

    @classmethod
    def parse(cls, body: Any, path: str, kept: AlertDef | None = None) -> AlertDef:
        if not isinstance(body, Mapping):
            raise _bad(path, "must be an object.")
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidParameterValue(f"Missing required field '{path}.name'.")
        if not _NAME_RE.match(name):
            raise _bad(f"{path}.name", f"{name!r} must be 1 to 100 letters, digits, '_', '.' or '-'.")
        metric = body.get("metric")
        if not isinstance(metric, str) or not metric:
            raise InvalidParameterValue(f"Missing required field '{path}.metric'.")
        op = body.get("op")
        if op not in ALERT_OPS:
            raise _bad(f"{path}.op", f"{op!r} is not one of {', '.join(ALERT_OPS)}.")
        threshold = body.get("threshold")
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
        ):
            raise _bad(f"{path}.threshold", f"{threshold!r} must be a finite number.")
        table = body.get("table") or "drift"
        if table not in ALERT_TABLES:
            raise _bad(f"{path}.table", f"{table!r} is not one of {', '.join(ALERT_TABLES)}.")
        drift_type = _opt_text(body, "drift_type", path)
        if drift_type is not None:
            if table != "drift":
                raise _bad(f"{path}.drift_type", "applies to alerts on the drift table only.")
            if drift_type not in DRIFT_TYPES:
                raise _bad(f"{path}.drift_type", f"{drift_type!r} is not one of {', '.join(DRIFT_TYPES)}.")
        slice_key = _opt_text(body, "slice_key", path)
        slice_value = _opt_text(body, "slice_value", path)
        if slice_value is not None and slice_key in (None, "*"):
            raise _bad(f"{path}.slice_value", "needs a 'slice_key' naming the slicing expression.")
        webhook_body = body.get("webhook")
        webhook = (
            Webhook.parse(webhook_body, f"{path}.webhook", kept.webhook if kept is not None else None)
            if webhook_body is not None
            else None
        )
        return cls(
            name=name,
            metric=metric,
            op=str(op),
            threshold=float(threshold),
            table=str(table),
            column_name=_opt_text(body, "column_name", path) or "*",
            drift_type=drift_type,
            granularity=_opt_text(body, "granularity", path),
            slice_key=slice_key,
            slice_value=slice_value,
            model_id=_opt_text(body, "model_id", path),
            webhook=webhook,
        )

    def to_json(self, *, redact: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "table": self.table,
            "metric": self.metric,
            "column_name": self.column_name,
            "op": self.op,
            "threshold": self.threshold,
        }
        for key in ("drift_type", "granularity", "slice_key", "slice_value", "model_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.webhook is not None:
            out["webhook"] = self.webhook.to_json(redact=redact)
        return out

    def breaches(self, value: float) -> bool:
        """Whether ``value`` crosses the threshold (NaN never does)."""
        t = self.threshold
        return bool(
            {
                ">": value > t,
                ">=": value >= t,
                "<": value < t,
                "<=": value <= t,
                "==": value == t,
                "!=": value != t and not math.isnan(value),
            }[self.op]
        )


def parse_alerts(body: Any, current: tuple[AlertDef, ...] = ()) -> tuple[AlertDef, ...]:
    """The ``alerts`` list; ``current``: the stored alerts (whose redacted header values an
    update may send back)."""
    if body is None:
        return ()
    if not isinstance(body, list):
        raise _bad("alerts", "must be a list.")
    if len(body) > MAX_ALERTS:
        raise InvalidParameterValue(f"A monitor takes at most {MAX_ALERTS} alerts.")
    kept = {a.name: a for a in current}
    out = []
    for i, item in enumerate(body):
        name = item.get("name") if isinstance(item, Mapping) else None
        out.append(AlertDef.parse(item, f"alerts[{i}]", kept.get(name) if isinstance(name, str) else None))
    names = [a.name for a in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidParameterValue(f"Alert names must be unique; repeated: {', '.join(repeated)}.")
    return tuple(out)


def failure_webhooks(
    notifications: Mapping[str, Any] | None, current: tuple[Webhook, ...] = ()
) -> tuple[Webhook, ...]:
    """The webhooks of ``notifications.on_failure.webhooks`` (checked; ``current``: the stored
    ones, matched by position, for redacted header values)."""
    if not notifications:
        return ()
    on_failure = notifications.get("on_failure")
    if on_failure is None:
        return ()
    if not isinstance(on_failure, Mapping):
        raise _bad("notifications.on_failure", "must be an object.")
    hooks = on_failure.get("webhooks")
    if hooks is None:
        return ()
    if not isinstance(hooks, list) or len(hooks) > MAX_WEBHOOKS:
        raise _bad("notifications.on_failure.webhooks", f"must be a list of at most {MAX_WEBHOOKS} webhooks.")
    return tuple(
        Webhook.parse(h, f"notifications.on_failure.webhooks[{i}]", current[i] if i < len(current) else None)
        for i, h in enumerate(hooks)
    )
