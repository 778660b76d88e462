"""Feature functions (``/api/2.0/feature-engineering/functions``).

- ``GET .../functions``: ``{"functions": [function]}`` (any authenticated principal);
- ``POST .../functions`` ``{"name", "parameters": [{"name", "type"}], "return_type",
  "entry_point", "source", "description"?}``: register (admins only);
- ``GET .../functions/{full_name}`` (any authenticated principal);
- ``DELETE .../functions/{full_name}`` (admins only).

A function is the registered body plus ``"owner"`` and ``"created_ms"``. Rules:
:mod:`modelport.control.feature_functions`. The paths are modelport's: Databricks keeps feature
functions in Unity Catalog as Python UDFs, created with SQL.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of

__all__ = ["BASE", "routes"]

BASE = "/api/2.0/feature-engineering/functions"


async def list_functions(request: Request) -> Response:
    caller = caller_of(request)
    functions = await run_in_threadpool(services_of(request).feature_functions.list, caller)
    return json_response({"functions": functions})


async def create_function(request: Request) -> Response:
    caller = caller_of(request)
    body = await json_object(request)
    service = services_of(request).feature_functions
    return json_response(await run_in_threadpool(service.create, caller, body))


async def get_function(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    return json_response(await run_in_threadpool(services_of(request).feature_functions.get, caller, name))


async def delete_function(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    await run_in_threadpool(services_of(request).feature_functions.delete, caller, name)
    return json_response({})


routes = [
    Route(BASE, list_functions, methods=["GET"]),
    Route(BASE, create_function, methods=["POST"]),
    Route(f"{BASE}/{{full_name}}", get_function, methods=["GET"]),
    Route(f"{BASE}/{{full_name}}", delete_function, methods=["DELETE"]),
]
