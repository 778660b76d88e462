"""Secret routes compatible with Databricks' secrets API (``WorkspaceClient().secrets``).

POST routes read a JSON body and answer ``{}``; GET routes read query parameters, as the
databricks-sdk sends them.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of


async def create_scope(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request)
    service = services_of(request).secrets
    await run_in_threadpool(
        service.create_scope,
        caller,
        data.get("scope"),
        data.get("initial_manage_principal"),
        data.get("scope_backend_type"),
    )
    return json_response({})


async def delete_scope(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request)
    await run_in_threadpool(services_of(request).secrets.delete_scope, caller, data.get("scope"))
    return json_response({})


async def list_scopes(request: Request) -> Response:
    caller = caller_of(request)
    scopes = await run_in_threadpool(services_of(request).secrets.list_scopes, caller)
    return json_response({"scopes": scopes})


async def put_secret(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request)
    await run_in_threadpool(services_of(request).secrets.put_secret, caller, data)
    return json_response({})


async def delete_secret(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request)
    await run_in_threadpool(
        services_of(request).secrets.delete_secret, caller, data.get("scope"), data.get("key")
    )
    return json_response({})


def _query(request: Request) -> dict[str, Any]:
    return dict(request.query_params)


async def list_secrets(request: Request) -> Response:
    caller = caller_of(request)
    query = _query(request)
    found = await run_in_threadpool(services_of(request).secrets.list_secrets, caller, query.get("scope"))
    return json_response({"secrets": found})


async def get_secret(request: Request) -> Response:
    caller = caller_of(request)
    query = _query(request)
    secret = await run_in_threadpool(
        services_of(request).secrets.get_secret, caller, query.get("scope"), query.get("key")
    )
    return json_response(secret)


async def put_acl(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request)
    await run_in_threadpool(
        services_of(request).secrets.put_acl,
        caller,
        data.get("scope"),
        data.get("principal"),
        data.get("permission"),
    )
    return json_response({})


async def delete_acl(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request)
    await run_in_threadpool(
        services_of(request).secrets.delete_acl, caller, data.get("scope"), data.get("principal")
    )
    return json_response({})


async def list_acls(request: Request) -> Response:
    caller = caller_of(request)
    query = _query(request)
    items = await run_in_threadpool(services_of(request).secrets.list_acls, caller, query.get("scope"))
    return json_response({"items": items})


async def get_acl(request: Request) -> Response:
    caller = caller_of(request)
    query = _query(request)
    item = await run_in_threadpool(
        services_of(request).secrets.get_acl, caller, query.get("scope"), query.get("principal")
    )
    return json_response(item)


async def rotate_key(request: Request) -> Response:
    """modelport's own: rewrite every secret with the first configured key (admins only)."""
    caller = caller_of(request)
    count = await run_in_threadpool(services_of(request).secrets.rotate_key, caller)
    return json_response({"rewritten": count})


routes = [
    Route("/api/2.0/secrets/scopes/create", create_scope, methods=["POST"]),
    Route("/api/2.0/secrets/scopes/delete", delete_scope, methods=["POST"]),
    Route("/api/2.0/secrets/scopes/list", list_scopes, methods=["GET"]),
    Route("/api/2.0/secrets/put", put_secret, methods=["POST"]),
    Route("/api/2.0/secrets/delete", delete_secret, methods=["POST"]),
    Route("/api/2.0/secrets/list", list_secrets, methods=["GET"]),
    Route("/api/2.0/secrets/get", get_secret, methods=["GET"]),
    Route("/api/2.0/secrets/acls/put", put_acl, methods=["POST"]),
    Route("/api/2.0/secrets/acls/delete", delete_acl, methods=["POST"]),
    Route("/api/2.0/secrets/acls/list", list_acls, methods=["GET"]),
    Route("/api/2.0/secrets/acls/get", get_acl, methods=["GET"]),
    Route("/api/2.0/modelport/secrets/rotate-key", rotate_key, methods=["POST"]),
]
