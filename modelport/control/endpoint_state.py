"""The endpoint update state machine, as pure functions over stored config bodies.

    create / PUT config ─► IN_PROGRESS ──deploy ok──► NOT_UPDATING (config_version = pending)
                               │ ├──────deploy failed──► UPDATE_FAILED  (old config keeps serving)
                               │ └──────cancel─────────► UPDATE_CANCELED (old config keeps serving)
                               └─ a second update while IN_PROGRESS is refused (409)

Entity deployment states follow: DEPLOYMENT_CREATING while in progress, then
DEPLOYMENT_READY, DEPLOYMENT_FAILED (the one that failed) or DEPLOYMENT_ABORTED (the
others, and all of them on cancel).
"""

from __future__ import annotations

import copy
from typing import Any

from modelport.store.records import EndpointRecord

__all__ = ["CONFIG_UPDATE_STATES", "endpoint_state", "with_entity_states"]

CONFIG_UPDATE_STATES = ("NOT_UPDATING", "IN_PROGRESS", "UPDATE_FAILED", "UPDATE_CANCELED")

_MESSAGES = {
    "DEPLOYMENT_CREATING": "Creating",
    "DEPLOYMENT_READY": "Ready",
    "DEPLOYMENT_ABORTED": "Aborted",
}


def with_entity_states(
    body: dict[str, Any],
    deployment: str,
    *,
    failed: str | None = None,
    message: str | None = None,
    entities: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A copy of ``body`` whose entities all carry ``deployment``; ``failed`` gets the failure."""
    out = copy.deepcopy(body)
    if entities is not None:
        out["served_entities"] = copy.deepcopy(entities)
    for entity in out["served_entities"]:
        if failed is not None:
            if entity["name"] == failed:
                entity["state"] = {
                    "deployment": "DEPLOYMENT_FAILED",
                    "deployment_state_message": message or "Failed",
                }
            else:
                entity["state"] = {
                    "deployment": "DEPLOYMENT_ABORTED",
                    "deployment_state_message": "Aborted: another served entity failed.",
                }
        else:
            entity["state"] = {
                "deployment": deployment,
                "deployment_state_message": message or _MESSAGES.get(deployment, deployment),
            }
    return out


def endpoint_state(endpoint: EndpointRecord) -> dict[str, str]:
    """``state`` of an endpoint: READY once a config serves, whatever an update is doing."""
    return {
        "ready": "READY" if endpoint.active_version is not None else "NOT_READY",
        "config_update": endpoint.config_update,
        "suspend": "NOT_SUSPENDED",
    }
