"""Who may do what to registered models and experiments of the embedded MLflow registry.

Levels are CAN_READ < CAN_EDIT < CAN_MANAGE, granted to users, groups and service principals
and stored in ``object_acl`` (object type ``registered-model`` with the model's name as id,
or ``experiment`` with the experiment id). Admins hold CAN_MANAGE on everything; every user
holds CAN_EDIT on the Default experiment (id ``0``). The creator of a model or experiment
becomes its manager (the MLflow guard records it once MLflow has created the object).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from modelport.errors import InvalidParameterValue, PermissionDenied
from modelport.spec.identity import ADMINS_GROUP, USERS_GROUP, Caller
from modelport.spec.permissions import AccessControlRequest
from modelport.spec.registry_permissions import (
    DEFAULT_EXPERIMENT_ID,
    LEVEL_DESCRIPTIONS,
    RegistryLevel,
    RegistryObject,
)
from modelport.store import Database

__all__ = ["RegistryAccess"]

_NAME_FIELDS = {"user_name": "user", "group_name": "group", "service_principal_name": "service_principal"}
_KIND_FIELD = {v: k for k, v in _NAME_FIELDS.items()}
_LEVEL_NAMES = ", ".join(level.name for level in RegistryLevel)


def _floor(kind: RegistryObject, object_id: str) -> RegistryLevel | None:
    """The level every authenticated user holds without a grant."""
    if kind is RegistryObject.EXPERIMENT and object_id == DEFAULT_EXPERIMENT_ID:
        return RegistryLevel.CAN_EDIT
    return None


class RegistryAccess:
    """Levels, checks and the Databricks permissions shape for registry objects. Blocking
    (store reads): call it from a thread, never from the event loop."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- decisions ----------------------------------------------------------------------
    def level(self, caller: Caller, kind: RegistryObject, object_id: str) -> RegistryLevel | None:
        if caller.is_admin:
            return RegistryLevel.CAN_MANAGE
        grants = self._db.grants.acl(kind.value, object_id)
        held = [lvl for pid, lvl in grants.items() if pid in caller.principal_ids]
        floor = _floor(kind, object_id)
        if floor is not None:
            held.append(int(floor))
        return RegistryLevel(max(held)) if held else None

    def require(
        self, caller: Caller, kind: RegistryObject, object_id: str, needed: RegistryLevel
    ) -> RegistryLevel:
        level = self.level(caller, kind, object_id)
        if level is None or level < needed:
            raise PermissionDenied(
                f"'{caller.name}' does not have {needed.name} permission on {kind.noun} '{object_id}'"
                + (f" (has {level.name})." if level else ".")
            )
        return level

    def readable(self, caller: Caller, kind: RegistryObject) -> set[str] | None:
        """The ids the caller may read; None when it may read every object (an admin)."""
        if caller.is_admin:
            return None
        ids = set(self._db.grants.readable(kind.value, caller.principal_ids))
        if kind is RegistryObject.EXPERIMENT:
            ids.add(DEFAULT_EXPERIMENT_ID)
        return ids

    # ---- changes that follow MLflow's ---------------------------------------------------
    def set_owner(self, kind: RegistryObject, object_id: str, principal_id: int) -> None:
        """A new object: its creator manages it, and grants left from an object of the same
        id (one deleted behind the guard's back) are dropped."""
        self._db.grants.write(
            kind.value, object_id, {principal_id: int(RegistryLevel.CAN_MANAGE)}, replace=True
        )

    def renamed(self, kind: RegistryObject, old_id: str, new_id: str) -> None:
        self._db.grants.drop(kind.value, new_id)
        self._db.grants.rename(kind.value, old_id, new_id)

    def dropped(self, kind: RegistryObject, object_id: str) -> None:
        self._db.grants.drop(kind.value, object_id)

    # ---- the permissions API ------------------------------------------------------------
    def render(self, kind: RegistryObject, object_id: str) -> dict[str, Any]:
        """One entry per principal, ``admins`` with an inherited CAN_MANAGE (and ``users``
        with an inherited CAN_EDIT on the Default experiment), as Databricks lists them."""
        acl: list[dict[str, Any]] = []
        by_name: dict[str, dict[str, Any]] = {}
        for pid, lvl in sorted(self._db.grants.acl(kind.value, object_id).items()):
            p = self._db.principals.get_by_id(pid)
            if p is None:
                continue
            entry = {
                _KIND_FIELD[p.kind]: p.name,
                "display_name": p.display_name or p.name,
                "all_permissions": [{"permission_level": RegistryLevel(lvl).name, "inherited": False}],
            }
            if p.kind == "group":
                by_name[p.name] = entry
            acl.append(entry)
        inherited = [(ADMINS_GROUP, RegistryLevel.CAN_MANAGE)]
        floor = _floor(kind, object_id)
        if floor is not None:
            inherited.append((USERS_GROUP, floor))
        for group, level in inherited:
            permission = {
                "permission_level": level.name,
                "inherited": True,
                "inherited_from_object": [f"/{kind.collection}/"],
            }
            if group in by_name:
                by_name[group]["all_permissions"].append(permission)
            else:
                acl.append({"group_name": group, "display_name": group, "all_permissions": [permission]})
        return {
            "object_id": f"/{kind.collection}/{object_id}",
            "object_type": kind.value,
            "access_control_list": acl,
        }

    def parse(self, entries: Any) -> dict[int, int]:
        """An ``access_control_list`` → principal id → level, every entry checked."""
        if entries is None:
            return {}
        if not isinstance(entries, list):
            raise InvalidParameterValue("Invalid value for 'access_control_list': must be a list.")
        grants: dict[int, int] = {}
        for i, raw in enumerate(entries):
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
                level = RegistryLevel.parse(acr.permission_level)
            except KeyError:
                raise InvalidParameterValue(
                    f"Invalid value for '{path}.permission_level': '{acr.permission_level}' is not one of "
                    f"{_LEVEL_NAMES}."
                ) from None
            principal = self._db.principals.get(name)
            if principal is None or principal.kind != _NAME_FIELDS[field]:
                what = _NAME_FIELDS[field].replace("_", " ")
                raise InvalidParameterValue(
                    f"Invalid value for '{path}.{field}': no {what} named '{name}' exists."
                )
            grants[principal.id] = max(grants.get(principal.id, 0), int(level))
        return grants

    def write(self, kind: RegistryObject, object_id: str, entries: Any, *, replace: bool) -> dict[str, Any]:
        self._db.grants.write(kind.value, object_id, self.parse(entries), replace=replace)
        return self.render(kind, object_id)

    @staticmethod
    def levels(kind: RegistryObject) -> dict[str, Any]:
        return {
            "permission_levels": [
                {"permission_level": lvl.name, "description": LEVEL_DESCRIPTIONS[kind][lvl]}
                for lvl in sorted(RegistryLevel, reverse=True)
            ]
        }
