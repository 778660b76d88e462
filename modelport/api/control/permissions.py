"""Routes under /api/2.0/permissions/serving-endpoints (compat-api.md §A.1 #17-#20)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.errors import InvalidParameterValue
from modelport.spec.permissions import PermissionLevel

BASE = "/api/2.0/permissions/serving-endpoints/{endpoint_id}"


async def get_permissions(request: Request) -> Response:
    caller = caller_of(request)
    svc = services_of(request).endpoints

    def work() -> dict[str, object]:
        endpoint = svc.permissions(caller, str(request.path_params["endpoint_id"]), PermissionLevel.CAN_VIEW)
        return svc.access.render(endpoint)

    return json_response(await run_in_threadpool(work))


async def write_permissions(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request, required=False)
    entries = data.get("access_control_list", [])
    if not isinstance(entries, list):
        raise InvalidParameterValue("Invalid value for 'access_control_list': must be a list.")
    svc = services_of(request).endpoints
    replace = request.method == "PUT"

    endpoint_id = str(request.path_params["endpoint_id"])
    return json_response(
        await run_in_threadpool(lambda: svc.write_permissions(caller, endpoint_id, entries, replace=replace))
    )


async def permission_levels(request: Request) -> Response:
    caller = caller_of(request)
    svc = services_of(request).endpoints
    await run_in_threadpool(
        svc.permissions, caller, str(request.path_params["endpoint_id"]), PermissionLevel.CAN_VIEW
    )
    return json_response(svc.access.levels())


routes = [
    Route(BASE, get_permissions, methods=["GET"]),
    Route(BASE, write_permissions, methods=["PUT", "PATCH"]),
    Route(f"{BASE}/permissionLevels", permission_levels, methods=["GET"]),
]
