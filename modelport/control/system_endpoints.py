"""The system endpoints: foundation models every server offers from its first start.

For each model of ``entities/foundation/catalog.py`` whose package is installed, an
endpoint named after it (``modelport-smollm2-135m-instruct``, ``modelport-all-minilm-l6-v2``)
is created at start-up if missing, by the system (creator :data:`SYSTEM_CREATOR`), with
scale-to-zero on (its replica starts on the first query and stops when idle) and
CAN_QUERY for the ``users`` group, so anyone with a token may query it. Users cannot
update, delete or re-permission it (:func:`is_system`); admins may still set its AI
gateway (rate limits) and tags.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from modelport.entities.foundation.catalog import SYSTEM_MODELS, installed
from modelport.errors import ModelportError, PermissionDenied
from modelport.spec.endpoint import CreateEndpoint
from modelport.spec.identity import ADMINS_GROUP, USERS_GROUP, Caller
from modelport.spec.permissions import PermissionLevel
from modelport.store import Database
from modelport.store.records import EndpointRecord

__all__ = ["SYSTEM_CREATOR", "ensure_system_endpoints", "forbid_changes", "is_system"]

log = logging.getLogger("modelport.control")

SYSTEM_CREATOR = "modelport-system"
_NAMES = frozenset(m.endpoint for m in SYSTEM_MODELS.values())


def is_system(endpoint: EndpointRecord) -> bool:
    return endpoint.creator == SYSTEM_CREATOR and endpoint.name in _NAMES


def forbid_changes(endpoint: EndpointRecord, action: str) -> None:
    """Raise 403 when ``endpoint`` is a system endpoint (``action``: "delete", ...)."""
    if is_system(endpoint):
        raise PermissionDenied(
            f"Endpoint '{endpoint.name}' is a system endpoint managed by modelport: it cannot be "
            f"{action}. Create an endpoint of your own serving the same model "
            f"(entity_name '{_entity_of(endpoint.name)}', entity_version '1') to configure it."
        )


def _entity_of(endpoint_name: str) -> str:
    return next(m.entity_name for m in SYSTEM_MODELS.values() if m.endpoint == endpoint_name)


def _system_caller(db: Database) -> Caller:
    admins = db.principals.get(ADMINS_GROUP)
    assert admins is not None, "the identity bootstrap creates the admins group first"
    return Caller(admins.id, SYSTEM_CREATOR, "service_principal", (ADMINS_GROUP,), frozenset({admins.id}))


def ensure_system_endpoints(
    db: Database, create: Callable[[Caller, CreateEndpoint], dict[str, Any]]
) -> list[str]:
    """Create the missing system endpoints; ``create`` is ``EndpointService.create``.
    Returns the names created."""
    created: list[str] = []
    caller = _system_caller(db)
    users = db.principals.get(USERS_GROUP)
    for model in installed():
        existing = db.endpoints.get(model.endpoint)
        if existing is not None:
            if not is_system(existing):
                log.warning(
                    "a user endpoint has the name of a system endpoint; the system endpoint is not created",
                    extra={"endpoint": model.endpoint},
                )
            continue
        request = CreateEndpoint.model_validate(
            {
                "name": model.endpoint,
                "description": model.description,
                "config": {
                    "served_entities": [
                        {
                            "name": model.id,
                            "entity_name": model.entity_name,
                            "entity_version": "1",
                            "workload_size": "Small",
                            "scale_to_zero_enabled": True,
                        }
                    ]
                },
                "tags": [{"key": "modelport.system", "value": "true"}],
            }
        )
        try:
            detail = create(caller, request)
        except ModelportError as exc:
            log.error(
                "system endpoint not created", extra={"endpoint": model.endpoint, "reason": exc.message}
            )
            continue
        if users is not None:
            db.endpoints.write_acl(detail["id"], {users.id: int(PermissionLevel.CAN_QUERY)}, replace=False)
        created.append(model.endpoint)
        log.info("system endpoint created", extra={"endpoint": model.endpoint})
    return created
