"""The shared ``access_control_list`` reading and building, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelport.control.acl import AclList, levels_answer, parse_acl
from modelport.errors import InvalidParameterValue
from modelport.spec.permissions import LEVEL_DESCRIPTIONS, PermissionLevel
from modelport.store import Database, open_database

NAMES = "CAN_VIEW, CAN_QUERY, CAN_MANAGE"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    db.principals.create("admins", "group", display_name="admins", is_admin=True, now_ms=1)
    db.principals.create("alice", "user", display_name="Alice", is_admin=False, now_ms=1)
    db.principals.create("team", "group", display_name=None, is_admin=False, now_ms=1)
    db.principals.create("bot", "service_principal", display_name=None, is_admin=False, now_ms=1)
    return db


def pid(db: Database, name: str) -> int:
    p = db.principals.get(name)
    assert p is not None
    return p.id


def parse(db: Database, entries: Any, *, typed: bool = True) -> dict[int, int]:
    return parse_acl(entries, db.principals, PermissionLevel.parse, NAMES, typed=typed)


def refusal(db: Database, entries: Any, *, typed: bool = True) -> str:
    with pytest.raises(InvalidParameterValue) as err:
        parse(db, entries, typed=typed)
    return err.value.message


def test_each_kind_of_principal_gets_its_highest_level(db: Database) -> None:
    entries = [
        {"user_name": "alice", "permission_level": "CAN_VIEW"},
        {"group_name": "team", "permission_level": "CAN_QUERY"},
        {"service_principal_name": "bot", "permission_level": "CAN_MANAGE"},
        {"user_name": "alice", "permission_level": "CAN_MANAGE"},
        {"user_name": "alice", "permission_level": "CAN_QUERY"},
    ]
    assert parse(db, entries) == {pid(db, "alice"): 3, pid(db, "team"): 2, pid(db, "bot"): 3}
    assert parse(db, None) == {} and parse(db, []) == {}


@pytest.mark.parametrize("typed", [True, False])
@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"user_name": "alice"}, "Invalid value for 'access_control_list': must be a list."),
        (["alice"], "Invalid value for 'access_control_list[0]': must be an object."),
        (
            [{"user_name": "alice", "group_name": "team", "permission_level": "CAN_VIEW"}],
            "Invalid value for 'access_control_list[0]': give exactly one of user_name, group_name, "
            "service_principal_name.",
        ),
        ([{"user_name": "alice"}], "Missing required field 'access_control_list[0].permission_level'."),
        (
            [{"user_name": "alice", "permission_level": "CAN_READ"}],
            "Invalid value for 'access_control_list[0].permission_level': 'CAN_READ' is not one of "
            "CAN_VIEW, CAN_QUERY, CAN_MANAGE.",
        ),
        (
            [{"group_name": "alice", "permission_level": "CAN_VIEW"}],
            "Invalid value for 'access_control_list[0].group_name': no group named 'alice' exists.",
        ),
        (
            [{"service_principal_name": "carol", "permission_level": "CAN_VIEW"}],
            "Invalid value for 'access_control_list[0].service_principal_name': no service principal "
            "named 'carol' exists.",
        ),
    ],
)
def test_bad_entries_are_refused_naming_the_field(
    db: Database, entries: Any, message: str, typed: bool
) -> None:
    assert refusal(db, entries, typed=typed) == message


def test_typed_reading_refuses_wrong_types_and_ignores_empty_names(db: Database) -> None:
    assert refusal(db, [{"user_name": 5, "permission_level": "CAN_VIEW"}]) == (
        "Invalid value for 'access_control_list[0].user_name': Input should be a valid string."
    )
    assert refusal(db, [{"user_name": "alice", "permission_level": {}}]) == (
        "Invalid value for 'access_control_list[0].permission_level': Input should be a valid string."
    )
    entries = [{"user_name": "", "group_name": "team", "permission_level": "CAN_VIEW"}]
    assert parse(db, entries) == {pid(db, "team"): 1}


def test_untyped_reading_counts_any_name_given_and_needs_a_string_level(db: Database) -> None:
    """The tables API's reading, kept as it was."""
    assert refusal(db, [{"user_name": 5, "permission_level": "CAN_VIEW"}], typed=False) == (
        "Invalid value for 'access_control_list[0].user_name': must be a non-empty string."
    )
    assert refusal(db, [{"user_name": "alice", "permission_level": 3}], typed=False) == (
        "Missing required field 'access_control_list[0].permission_level'."
    )
    entries = [{"user_name": "", "group_name": "team", "permission_level": "CAN_VIEW"}]
    assert "give exactly one of" in refusal(db, entries, typed=False)


def test_an_acl_lists_each_principal_once_and_joins_inherited_permissions(db: Database) -> None:
    acl = AclList(db.principals)
    acl.add(pid(db, "alice"), "CAN_VIEW")
    acl.add(pid(db, "admins"), "CAN_QUERY")
    acl.add(pid(db, "alice"), "CAN_MANAGE", "/serving-endpoints/e1")
    acl.add(999, "CAN_VIEW")  # a principal deleted since: left out
    acl.inherit("admins", "CAN_MANAGE", "/serving-endpoints/")
    acl.inherit("users", "CAN_VIEW", "/serving-endpoints/")

    assert acl.answer("/serving-endpoints/e1", "serving-endpoint") == {
        "object_id": "/serving-endpoints/e1",
        "object_type": "serving-endpoint",
        "access_control_list": [
            {
                "user_name": "alice",
                "display_name": "Alice",
                "all_permissions": [
                    {"permission_level": "CAN_VIEW", "inherited": False},
                    {
                        "permission_level": "CAN_MANAGE",
                        "inherited": True,
                        "inherited_from_object": ["/serving-endpoints/e1"],
                    },
                ],
            },
            {
                "group_name": "admins",
                "display_name": "admins",
                "all_permissions": [
                    {"permission_level": "CAN_QUERY", "inherited": False},
                    {
                        "permission_level": "CAN_MANAGE",
                        "inherited": True,
                        "inherited_from_object": ["/serving-endpoints/"],
                    },
                ],
            },
            {
                "group_name": "users",
                "display_name": "users",
                "all_permissions": [
                    {
                        "permission_level": "CAN_VIEW",
                        "inherited": True,
                        "inherited_from_object": ["/serving-endpoints/"],
                    }
                ],
            },
        ],
    }


def test_levels_are_described_highest_first() -> None:
    levels = levels_answer(LEVEL_DESCRIPTIONS)["permission_levels"]
    assert [lvl["permission_level"] for lvl in levels] == ["CAN_MANAGE", "CAN_QUERY", "CAN_VIEW"]
    assert levels[2]["description"] == LEVEL_DESCRIPTIONS[PermissionLevel.CAN_VIEW]
