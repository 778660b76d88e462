"""Quality monitors on tables, as Databricks' ``quality_monitors`` API names them, so that
``WorkspaceClient().quality_monitors`` works unmodified:

- ``POST /api/2.1/unity-catalog/tables/{table_name}/monitor``: create (``MonitorInfo``);
- ``GET``, ``PUT`` (update: replaces the configuration), ``DELETE`` the same path;
- ``POST .../monitor/refreshes``: queue a refresh (``MonitorRefreshInfo``, PENDING);
- ``GET .../monitor/refreshes``: ``{"refreshes": [...]}``, newest first;
- ``GET .../monitor/refreshes/{refresh_id}``; ``POST .../refreshes/{refresh_id}/cancel``;
- modelport's ``GET /api/2.0/modelport/monitors/alerts?endpoint=NAME`` (or ``?table_name=``):
  the alerts, with their state, of the monitors on an endpoint's inference tables.

Rules and privileges: :mod:`modelport.control.monitors`; shapes: :mod:`modelport.spec.monitor`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.control.monitors import MonitorService

__all__ = ["ALERTS", "BASE", "routes"]

BASE = "/api/2.1/unity-catalog/tables/{table_name}/monitor"
ALERTS = "/api/2.0/modelport/monitors/alerts"


def _service(request: Request) -> MonitorService:
    service = services_of(request).monitors
    assert service is not None, "build_services sets it"
    return service


async def create_monitor(request: Request) -> Response:
    caller = caller_of(request)
    body = await json_object(request)
    table = request.path_params["table_name"]
    return json_response(await run_in_threadpool(_service(request).create, caller, table, body))


async def get_monitor(request: Request) -> Response:
    caller = caller_of(request)
    table = request.path_params["table_name"]
    return json_response(await run_in_threadpool(_service(request).get, caller, table))


async def update_monitor(request: Request) -> Response:
    caller = caller_of(request)
    body = await json_object(request)
    table = request.path_params["table_name"]
    return json_response(await run_in_threadpool(_service(request).update, caller, table, body))


async def delete_monitor(request: Request) -> Response:
    caller = caller_of(request)
    table = request.path_params["table_name"]
    await run_in_threadpool(_service(request).delete, caller, table)
    return json_response({})


async def run_refresh(request: Request) -> Response:
    caller = caller_of(request)
    table = request.path_params["table_name"]
    return json_response(await run_in_threadpool(_service(request).run_refresh, caller, table))


async def list_refreshes(request: Request) -> Response:
    caller = caller_of(request)
    table = request.path_params["table_name"]
    refreshes = await run_in_threadpool(_service(request).list_refreshes, caller, table)
    return json_response({"refreshes": refreshes})


async def get_refresh(request: Request) -> Response:
    caller = caller_of(request)
    table, refresh_id = request.path_params["table_name"], request.path_params["refresh_id"]
    return json_response(await run_in_threadpool(_service(request).get_refresh, caller, table, refresh_id))


async def cancel_refresh(request: Request) -> Response:
    caller = caller_of(request)
    table, refresh_id = request.path_params["table_name"], request.path_params["refresh_id"]
    await run_in_threadpool(_service(request).cancel_refresh, caller, table, refresh_id)
    return json_response({})


async def list_alerts(request: Request) -> Response:
    caller = caller_of(request)
    endpoint = request.query_params.get("endpoint")
    table = request.query_params.get("table_name")
    return json_response(await run_in_threadpool(_service(request).alerts, caller, endpoint, table))


routes = [
    Route(BASE, create_monitor, methods=["POST"]),
    Route(BASE, get_monitor, methods=["GET"]),
    Route(BASE, update_monitor, methods=["PUT"]),
    Route(BASE, delete_monitor, methods=["DELETE"]),
    Route(f"{BASE}/refreshes", run_refresh, methods=["POST"]),
    Route(f"{BASE}/refreshes", list_refreshes, methods=["GET"]),
    Route(f"{BASE}/refreshes/{{refresh_id}}", get_refresh, methods=["GET"]),
    Route(f"{BASE}/refreshes/{{refresh_id}}/cancel", cancel_refresh, methods=["POST"]),
    Route(ALERTS, list_alerts, methods=["GET"]),
]
