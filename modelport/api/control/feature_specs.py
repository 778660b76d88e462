"""Feature specs served by endpoints (``/api/2.0/feature-engineering/feature-specs``).

- ``GET .../feature-specs``: ``{"feature_specs": [spec]}``, those the caller may read;
- ``POST .../feature-specs`` ``{"name", "feature_spec": <feature_spec.yaml as JSON>}``: create
  (SELECT on every table it reads; the creator owns it);
- ``GET .../feature-specs/{full_name}`` (owner, admins, SELECT on every table it reads);
- ``DELETE .../feature-specs/{full_name}`` (owner, admins; 400 while an endpoint serves it).

A spec is ``{"name", "owner", "created_ms", "tables", "functions", "inputs", "outputs",
"feature_spec"}``. Rules: :mod:`modelport.control.feature_specs`. The paths are modelport's:
Databricks keeps feature specs in Unity Catalog as functions, created by its Python client.
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

BASE = "/api/2.0/feature-engineering/feature-specs"


async def list_specs(request: Request) -> Response:
    caller = caller_of(request)
    specs = await run_in_threadpool(services_of(request).feature_specs.list, caller)
    return json_response({"feature_specs": specs})


async def create_spec(request: Request) -> Response:
    caller = caller_of(request)
    body = await json_object(request)
    return json_response(await run_in_threadpool(services_of(request).feature_specs.create, caller, body))


async def get_spec(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    return json_response(await run_in_threadpool(services_of(request).feature_specs.get, caller, name))


async def delete_spec(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    await run_in_threadpool(services_of(request).feature_specs.delete, caller, name)
    return json_response({})


routes = [
    Route(BASE, list_specs, methods=["GET"]),
    Route(BASE, create_spec, methods=["POST"]),
    Route(f"{BASE}/{{full_name}}", get_spec, methods=["GET"]),
    Route(f"{BASE}/{{full_name}}", delete_spec, methods=["DELETE"]),
]
