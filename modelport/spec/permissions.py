"""Permission levels of serving endpoints and the access-control request shape."""

from __future__ import annotations

from enum import IntEnum

from pydantic import BaseModel, ConfigDict

from modelport.spec.identity import Caller

__all__ = ["LEVEL_DESCRIPTIONS", "AccessControlRequest", "PermissionLevel", "effective_level"]


class PermissionLevel(IntEnum):
    """Ordered: a higher level includes every right of the lower ones."""

    CAN_VIEW = 1
    CAN_QUERY = 2
    CAN_MANAGE = 3

    @classmethod
    def parse(cls, value: str) -> PermissionLevel:
        return cls[value]


LEVEL_DESCRIPTIONS = {
    PermissionLevel.CAN_MANAGE: "Can manage the endpoint: update its config, permissions and delete it.",
    PermissionLevel.CAN_QUERY: "Can query the endpoint and view it.",
    PermissionLevel.CAN_VIEW: "Can view the endpoint, its config, logs and metrics.",
}


class AccessControlRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_name: str | None = None
    group_name: str | None = None
    service_principal_name: str | None = None
    permission_level: str | None = None


def effective_level(grants: dict[int, int], caller: Caller) -> PermissionLevel | None:
    """The caller's level from an endpoint's grants (principal id → level); admins manage all."""
    if caller.is_admin:
        return PermissionLevel.CAN_MANAGE
    levels = [level for pid, level in grants.items() if pid in caller.principal_ids]
    return PermissionLevel(max(levels)) if levels else None
