"""Databricks' ``access_control_list`` shape, shared by the permissions APIs of serving
endpoints (:mod:`~modelport.control.permissions`), registry objects
(:mod:`~modelport.control.registry_acl`) and tables (:mod:`~modelport.control.table_acl`).

Each API has its own levels; what they share is here: reading a request's list into grants
(principal id -> level) with the same checks and messages, and building the list an answer
returns (one entry per principal, inherited permissions joined to their group's entry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any, TypeVar

from pydantic import ValidationError

from modelport.errors import InvalidParameterValue
from modelport.spec.permissions import AccessControlRequest
from modelport.store.principals import PrincipalRepository

__all__ = ["KIND_FIELD", "NAME_FIELDS", "AclList", "levels_answer", "parse_acl", "principal_id"]

_Level = TypeVar("_Level", bound=IntEnum)

#: The field naming a principal in an entry -> the principal's kind.
NAME_FIELDS = {"user_name": "user", "group_name": "group", "service_principal_name": "service_principal"}
#: A principal's kind -> the field that names it in an entry.
KIND_FIELD = {v: k for k, v in NAME_FIELDS.items()}


def principal_id(principals: PrincipalRepository, name: Any, path: str, kind: str | None = None) -> int:
    """The id of the principal ``name`` (of ``kind``, when given); 400 naming ``path`` when
    ``name`` is not a non-empty string or no such principal exists."""
    if not isinstance(name, str) or not name:
        raise InvalidParameterValue(f"Invalid value for '{path}': must be a non-empty string.")
    principal = principals.get(name)
    if principal is None or (kind is not None and principal.kind != kind):
        what = kind.replace("_", " ") if kind else "user, group or service principal"
        raise InvalidParameterValue(f"Invalid value for '{path}': no {what} named '{name}' exists.")
    return principal.id


def _typed_fields(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """An entry's fields checked against :class:`AccessControlRequest`: a value of the wrong
    type is refused with pydantic's message; an empty name counts as absent."""
    try:
        acr = AccessControlRequest.model_validate(raw)
    except ValidationError as err:  # e.g. {"permission_level": {}}: a 400, not a 500
        first = err.errors()[0]
        where = ".".join([path, *(str(p) for p in first["loc"])])
        raise InvalidParameterValue(f"Invalid value for '{where}': {first['msg']}.") from None
    fields: dict[str, Any] = {f: getattr(acr, f) or None for f in NAME_FIELDS}
    fields["permission_level"] = acr.permission_level
    return fields


def _raw_fields(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """An entry's fields as sent: any name that is not null counts as given (and is refused
    later unless it is a non-empty string); a permission level that is not a string is absent."""
    fields = {f: raw.get(f) for f in NAME_FIELDS}
    level = raw.get("permission_level")
    fields["permission_level"] = level if isinstance(level, str) else None
    return fields


def parse_acl(
    entries: Any,
    principals: PrincipalRepository,
    parse_level: Callable[[str], int],
    level_names: str,
    *,
    typed: bool = True,
) -> dict[int, int]:
    """An ``access_control_list`` -> principal id -> level, every entry checked first.

    Each entry names exactly one of ``user_name``, ``group_name`` and ``service_principal_name``
    (a principal of that kind that exists) and a ``permission_level`` that ``parse_level``
    reads (KeyError for an unknown one; ``level_names`` lists the valid ones in the message).
    A principal named twice gets the higher level. ``None`` is no entry.

    ``typed`` (endpoints and registry objects) checks the entry's field types first;
    ``typed=False`` is the tables API's reading (see :func:`_raw_fields`), kept as it was.
    """
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise InvalidParameterValue("Invalid value for 'access_control_list': must be a list.")
    read = _typed_fields if typed else _raw_fields
    grants: dict[int, int] = {}
    for i, raw in enumerate(entries):
        path = f"access_control_list[{i}]"
        if not isinstance(raw, dict):
            raise InvalidParameterValue(f"Invalid value for '{path}': must be an object.")
        fields = read(raw, path)
        named = [f for f in NAME_FIELDS if fields[f] is not None]
        if len(named) != 1:
            raise InvalidParameterValue(
                f"Invalid value for '{path}': give exactly one of user_name, group_name, "
                "service_principal_name."
            )
        level_name = fields["permission_level"]
        if not level_name:
            raise InvalidParameterValue(f"Missing required field '{path}.permission_level'.")
        try:
            level = int(parse_level(level_name))
        except KeyError:
            raise InvalidParameterValue(
                f"Invalid value for '{path}.permission_level': '{level_name}' is not one of {level_names}."
            ) from None
        field = named[0]
        pid = principal_id(principals, fields[field], f"{path}.{field}", NAME_FIELDS[field])
        grants[pid] = max(grants.get(pid, 0), level)
    return grants


class AclList:
    """An ``access_control_list`` being built for an answer.

    One entry per principal, in the order each is first added, each holding its permissions in
    the order they were added; a principal that no longer exists is left out. Inherited
    permissions of a group (``admins`` on every object) join that group's entry when it has
    one, as Databricks lists a principal's permissions, or make a new entry at the end.
    """

    def __init__(self, principals: PrincipalRepository) -> None:
        self._principals = principals
        self._by_id: dict[int, dict[str, Any]] = {}
        self._groups: dict[str, dict[str, Any]] = {}
        self._entries: list[dict[str, Any]] = []

    @staticmethod
    def _permission(level: str, inherited_from: str | None) -> dict[str, Any]:
        if inherited_from is None:
            return {"permission_level": level, "inherited": False}
        return {"permission_level": level, "inherited": True, "inherited_from_object": [inherited_from]}

    def add(self, principal_id: int, level: str, inherited_from: str | None = None) -> None:
        """``principal_id`` holds ``level``: directly, or inherited from the object path given."""
        entry = self._by_id.get(principal_id)
        if entry is None:
            p = self._principals.get_by_id(principal_id)
            if p is None:
                return
            entry = {
                KIND_FIELD[p.kind]: p.name,
                "display_name": p.display_name or p.name,
                "all_permissions": [],
            }
            self._by_id[principal_id] = entry
            if p.kind == "group":
                self._groups[p.name] = entry
            self._entries.append(entry)
        entry["all_permissions"].append(self._permission(level, inherited_from))

    def inherit(self, group: str, level: str, inherited_from: str) -> None:
        """Group ``group`` holds ``level`` inherited from the object path ``inherited_from``."""
        entry = self._groups.get(group)
        if entry is None:
            entry = {"group_name": group, "display_name": group, "all_permissions": []}
            self._groups[group] = entry
            self._entries.append(entry)
        entry["all_permissions"].append(self._permission(level, inherited_from))

    def answer(self, object_id: str, object_type: str) -> dict[str, Any]:
        """The permissions API's answer for the object."""
        return {"object_id": object_id, "object_type": object_type, "access_control_list": self._entries}


def levels_answer(descriptions: Mapping[_Level, str]) -> dict[str, Any]:
    """The ``permissionLevels`` answer: each level described, highest first."""
    return {
        "permission_levels": [
            {"permission_level": level.name, "description": descriptions[level]}
            for level in sorted(descriptions, reverse=True)
        ]
    }
