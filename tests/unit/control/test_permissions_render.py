"""The permissions list (one entry per principal) and the system-endpoint marker of the
endpoint GET, on a real SQLite store in a temporary folder."""

from __future__ import annotations

from pathlib import Path

from modelport.control.permissions import AccessControl
from modelport.control.render import render_detailed
from modelport.control.system_endpoints import SYSTEM_CREATOR
from modelport.spec.permissions import PermissionLevel
from modelport.store import Database, open_database
from modelport.store.records import EndpointRecord

INHERITED = {
    "permission_level": "CAN_MANAGE",
    "inherited": True,
    "inherited_from_object": ["/serving-endpoints/"],
}


def store(tmp_path: Path) -> tuple[Database, int, int]:
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    admins = db.principals.create("admins", "group", display_name="admins", is_admin=True, now_ms=1)
    alice = db.principals.create("alice", "user", display_name="Alice", is_admin=False, now_ms=1)
    return db, admins.id, alice.id


def endpoint(name: str, creator: str) -> EndpointRecord:
    return EndpointRecord(
        id=f"id-{name}", name=name, creator=creator, created_ms=1, updated_ms=1, config_update="NOT_UPDATING"
    )


def test_admins_is_listed_once_with_its_inherited_permission(tmp_path: Path) -> None:
    db, _, alice = store(tmp_path)
    ep = endpoint("mine", "alice")
    db.endpoints.create(ep, None, alice)

    acl = AccessControl(db).render(ep)["access_control_list"]

    assert acl == [
        {
            "user_name": "alice",
            "display_name": "Alice",
            "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": False}],
        },
        {"group_name": "admins", "display_name": "admins", "all_permissions": [INHERITED]},
    ]


def test_a_direct_grant_to_admins_joins_its_inherited_entry(tmp_path: Path) -> None:
    """A system endpoint's creator is the admins group: its grant and the inherited one are
    one entry, as Databricks lists a principal's permissions."""
    db, admins, _ = store(tmp_path)
    ep = endpoint("modelport-smollm2-135m-instruct", SYSTEM_CREATOR)
    db.endpoints.create(ep, None, admins)

    acl = AccessControl(db).render(ep)["access_control_list"]

    assert acl == [
        {
            "group_name": "admins",
            "display_name": "admins",
            "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": False}, INHERITED],
        }
    ]


def test_system_endpoints_are_marked_in_the_endpoint_get() -> None:
    system = render_detailed(
        endpoint("modelport-smollm2-135m-instruct", SYSTEM_CREATOR), None, None, PermissionLevel.CAN_MANAGE
    )
    mine = render_detailed(endpoint("mine", "alice"), None, None, PermissionLevel.CAN_MANAGE)
    # a user's endpoint with a system endpoint's name is not a system endpoint
    lookalike = render_detailed(
        endpoint("modelport-smollm2-135m-instruct", "alice"), None, None, PermissionLevel.CAN_MANAGE
    )

    assert system["modelport_system"] is True
    assert "modelport_system" not in mine
    assert "modelport_system" not in lookalike
