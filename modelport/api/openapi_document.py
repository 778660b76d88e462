"""modelport's own OpenAPI 3.1 document, served at ``GET /api/2.0/modelport/openapi.json``.

The document is built from the server's route table (the Starlette routes of ``api/app.py``
and the data-plane router's paths, :func:`route_table`) and the per-route descriptions of
``api/openapi_operations.py``. A route with no description, or a description with no route,
is listed by :func:`mismatches`; the unit tests fail on either. The document is public, like
``/health``: it describes the open-source server's API and nothing of this installation
(no endpoint, model or principal names), and tools fetch it without a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from modelport import __version__
from modelport.api.data.router import PATHS as DATA_PLANE_PATHS
from modelport.api.openapi_operations import OPERATIONS
from modelport.api.openapi_schemas import ERROR, Operation, Schema, model_schema

__all__ = ["PATH", "build_document", "mismatches", "route_table", "routes"]

PATH = "/api/2.0/modelport/openapi.json"
_CONVERTOR = re.compile(r"\{(\w+)(?::\w+)?\}")
_PARAM = re.compile(r"\{(\w+)\}")
_TAGS = {
    "system": "Discovery, health, metrics, the UI and this document.",
    "serving-endpoints": "The control plane of serving endpoints (Databricks-compatible).",
    "permissions": "Grants on serving endpoints and, as they are added, on other objects.",
    "secrets": "Secret scopes, secrets and their ACLs (Databricks-compatible).",
    "tokens": "Personal access tokens and token management (Databricks-compatible).",
    "scim": "Users, service principals and groups (SCIM 2.0, as Databricks).",
    "tables": "modelport's routes over the inference, usage and other Delta tables.",
    "queries": "The data plane: invocations and the OpenAI-compatible routes.",
}


def route_table(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    """``(METHOD, path)`` of every route the server answers besides MLflow's: the Starlette
    routes (HEAD, which Starlette adds to each GET, left out; a mount as ``{prefix}/{path}``),
    then the data plane's (POST only; other methods are answered 405)."""
    out: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, Route):
            path = _CONVERTOR.sub(r"{\1}", route.path)
            out += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
        elif isinstance(route, Mount):
            out.append(("GET", f"{route.path}/{{path}}"))
    out += [("POST", path) for path in DATA_PLANE_PATHS]
    return out


def mismatches(
    table: Sequence[tuple[str, str]], operations: Sequence[Operation] = OPERATIONS
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(routes without a description, descriptions without a route)."""
    described = {op.key for op in operations}
    served = set(table)
    return [r for r in table if r not in described], [op.key for op in operations if op.key not in served]


def _body(op: Operation, components: dict[str, Schema]) -> Schema:
    if isinstance(op.body, type) and issubclass(op.body, BaseModel):
        schema = model_schema(op.body, components, op.required, op.fields)
    else:
        schema = dict(op.body or {})
        if op.fields:
            schema["properties"] = {**schema.get("properties", {}), **op.fields}
        if op.required:
            schema["required"] = sorted(set(schema.get("required", [])) | set(op.required))
    return {"required": op.body_required, "content": {"application/json": {"schema": schema}}}


def _operation(op: Operation, components: dict[str, Schema]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": op.path_params.get(name, {"type": "string", "minLength": 1}),
        }
        for name in _PARAM.findall(op.path)
    ]
    for q in op.query:
        param: dict[str, Any] = {"name": q.name, "in": "query", "required": q.required, "schema": q.schema}
        if q.description:
            param["description"] = q.description
        params.append(param)
    success: dict[str, Any] = {"description": op.summary}
    if op.media_type:
        success["content"] = {op.media_type: {"schema": op.response}}
    if op.links:
        success["links"] = {
            name: {"operationId": target, "parameters": parameters}
            for name, (target, parameters) in op.links.items()
        }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "x-modelport-access": op.access,
        "parameters": params,
        "responses": {
            str(op.status): success,
            "4XX": {"description": "A refused request.", **error},
            "5XX": {
                "description": "A fault on the server's side (with Retry-After when retrying helps).",
                **error,
            },
        },
    }
    if op.public:
        out["security"] = []
    if op.body is not None:
        out["requestBody"] = _body(op, components)
    return out


def build_document(
    table: Sequence[tuple[str, str]], operations: Sequence[Operation] = OPERATIONS
) -> dict[str, Any]:
    """The document of the routes in ``table`` that have a description (in the table's order)."""
    by_key = {op.key: op for op in operations}
    components: dict[str, Schema] = {"Error": ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for key in table:
        op = by_key.get(key)
        if op is not None:
            paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelport",
            "version": __version__,
            "description": "modelport's REST API besides the embedded MLflow registry's own. Every "
            "route takes `Authorization: Bearer <token>` unless marked public; every error is "
            '`{"error_code": ..., "message": ...}`.',
        },
        "tags": [{"name": name, "description": text} for name, text in _TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


async def openapi_document(request: Request) -> Response:
    """Built once per server (the route table does not change while it runs)."""
    cached: bytes | None = getattr(request.app.state, "openapi_document", None)
    if cached is None:
        cached = orjson.dumps(build_document(route_table(request.app.routes)))
        request.app.state.openapi_document = cached
    return Response(cached, media_type="application/json")


routes = [Route(PATH, openapi_document, methods=["GET"])]
