"""Registry permissions on a real SQLite store: levels, the Default experiment, admins, the
Databricks permissions shape and its bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.control.registry_acl import RegistryAccess
from modelport.errors import InvalidParameterValue, PermissionDenied
from modelport.spec.identity import Caller
from modelport.spec.registry_permissions import RegistryLevel, RegistryObject
from modelport.store import Database, open_database

MODEL, EXPERIMENT = RegistryObject.REGISTERED_MODEL, RegistryObject.EXPERIMENT


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    db.principals.create("admins", "group", display_name="admins", is_admin=True, now_ms=1)
    db.principals.create("users", "group", display_name="users", is_admin=False, now_ms=1)
    db.principals.create("alice", "user", display_name="Alice", is_admin=False, now_ms=1)
    db.principals.create("bob", "user", display_name=None, is_admin=False, now_ms=1)
    db.principals.create("ml-team", "group", display_name=None, is_admin=False, now_ms=1)
    db.principals.create("ci-bot", "service_principal", display_name=None, is_admin=False, now_ms=1)
    return db


def as_caller(db: Database, name: str, *groups: str) -> Caller:
    p = db.principals.get(name)
    assert p is not None
    group_ids = {g.id for g in (db.principals.get(n) for n in groups) if g is not None}
    return Caller(id=p.id, name=name, kind=p.kind, groups=groups, principal_ids=frozenset({p.id, *group_ids}))


def test_the_creator_manages_and_others_hold_nothing(db: Database) -> None:
    access = RegistryAccess(db)
    alice, bob = as_caller(db, "alice"), as_caller(db, "bob")
    access.set_owner(MODEL, "fraud", alice.id)

    assert access.level(alice, MODEL, "fraud") is RegistryLevel.CAN_MANAGE
    assert access.level(bob, MODEL, "fraud") is None
    with pytest.raises(
        PermissionDenied, match="'bob' does not have CAN_MANAGE permission on registered model"
    ):
        access.require(bob, MODEL, "fraud", RegistryLevel.CAN_MANAGE)


def test_a_group_grant_reaches_its_members_and_admins_manage_everything(db: Database) -> None:
    access = RegistryAccess(db)
    team = db.principals.get("ml-team")
    assert team is not None
    access.write(MODEL, "fraud", [{"group_name": "ml-team", "permission_level": "CAN_EDIT"}], replace=True)

    assert access.level(as_caller(db, "bob", "ml-team"), MODEL, "fraud") is RegistryLevel.CAN_EDIT
    assert access.level(as_caller(db, "bob"), MODEL, "fraud") is None
    assert access.level(as_caller(db, "bob", "admins"), MODEL, "nobody-granted") is RegistryLevel.CAN_MANAGE


def test_every_user_edits_the_default_experiment_and_only_that_one(db: Database) -> None:
    access, bob = RegistryAccess(db), as_caller(db, "bob")

    assert access.level(bob, EXPERIMENT, "0") is RegistryLevel.CAN_EDIT
    assert access.level(bob, EXPERIMENT, "1") is None
    assert access.readable(bob, EXPERIMENT) == {"0"}
    assert access.readable(as_caller(db, "bob", "admins"), EXPERIMENT) is None


def test_rename_moves_grants_and_drops_stale_ones_under_the_new_name(db: Database) -> None:
    access, alice, bob = RegistryAccess(db), as_caller(db, "alice"), as_caller(db, "bob")
    access.set_owner(MODEL, "old", alice.id)
    db.grants.write(MODEL.value, "new", {bob.id: 3}, replace=True)  # left from a model deleted elsewhere

    access.renamed(MODEL, "old", "new")

    assert access.level(alice, MODEL, "new") is RegistryLevel.CAN_MANAGE
    assert access.level(bob, MODEL, "new") is None
    assert db.grants.acl(MODEL.value, "old") == {}


def test_render_lists_direct_grants_then_the_inherited_ones(db: Database) -> None:
    access = RegistryAccess(db)
    access.write(
        EXPERIMENT,
        "0",
        [
            {"user_name": "alice", "permission_level": "CAN_MANAGE"},
            {"service_principal_name": "ci-bot", "permission_level": "CAN_READ"},
        ],
        replace=True,
    )

    body = access.render(EXPERIMENT, "0")

    assert body["object_id"] == "/experiments/0"
    assert body["object_type"] == "experiment"
    assert body["access_control_list"] == [
        {
            "user_name": "alice",
            "display_name": "Alice",
            "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": False}],
        },
        {
            "service_principal_name": "ci-bot",
            "display_name": "ci-bot",
            "all_permissions": [{"permission_level": "CAN_READ", "inherited": False}],
        },
        {
            "group_name": "admins",
            "display_name": "admins",
            "all_permissions": [
                {
                    "permission_level": "CAN_MANAGE",
                    "inherited": True,
                    "inherited_from_object": ["/experiments/"],
                }
            ],
        },
        {
            "group_name": "users",
            "display_name": "users",
            "all_permissions": [
                {
                    "permission_level": "CAN_EDIT",
                    "inherited": True,
                    "inherited_from_object": ["/experiments/"],
                }
            ],
        },
    ]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("alice", "must be a list"),
        (["alice"], "access_control_list[0]': must be an object"),
        ([{"permission_level": "CAN_READ"}], "give exactly one of user_name"),
        ([{"user_name": "alice", "group_name": "ml-team", "permission_level": "CAN_READ"}], "exactly one"),
        ([{"user_name": "alice"}], "Missing required field 'access_control_list[0].permission_level'"),
        (
            [{"user_name": "alice", "permission_level": "CAN_QUERY"}],
            "not one of CAN_READ, CAN_EDIT, CAN_MANAGE",
        ),
        ([{"user_name": "carol", "permission_level": "CAN_READ"}], "no user named 'carol' exists"),
        ([{"user_name": "ml-team", "permission_level": "CAN_READ"}], "no user named 'ml-team' exists"),
    ],
)
def test_bad_access_control_lists_are_refused(db: Database, entries: object, message: str) -> None:
    with pytest.raises(InvalidParameterValue) as err:
        RegistryAccess(db).write(MODEL, "fraud", entries, replace=True)
    assert message in err.value.message
    assert db.grants.acl(MODEL.value, "fraud") == {}


def test_levels_describe_each_level_for_the_object_type() -> None:
    levels = RegistryAccess.levels(MODEL)["permission_levels"]
    assert [lvl["permission_level"] for lvl in levels] == ["CAN_MANAGE", "CAN_EDIT", "CAN_READ"]
    assert "versions" in levels[1]["description"]
