"""Routes of an endpoint's config history (modelport extension, ``control/config_history.py``):

- ``GET /api/2.0/serving-endpoints/{name}/config-versions`` (CAN_VIEW):
  ``{"config_versions": [...], "next_page_token"}``, newest first (``max_results`` 1-500,
  default 50; ``page_token`` as the previous page returned it);
- ``GET .../config-versions/{version}`` (CAN_VIEW): one version in full;
- ``POST .../config-versions/{version}/rollback`` (CAN_MANAGE, body ``{"reason": str}``
  optional): the version serves again as a new version; the endpoint plus ``rollback``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.control.config_history import parse_max_results
from modelport.errors import InvalidParameterValue

__all__ = ["BASE", "MAX_REASON_CHARS", "routes"]

BASE = "/api/2.0/serving-endpoints/{name}/config-versions"
#: The longest rollback reason kept (the event log records it).
MAX_REASON_CHARS = 1000


def _name(request: Request) -> str:
    return str(request.path_params["name"])


def _version(request: Request) -> int:
    raw = str(request.path_params["version"])
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidParameterValue(f"Invalid value for 'version': '{raw}' is not a config version number.")
    return int(raw)


async def list_versions(request: Request) -> Response:
    caller = caller_of(request)
    max_results = parse_max_results(request.query_params.get("max_results"))
    token = request.query_params.get("page_token") or None
    svc = services_of(request).endpoints
    return json_response(
        await run_in_threadpool(svc.config_versions, caller, _name(request), max_results, token)
    )


async def get_version(request: Request) -> Response:
    caller = caller_of(request)
    svc = services_of(request).endpoints
    return json_response(
        await run_in_threadpool(svc.config_version, caller, _name(request), _version(request))
    )


async def rollback(request: Request) -> Response:
    caller = caller_of(request)
    version = _version(request)
    data = await json_object(request, required=False)
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidParameterValue("Invalid value for 'reason': must be a string.")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise InvalidParameterValue(
            f"Invalid value for 'reason': {len(reason)} characters; the limit is {MAX_REASON_CHARS}."
        )
    svc = services_of(request).endpoints
    return json_response(
        await run_in_threadpool(svc.rollback, caller, _name(request), version, reason or None)
    )


routes = [
    Route(BASE, list_versions, methods=["GET"]),
    Route(f"{BASE}/{{version}}", get_version, methods=["GET"]),
    Route(f"{BASE}/{{version}}/rollback", rollback, methods=["POST"]),
]
