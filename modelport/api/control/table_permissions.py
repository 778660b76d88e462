"""Grants on the tables modelport writes and serves, in two shapes.

- Databricks' permissions API: ``GET/PUT/PATCH /api/2.0/permissions/tables/{full_name}``
  (``access_control_list`` of ``user_name``/``group_name``/``service_principal_name`` and
  ``permission_level`` SELECT, MODIFY or MANAGE) and ``GET .../permissionLevels``.
- Unity Catalog's grants API: ``GET/PATCH /api/2.1/unity-catalog/permissions/table/{full_name}``
  (``{"changes": [{"principal", "add", "remove"}]}``, answering ``{"privilege_assignments"}``).

Reading the grants needs SELECT on the table; changing them needs MANAGE (admins, endpoint
managers on their inference tables, MANAGE grantees). Rules: :mod:`modelport.control.table_acl`.
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
from modelport.control.table_acl import TableAccess
from modelport.errors import InvalidParameterValue
from modelport.spec.table_privileges import TablePrivilege

__all__ = ["routes"]

PERMISSIONS = "/api/2.0/permissions/tables/{full_name}"
GRANTS = "/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}"


def _access(request: Request) -> TableAccess:
    services = services_of(request)
    return TableAccess(services.db, services.settings.tables_location)


async def get_permissions(request: Request) -> Response:
    caller = caller_of(request)
    access = _access(request)

    def work() -> dict[str, Any]:
        name, known = access.require(caller, request.path_params["full_name"], TablePrivilege.SELECT)
        return access.render_acl(name, known)

    return json_response(await run_in_threadpool(work))


async def write_permissions(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request, required=False)
    entries = data.get("access_control_list", [])
    access = _access(request)
    replace = request.method == "PUT"
    full_name = request.path_params["full_name"]
    return json_response(
        await run_in_threadpool(lambda: access.write_acl(caller, full_name, entries, replace=replace))
    )


async def permission_levels(request: Request) -> Response:
    caller = caller_of(request)
    access = _access(request)
    await run_in_threadpool(access.require, caller, request.path_params["full_name"], TablePrivilege.SELECT)
    return json_response(access.levels())


def _securable(request: Request) -> str:
    kind = str(request.path_params["securable_type"])
    if kind.lower() != "table":
        raise InvalidParameterValue(
            f"Securable type '{kind}' is not supported: modelport grants privileges on tables only."
        )
    return str(request.path_params["full_name"])


async def get_grants(request: Request) -> Response:
    caller = caller_of(request)
    full_name = _securable(request)
    principal = request.query_params.get("principal") or None
    access = _access(request)

    def work() -> dict[str, Any]:
        name, _ = access.require(caller, full_name, TablePrivilege.SELECT)
        return access.render_grants(name, principal)

    return json_response(await run_in_threadpool(work))


async def update_grants(request: Request) -> Response:
    caller = caller_of(request)
    full_name = _securable(request)
    data = await json_object(request, required=False)
    omit = data.get("omit_permissions_in_response", False)
    if not isinstance(omit, bool):
        raise InvalidParameterValue("Invalid value for 'omit_permissions_in_response': must be a boolean.")
    access = _access(request)

    def work() -> dict[str, Any]:
        name = access.update_grants(caller, full_name, data.get("changes"))
        return {} if omit else access.render_grants(name)

    return json_response(await run_in_threadpool(work))


routes = [
    Route(PERMISSIONS, get_permissions, methods=["GET"]),
    Route(PERMISSIONS, write_permissions, methods=["PUT", "PATCH"]),
    Route(f"{PERMISSIONS}/permissionLevels", permission_levels, methods=["GET"]),
    Route(GRANTS, get_grants, methods=["GET"]),
    Route(GRANTS, update_grants, methods=["PATCH"]),
]
