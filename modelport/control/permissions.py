"""Endpoint access control: CAN_VIEW < CAN_QUERY < CAN_MANAGE, granted to users,
service principals and groups; admins hold CAN_MANAGE on every endpoint."""

from __future__ import annotations

from typing import Any

from modelport.control.acl import AclList, levels_answer, parse_acl
from modelport.errors import PermissionDenied
from modelport.spec.identity import ADMINS_GROUP, Caller
from modelport.spec.permissions import (
    LEVEL_DESCRIPTIONS,
    PermissionLevel,
    effective_level,
)
from modelport.store import Database
from modelport.store.records import EndpointRecord

__all__ = ["AccessControl"]

_LEVEL_NAMES = ", ".join(level.name for level in PermissionLevel)


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
        acl = AclList(self._db.principals)
        for pid, lvl in sorted(self._db.endpoints.acl(endpoint.id).items()):
            acl.add(pid, PermissionLevel(lvl).name)
        acl.inherit(ADMINS_GROUP, PermissionLevel.CAN_MANAGE.name, "/serving-endpoints/")
        return acl.answer(f"/serving-endpoints/{endpoint.id}", "serving-endpoint")

    def write(
        self, endpoint: EndpointRecord, entries: list[dict[str, Any]] | None, *, replace: bool
    ) -> dict[str, Any]:
        grants = parse_acl(entries, self._db.principals, PermissionLevel.parse, _LEVEL_NAMES)
        self._db.endpoints.write_acl(endpoint.id, grants, replace=replace)
        return self.render(endpoint)

    @staticmethod
    def levels() -> dict[str, Any]:
        return levels_answer(LEVEL_DESCRIPTIONS)
