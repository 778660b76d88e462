"""Routes under /api/2.0/permissions/registered-models and /api/2.0/permissions/experiments.

The same shapes as the serving-endpoint permissions (``api/control/permissions.py``). A
registered model's id is its name (URL-encoded in the path); an experiment's is its id.
Reading the permissions needs CAN_READ on the object, changing them CAN_MANAGE.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import Services, caller_of, services_of
from modelport.control.registry_acl import RegistryAccess
from modelport.errors import InvalidParameterValue, NotImplementedByServer, ResourceDoesNotExist
from modelport.spec.identity import Caller
from modelport.spec.registry_permissions import RegistryLevel, RegistryObject

_KINDS = {kind.collection: kind for kind in RegistryObject}


def _exists(kind: RegistryObject, object_id: str) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.server import handlers

    try:
        if kind is RegistryObject.REGISTERED_MODEL:
            handlers._get_model_registry_store().get_registered_model(object_id)
        else:
            handlers._get_tracking_store().get_experiment(object_id)
    except MlflowException:
        return False
    return True


def _checked(
    services: Services, caller: Caller, kind: RegistryObject, object_id: str, needed: RegistryLevel
) -> RegistryAccess:
    """The object must exist in the embedded registry and the caller hold ``needed`` on it; a
    caller who is not an admin gets 403 for a missing object as for one they may not use."""
    if not services.settings.embedded_registry:
        raise NotImplementedByServer(
            f"{kind.noun.capitalize()} permissions apply to the embedded registry; this server uses "
            "the one given by --registry-uri."
        )
    services.registry.get()  # waits for MLflow to load, or says why it did not
    access = RegistryAccess(services.db)
    if not _exists(kind, object_id):
        if not caller.is_admin:  # the same 403 as for an object that exists: existence is not told
            access.require(caller, kind, object_id, needed)
        raise ResourceDoesNotExist(f"No {kind.noun} '{object_id}' exists.")
    access.require(caller, kind, object_id, needed)
    return access


def _target(request: Request) -> tuple[RegistryObject, str]:
    return _KINDS[str(request.path_params["collection"])], str(request.path_params["object_id"])


async def get_permissions(request: Request) -> Response:
    caller, services = caller_of(request), services_of(request)
    kind, object_id = _target(request)

    def work() -> dict[str, Any]:
        return _checked(services, caller, kind, object_id, RegistryLevel.CAN_READ).render(kind, object_id)

    return json_response(await run_in_threadpool(work))


async def write_permissions(request: Request) -> Response:
    caller, services = caller_of(request), services_of(request)
    kind, object_id = _target(request)
    data = await json_object(request, required=False)
    entries = data.get("access_control_list", [])
    if not isinstance(entries, list):
        raise InvalidParameterValue("Invalid value for 'access_control_list': must be a list.")
    replace = request.method == "PUT"

    def work() -> dict[str, Any]:
        access = _checked(services, caller, kind, object_id, RegistryLevel.CAN_MANAGE)
        return access.write(kind, object_id, entries, replace=replace)

    return json_response(await run_in_threadpool(work))


async def permission_levels(request: Request) -> Response:
    caller, services = caller_of(request), services_of(request)
    kind, object_id = _target(request)
    await run_in_threadpool(_checked, services, caller, kind, object_id, RegistryLevel.CAN_READ)
    return json_response(RegistryAccess.levels(kind))


def _routes() -> list[Route]:
    routes = []
    for collection in ("registered-models", "experiments"):
        base = f"/api/2.0/permissions/{collection}/{{object_id:path}}"
        defaults = {"collection": collection}
        routes += [
            Route(f"{base}/permissionLevels", _bind(permission_levels, defaults), methods=["GET"]),
            Route(base, _bind(get_permissions, defaults), methods=["GET"]),
            Route(base, _bind(write_permissions, defaults), methods=["PUT", "PATCH"]),
        ]
    return routes


def _bind(handler: Any, defaults: dict[str, str]) -> Any:
    async def bound(request: Request) -> Response:
        request.path_params.update(defaults)
        return await handler(request)  # type: ignore[no-any-return]

    bound.__name__ = handler.__name__
    return bound


routes = _routes()
