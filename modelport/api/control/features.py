"""Feature tables and their online copies (``/api/2.0/feature-engineering/tables``).

- ``GET .../tables``: ``{"tables": [info + {"online": state | null}]}``, those the caller may read;
- ``POST .../tables`` ``{"name", "primary_keys", "timestamp_keys"?, "description"?, "columns"}``:
  create (any principal; the creator gets MANAGE);
- ``GET .../tables/{full_name}`` (SELECT), ``DELETE`` (MANAGE);
- ``POST .../tables/{full_name}/write?mode=merge|overwrite`` (MODIFY), the rows as an Arrow IPC
  stream (``application/vnd.apache.arrow.stream``, at most 16 MiB a call);
- ``GET .../tables/{full_name}/data[?version=N][&limit=N]`` (SELECT): the rows, an Arrow IPC stream;
- ``POST .../tables/{full_name}/publish`` ``{"mode": "snapshot"|"triggered"|"continuous"}`` (MANAGE);
- ``POST .../tables/{full_name}/lookup`` ``{"keys": [{...}], "features"?: [...]}`` (SELECT):
  ``{"rows": [{...} | null]}`` from the online store.

Rules and privileges: :mod:`modelport.control.features`. The paths are modelport's: Databricks
reaches feature tables through Unity Catalog and its Python client, not a REST API of this shape.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import MAX_BODY, json_object, read_body
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.errors import InvalidParameterValue

__all__ = ["ARROW_STREAM", "BASE", "routes"]

BASE = "/api/2.0/feature-engineering/tables"
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def _int_param(request: Request, name: str, minimum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise InvalidParameterValue(f"Invalid value for '{name}': must be an integer of at least {minimum}.")
    return value


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


async def list_tables(request: Request) -> Response:
    caller = caller_of(request)
    tables = await run_in_threadpool(services_of(request).features.list_tables, caller)
    return json_response({"tables": tables})


async def create_table(request: Request) -> Response:
    caller = caller_of(request)
    body = await json_object(request)
    return json_response(await run_in_threadpool(services_of(request).features.create, caller, body))


async def get_table(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    return json_response(await run_in_threadpool(services_of(request).features.get, caller, name))


async def drop_table(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    await run_in_threadpool(services_of(request).features.drop, caller, name)
    return json_response({})


async def write_table(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    mode = request.query_params.get("mode", "merge")
    services = services_of(request)
    limit = max(services.settings.max_body_mb << 20, MAX_BODY)  # as api/body_limits.py
    payload = await read_body(request.scope, request.receive, limit, what="a feature table write")
    service = services.features
    return json_response(await run_in_threadpool(service.write, caller, name, payload, mode))


async def read_table(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    version = _int_param(request, "version", 0)
    limit = _int_param(request, "limit", 0)
    service = services_of(request).features

    def work() -> bytes:
        return _ipc(service.read(caller, name, version, limit))

    return Response(await run_in_threadpool(work), media_type=ARROW_STREAM)


async def publish_table(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    body = await json_object(request, required=False)
    mode = body.get("mode", "snapshot")
    return json_response(await run_in_threadpool(services_of(request).features.publish, caller, name, mode))


async def lookup(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["full_name"]
    body: dict[str, Any] = await json_object(request)
    rows = await run_in_threadpool(services_of(request).features.lookup, caller, name, body)
    return json_response({"rows": rows})


routes = [
    Route(BASE, list_tables, methods=["GET"]),
    Route(BASE, create_table, methods=["POST"]),
    Route(f"{BASE}/{{full_name}}", get_table, methods=["GET"]),
    Route(f"{BASE}/{{full_name}}", drop_table, methods=["DELETE"]),
    Route(f"{BASE}/{{full_name}}/write", write_table, methods=["POST"]),
    Route(f"{BASE}/{{full_name}}/data", read_table, methods=["GET"]),
    Route(f"{BASE}/{{full_name}}/publish", publish_table, methods=["POST"]),
    Route(f"{BASE}/{{full_name}}/lookup", lookup, methods=["POST"]),
]
