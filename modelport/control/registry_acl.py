"""Who may do what to registered models and experiments of the embedded MLflow registry.

Levels are CAN_READ < CAN_EDIT < CAN_MANAGE, granted to users, groups and service principals
and stored in ``object_acl`` (object type ``registered-model`` with the model's name as id,
or ``experiment`` with the experiment id). Admins hold CAN_MANAGE on everything; every user
holds CAN_EDIT on the Default experiment (id ``0``). The creator of a model or experiment
becomes its manager (the MLflow guard records it once MLflow has created the object).
"""

from __future__ import annotations

from typing import Any

from modelport.control.acl import AclList, levels_answer, parse_acl
from modelport.errors import PermissionDenied
from modelport.spec.identity import ADMINS_GROUP, USERS_GROUP, Caller
from modelport.spec.registry_permissions import (
    DEFAULT_EXPERIMENT_ID,
    LEVEL_DESCRIPTIONS,
    RegistryLevel,
    RegistryObject,
)
from modelport.store import Database

__all__ = ["RegistryAccess"]

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
        acl = AclList(self._db.principals)
        for pid, lvl in sorted(self._db.grants.acl(kind.value, object_id).items()):
            acl.add(pid, RegistryLevel(lvl).name)
        acl.inherit(ADMINS_GROUP, RegistryLevel.CAN_MANAGE.name, f"/{kind.collection}/")
        floor = _floor(kind, object_id)
        if floor is not None:
            acl.inherit(USERS_GROUP, floor.name, f"/{kind.collection}/")
        return acl.answer(f"/{kind.collection}/{object_id}", kind.value)

    def parse(self, entries: Any) -> dict[int, int]:
        """An ``access_control_list`` → principal id → level, every entry checked."""
        return parse_acl(entries, self._db.principals, RegistryLevel.parse, _LEVEL_NAMES)

    def write(self, kind: RegistryObject, object_id: str, entries: Any, *, replace: bool) -> dict[str, Any]:
        self._db.grants.write(kind.value, object_id, self.parse(entries), replace=replace)
        return self.render(kind, object_id)

    @staticmethod
    def levels(kind: RegistryObject) -> dict[str, Any]:
        return levels_answer(LEVEL_DESCRIPTIONS[kind])
