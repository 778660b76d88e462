"""Token routes compatible with Databricks' token and token-management APIs."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.control.identity import NewToken
from modelport.errors import InvalidParameterValue
from modelport.store.records import TokenRecord


def _info(token: TokenRecord, *, management: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "token_id": token.id,
        "creation_time": token.created_ms,
        "expiry_time": token.expiry_ms if token.expiry_ms is not None else -1,
    }
    if token.comment is not None:
        out["comment"] = token.comment
    if management:
        out.update(
            owner_id=token.principal_id, created_by_username=token.created_by, owner_name=token.principal_name
        )
    return out


def _lifetime(data: dict[str, Any]) -> int | None:
    value = data.get("lifetime_seconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("-").isdecimal():
        raise InvalidParameterValue(f"Invalid value for 'lifetime_seconds': {value!r} is not a whole number.")
    return int(value)


def _comment(data: dict[str, Any]) -> str | None:
    value = data.get("comment")
    if value is not None and not isinstance(value, str):
        raise InvalidParameterValue("Invalid value for 'comment': must be a string.")
    return value


def _new(token: NewToken) -> dict[str, Any]:
    return {"token_value": token.value, "token_info": _info(token.record)}


async def create_token(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request, required=False)
    identity = services_of(request).identity
    return json_response(
        _new(await run_in_threadpool(identity.create_token, caller, _lifetime(data), _comment(data)))
    )


async def list_tokens(request: Request) -> Response:
    caller = caller_of(request)
    tokens = await run_in_threadpool(services_of(request).identity.list_tokens, caller)
    return json_response({"token_infos": [_info(t) for t in tokens]})


async def delete_token(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request, required=False)
    await run_in_threadpool(services_of(request).identity.delete_token, caller, data.get("token_id"))
    return json_response({})


async def create_obo_token(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request)
    if data.get("application_id"):
        principal, kind = str(data["application_id"]), "service_principal"
    elif data.get("user_name"):
        principal, kind = str(data["user_name"]), "user"
    else:
        raise InvalidParameterValue(
            "Missing required field 'application_id' (a service principal) or 'user_name' (a user)."
        )
    identity = services_of(request).identity
    new = await run_in_threadpool(
        identity.create_token_for, caller, principal, kind, _lifetime(data), _comment(data)
    )
    return json_response({"token_value": new.value, "token_info": _info(new.record, management=True)})


async def list_all_tokens(request: Request) -> Response:
    caller = caller_of(request)
    identity = services_of(request).identity
    tokens = await run_in_threadpool(lambda: identity.list_tokens(caller, all_principals=True))
    return json_response({"token_infos": [_info(t, management=True) for t in tokens]})


async def delete_any_token(request: Request) -> Response:
    caller = caller_of(request)
    await run_in_threadpool(
        services_of(request).identity.delete_token, caller, str(request.path_params["token_id"])
    )
    return json_response({})


routes = [
    Route("/api/2.0/token/create", create_token, methods=["POST"]),
    Route("/api/2.0/token/list", list_tokens, methods=["GET"]),
    Route("/api/2.0/token/delete", delete_token, methods=["POST"]),
    Route("/api/2.0/token-management/on-behalf-of/tokens", create_obo_token, methods=["POST"]),
    Route("/api/2.0/token-management/tokens", list_all_tokens, methods=["GET"]),
    Route("/api/2.0/token-management/tokens/{token_id}", delete_any_token, methods=["DELETE"]),
]
