"""Endpoint access control: CAN_VIEW < CAN_QUERY < CAN_MANAGE, granted to users,
service principals and groups; admins hold CAN_MANAGE on every endpoint."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from modelport.errors import InvalidParameterValue, PermissionDenied
from modelport.spec.identity import ADMINS_GROUP, Caller
from modelport.spec.permissions import (
    LEVEL_DESCRIPTIONS,
    AccessControlRequest,
    PermissionLevel,
    effective_level,
)
from modelport.store import Database
from modelport.store.records import EndpointRecord

__all__ = ["AccessControl"]

_NAME_FIELDS = {"user_name": "user", "group_name": "group", "service_principal_name": "service_principal"}
_KIND_FIELD = {v: k for k, v in _NAME_FIELDS.items()}


class AccessControl:
    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def level_from(grants: dict[int, int], caller: Caller) -> PermissionLevel | None:
        return effective_level(grants, caller)

    def level(self, caller: Caller, endpoint: EndpointRecord) -> PermissionLevel | None:
        return self.level_from(self._db.endpoints.acl(endpoint.id), caller)

    def require(self, caller: Caller, endpoint: EndpointRecord, needed: PermissionLevel) -> PermissionLevel:
        level = self.level(caller, endpoint)
        if level is None or level < needed:
            raise PermissionDenied(
                f"'{caller.name}' does not have {needed.name} permission on serving endpoint "
                f"'{endpoint.name}'" + (f" (has {level.name})." if level else ".")
            )
        return level

    # ---- the permissions API ------------------------------------------------------------
    def render(self, endpoint: EndpointRecord) -> dict[str, Any]:
        """One entry per principal. ``admins`` always holds an inherited CAN_MANAGE; a direct
        grant to it (a system endpoint's creator is the group) joins that entry's
        ``all_permissions`` instead of making a second entry, as Databricks lists them."""
        acl: list[dict[str, Any]] = []
        admins: dict[str, Any] | None = None
        grants = self._db.endpoints.acl(endpoint.id)
        for pid, lvl in sorted(grants.items()):
            p = self._db.principals.get_by_id(pid)
            if p is None:
                continue
            entry = {
                _KIND_FIELD[p.kind]: p.name,
                "display_name": p.display_name or p.name,
                "all_permissions": [{"permission_level": PermissionLevel(lvl).name, "inherited": False}],
            }
            if p.kind == "group" and p.name == ADMINS_GROUP:
                admins = entry
            acl.append(entry)
        inherited = {
            "permission_level": "CAN_MANAGE",
            "inherited": True,
            "inherited_from_object": ["/serving-endpoints/"],
        }
        if admins is not None:
            admins["all_permissions"].append(inherited)
        else:
            acl.append(
                {"group_name": ADMINS_GROUP, "display_name": ADMINS_GROUP, "all_permissions": [inherited]}
            )
        return {
            "object_id": f"/serving-endpoints/{endpoint.id}",
            "object_type": "serving-endpoint",
            "access_control_list": acl,
        }

    def _parse(self, entries: list[dict[str, Any]] | None) -> dict[int, int]:
        grants: dict[int, int] = {}
        for i, raw in enumerate(entries or []):
            path = f"access_control_list[{i}]"
            if not isinstance(raw, dict):
                raise InvalidParameterValue(f"Invalid value for '{path}': must be an object.")
            try:
                acr = AccessControlRequest.model_validate(raw)
            except ValidationError as err:  # e.g. {"permission_level": {}}: a 400, not a 500
                first = err.errors()[0]
                where = ".".join([path, *(str(p) for p in first["loc"])])
                raise InvalidParameterValue(f"Invalid value for '{where}': {first['msg']}.") from None
            named = [(f, getattr(acr, f)) for f in _NAME_FIELDS if getattr(acr, f)]
            if len(named) != 1:
                raise InvalidParameterValue(
                    f"Invalid value for '{path}': give exactly one of user_name, group_name, "
                    "service_principal_name."
                )
            field, name = named[0]
            if not acr.permission_level:
                raise InvalidParameterValue(f"Missing required field '{path}.permission_level'.")
            try:
                level = PermissionLevel.parse(acr.permission_level)
            except KeyError:
                raise InvalidParameterValue(
                    f"Invalid value for '{path}.permission_level': '{acr.permission_level}' is not one of "
                    "CAN_VIEW, CAN_QUERY, CAN_MANAGE."
                ) from None
            principal = self._db.principals.get(name)
            if principal is None or principal.kind != _NAME_FIELDS[field]:
                what = _NAME_FIELDS[field].replace("_", " ")
                raise InvalidParameterValue(
                    f"Invalid value for '{path}.{field}': no {what} named '{name}' exists."
                )
            grants[principal.id] = max(grants.get(principal.id, 0), int(level))
        return grants

    def write(
        self, endpoint: EndpointRecord, entries: list[dict[str, Any]] | None, *, replace: bool
    ) -> dict[str, Any]:
        self._db.endpoints.write_acl(endpoint.id, self._parse(entries), replace=replace)
        return self.render(endpoint)

    @staticmethod
    def levels() -> dict[str, Any]:
        return {
            "permission_levels": [
                {"permission_level": lvl.name, "description": LEVEL_DESCRIPTIONS[lvl]}
                for lvl in sorted(PermissionLevel, reverse=True)
            ]
        }
