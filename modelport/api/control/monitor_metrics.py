"""What the web UI's monitor pages read: the monitors a caller may see, and a monitor's metrics
tables as compact series (not part of the Databricks API, which reads them through SQL).

- ``GET /api/2.0/modelport/monitors``: ``{"monitors": [...]}``, the monitors of the tables the
  caller holds SELECT on, each the monitor's ``MonitorInfo`` with ``latest_refresh`` (its newest
  refresh, when any) and ``drift``: the newest window's CONSECUTIVE drift of the whole table
  (``{"window_start_ms", "granularity", "drifted_columns": [...]}``, null before a refresh or
  without SELECT on the drift metrics table);
- ``GET /api/2.0/modelport/monitors/metrics?table_name=...&kind=drift|profile``: rows of the
  metrics table, filtered by ``granularity`` (default the monitor's first), ``slice_key`` and
  ``slice_value`` (default: the whole table, no slice), ``column_name`` (repeatable),
  ``drift_type`` (drift only) and ``log_type`` (profile only, default INPUT); answers
  ``{"table_name", "kind", "metrics_table", "granularity", "granularities", "slices",
  "column_names", "model_ids", "columns", "rows", "truncated"}``: ``columns`` names each row's
  values (windows as epoch milliseconds, ``model_id`` null for all models, struct metrics
  flattened: ``ks_pvalue``, ``f1_score_weighted``...), oldest window first, at most
  :data:`MAX_ROWS`.

Privileges: SELECT on the monitored table (to see the monitor: its 403, or 404 without a
monitor) and SELECT on the metrics table read (403 naming it). A metrics table not written yet
(no refresh has succeeded) answers empty series.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.control.monitor_metrics import list_for, metrics_for
from modelport.control.monitors import MonitorService
from modelport.control.table_acl import TableAccess
from modelport.tables.query import json_cell

__all__ = ["routes"]

BASE = "/api/2.0/modelport/monitors"


def _service(request: Request) -> MonitorService:
    service = services_of(request).monitors
    assert service is not None, "build_services sets it"
    return service


async def list_monitors(request: Request) -> Response:
    caller = caller_of(request)
    service = _service(request)
    access = TableAccess(services_of(request).db, service.root)
    monitors = await run_in_threadpool(list_for, service, access, caller)
    return json_response({"monitors": json_cell(monitors)})


async def monitor_metrics(request: Request) -> Response:
    caller = caller_of(request)
    service = _service(request)
    access = TableAccess(services_of(request).db, service.root)
    query = request.query_params
    params: dict[str, Any] = {k: query.get(k) for k in query if k != "column_name"}
    params["column_name"] = query.getlist("column_name")
    answer = await run_in_threadpool(metrics_for, service, access, caller, params)
    return json_response(answer)


routes = [
    Route(BASE, list_monitors, methods=["GET"]),
    Route(f"{BASE}/metrics", monitor_metrics, methods=["GET"]),
]
