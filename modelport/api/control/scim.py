"""A minimal SCIM 2.0 surface (/api/2.0/preview/scim/v2) for users, service principals and groups.

Enough for ``WorkspaceClient().users / groups / service_principals / current_user`` to
create, list, get, delete and change group members. Resource ids are modelport's
principal ids; where SCIM expects an id, a principal's name is accepted too.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.control.identity import IdentityService
from modelport.errors import EndpointNotFound, InvalidParameterValue
from modelport.spec.identity import ADMINS_GROUP, Caller
from modelport.store.records import PrincipalRecord

BASE = "/api/2.0/preview/scim/v2"
_KINDS = {"Users": "user", "ServicePrincipals": "service_principal", "Groups": "group"}
_SCHEMA = {
    "user": "urn:ietf:params:scim:schemas:core:2.0:User",
    "service_principal": "urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal",
    "group": "urn:ietf:params:scim:schemas:core:2.0:Group",
}
_MEMBER_FILTER = re.compile(r'members\[value eq "?([^"\]]+)"?\]')


def render(identity: IdentityService, p: PrincipalRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(p.id),
        "displayName": p.display_name or p.name,
        "active": p.active,
        "schemas": [_SCHEMA[p.kind]],
    }
    if p.kind == "user":
        out["userName"] = p.name
        out["emails"] = [{"value": p.name, "primary": True}] if "@" in p.name else []
    elif p.kind == "service_principal":
        out["applicationId"] = p.name
    else:
        out["displayName"] = p.name
        out["members"] = [{"display": m.name, "value": str(m.id)} for m in identity.members(p)]
    if p.kind != "group":
        out["groups"] = [
            {"display": g, "value": str(gid)} for g, gid in zip(p.groups, p.group_ids, strict=True)
        ]
    return out


def _values(items: Any, field: str) -> list[str]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidParameterValue(
            f"Invalid value for '{field}': must be a list of {{\"value\": ...}} objects."
        )
    out = []
    for item in items:
        value = item.get("value") or item.get("display") if isinstance(item, dict) else item
        if not value:
            raise InvalidParameterValue(f"Invalid value for '{field}': every entry needs a 'value'.")
        out.append(str(value))
    return out


def _kind(request: Request) -> str:
    kind = str(request.path_params["kind"])
    if kind not in _KINDS:
        raise EndpointNotFound(f"No API found for '{request.method} {request.url.path}'.")
    return _KINDS[kind]


async def me(request: Request) -> Response:
    caller = caller_of(request)
    identity = services_of(request).identity
    record = await run_in_threadpool(identity.find, str(caller.id))
    return json_response(render(identity, record))


async def list_principals(request: Request) -> Response:
    caller = caller_of(request)
    identity = services_of(request).identity
    kind = _kind(request)

    def work() -> list[dict[str, Any]]:
        return [render(identity, p) for p in identity.list_principals(caller, kind)]

    items = await run_in_threadpool(work)
    return json_response(
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": len(items),
            "itemsPerPage": len(items),
            "startIndex": 1,
            "Resources": items,
        }
    )


def _create(identity: IdentityService, caller: Caller, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    groups = _values(data.get("groups"), "groups")
    if data.get("modelport_admin"):
        groups.append(ADMINS_GROUP)
    if kind == "user":
        record = identity.create_principal(
            caller, data.get("userName"), kind, display_name=data.get("displayName"), groups=groups
        )
    elif kind == "service_principal":
        record = identity.create_principal(
            caller, data.get("applicationId"), kind, display_name=data.get("displayName"), groups=groups
        )
    else:
        record = identity.create_principal(
            caller, data.get("displayName"), kind, members=_values(data.get("members"), "members")
        )
    return render(identity, record)


async def create_principal(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request)
    identity = services_of(request).identity
    return json_response(await run_in_threadpool(_create, identity, caller, _kind(request), data), status=201)


async def get_principal(request: Request) -> Response:
    caller_of(request)
    identity = services_of(request).identity
    kind = _kind(request)

    def work() -> dict[str, Any]:
        return render(identity, identity.find(str(request.path_params["id"]), kind))

    return json_response(await run_in_threadpool(work))


async def delete_principal(request: Request) -> Response:
    caller = caller_of(request)
    identity = services_of(request).identity
    await run_in_threadpool(identity.delete_principal, caller, str(request.path_params["id"]), _kind(request))
    return Response(status_code=204)


async def patch_group(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request)
    identity = services_of(request).identity
    add: list[str] = []
    remove: list[str] = []
    operations = data.get("Operations") or []
    if not isinstance(operations, list):
        raise InvalidParameterValue("Invalid value for 'Operations': must be a list of operations.")
    for i, op in enumerate(operations):
        if not isinstance(op, dict):  # e.g. {"Operations": [[]]}: a 400, not a 500
            raise InvalidParameterValue(f"Invalid value for 'Operations[{i}]': must be an object.")
        verb = str(op.get("op", "")).lower()
        path = str(op.get("path") or "members")
        if verb == "add" and path == "members":
            add += _values(op.get("value"), f"Operations[{i}].value")
        elif verb == "remove":
            match = _MEMBER_FILTER.fullmatch(path)
            remove += [match.group(1)] if match else _values(op.get("value"), f"Operations[{i}].value")
        else:
            raise InvalidParameterValue(
                f"Invalid value for 'Operations[{i}]': only add/remove of members is supported."
            )
    ref = str(request.path_params["id"])

    def work() -> dict[str, Any]:
        return render(identity, identity.change_members(caller, ref, add, remove))

    return json_response(await run_in_threadpool(work))


def _active_of(operations: Any) -> bool:
    """The ``active`` value a PATCH of a user or service principal sets, in either of SCIM's
    shapes: ``{"op": "replace", "path": "active", "value": false}`` or
    ``{"op": "replace", "value": {"active": false}}``. Nothing else may be patched."""
    if not isinstance(operations, list) or not operations:
        raise InvalidParameterValue("Invalid value for 'Operations': must be a non-empty list of operations.")
    found: bool | None = None
    for i, op in enumerate(operations):
        if not isinstance(op, dict) or str(op.get("op", "")).lower() not in ("replace", "add"):
            raise InvalidParameterValue(
                f"Invalid value for 'Operations[{i}]': only replace of 'active' is supported on users "
                "and service principals."
            )
        value = op.get("value")
        if str(op.get("path") or "").lower() == "active":
            pass
        elif not op.get("path") and isinstance(value, dict) and set(value) == {"active"}:
            value = value["active"]
        else:
            raise InvalidParameterValue(
                f"Invalid value for 'Operations[{i}]': only replace of 'active' is supported on users "
                "and service principals."
            )
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise InvalidParameterValue(
                f"Invalid value for 'Operations[{i}].value': 'active' must be true or false."
            )
        found = value
    assert found is not None
    return found


async def patch_principal(request: Request) -> Response:
    """``PATCH .../Users/{id}`` and ``.../ServicePrincipals/{id}``: deactivate or reactivate
    (admins). ``.../Groups/{id}`` changes members (:func:`patch_group`)."""
    kind = _kind(request)
    if kind == "group":
        return await patch_group(request)
    caller = caller_of(request)
    data = await json_object(request)
    active = _active_of(data.get("Operations"))
    identity = services_of(request).identity
    ref = str(request.path_params["id"])

    def work() -> dict[str, Any]:
        return render(identity, identity.set_active(caller, ref, kind, active))

    return json_response(await run_in_threadpool(work))


class _KindConvertor(Convertor[str]):
    """Only the three kinds match ``{kind}``: ``POST /Me`` is then a 405 (``/Me`` takes GET), not
    a create request read before its kind was checked."""

    regex = "|".join(_KINDS)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("scim_kind", _KindConvertor())
_KIND_PATH = "{kind:scim_kind}"
routes = [
    Route(f"{BASE}/Me", me, methods=["GET"]),
    Route(f"{BASE}/Groups/{{id}}", patch_group, methods=["PATCH"]),
    Route(f"{BASE}/{_KIND_PATH}", list_principals, methods=["GET"]),
    Route(f"{BASE}/{_KIND_PATH}", create_principal, methods=["POST"]),
    Route(f"{BASE}/{_KIND_PATH}/{{id}}", get_principal, methods=["GET"]),
    Route(f"{BASE}/{_KIND_PATH}/{{id}}", delete_principal, methods=["DELETE"]),
    Route(f"{BASE}/{_KIND_PATH}/{{id}}", patch_principal, methods=["PATCH"]),
]
