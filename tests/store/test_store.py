"""The metadata store, run against SQLite and PostgreSQL (``store_url`` gives each a fresh database)."""

from __future__ import annotations

import threading

import pytest

from modelport.errors import ResourceAlreadyExists
from modelport.store import Database, open_database
from modelport.store.records import ConfigRecord, EndpointRecord

BODY = {"served_entities": [{"name": "a"}], "traffic_config": {"routes": []}}


@pytest.fixture
def db(store_url: str) -> Database:
    database = open_database(store_url)
    yield database
    database.close()


def endpoint(name: str = "ep", eid: str = "e1") -> EndpointRecord:
    return EndpointRecord(
        id=eid,
        name=name,
        creator="admin",
        created_ms=10,
        updated_ms=10,
        config_update="IN_PROGRESS",
        pending_version=1,
        tags=[{"key": "k", "value": "v"}],
        ai_gateway={"usage_tracking_config": {"enabled": True}},
    )


def first_config(eid: str = "e1") -> ConfigRecord:
    return ConfigRecord(
        endpoint_id=eid, version=1, body=BODY, status="PENDING", creator="admin", created_ms=10
    )


def with_owner(db: Database) -> int:
    return db.principals.create("admin", "user", display_name="Admin", is_admin=True, now_ms=1).id


def test_migrations_are_idempotent(store_url: str) -> None:
    open_database(store_url).close()
    again = open_database(store_url)
    assert again.meta_get("nothing") is None
    again.close()


def test_meta_setdefault_keeps_the_first_value(db: Database) -> None:
    assert db.meta_setdefault("workspace_id", "111") == "111"
    assert db.meta_setdefault("workspace_id", "222") == "111"


def test_principals_groups_and_membership(db: Database) -> None:
    group = db.principals.create("team", "group", display_name=None, is_admin=False, now_ms=1)
    alice = db.principals.create("alice@x.com", "user", display_name="Alice", is_admin=False, now_ms=2)
    db.principals.set_members(group.id, [alice.id], replace=False)
    found = db.principals.get("alice@x.com")
    assert found is not None and found.groups == ("team",) and found.group_ids == (group.id,)
    assert [m.name for m in db.principals.members(group.id)] == ["alice@x.com"]
    with pytest.raises(ResourceAlreadyExists):
        db.principals.create("alice@x.com", "user", display_name=None, is_admin=False, now_ms=3)
    db.principals.remove_members(group.id, [alice.id])
    assert db.principals.get("alice@x.com").groups == ()  # type: ignore[union-attr]


def test_tokens_are_found_by_hash_and_deleted(db: Database) -> None:
    owner = with_owner(db)
    db.principals.add_token("t1", owner, "h" * 64, comment="c", now_ms=5, expiry_ms=None, created_by="admin")
    token, principal = db.principals.find_token("h" * 64)  # type: ignore[misc]
    assert (token.id, token.comment, principal.name) == ("t1", "c", "admin")
    assert [t.id for t in db.principals.tokens(owner)] == ["t1"]
    assert db.principals.delete_token("t1") == "h" * 64
    assert db.principals.find_token("h" * 64) is None
    assert db.principals.delete_token("t1") is None


def test_endpoint_round_trip_and_duplicate_name(db: Database) -> None:
    owner = with_owner(db)
    db.endpoints.create(endpoint(), first_config(), owner)
    got = db.endpoints.get("ep")
    assert got == endpoint()
    assert db.endpoints.acl("e1") == {owner: 3}
    with pytest.raises(ResourceAlreadyExists):
        db.endpoints.create(endpoint(eid="e2"), None, owner)


def test_update_lifecycle_promotes_fails_and_cancels(db: Database) -> None:
    owner = with_owner(db)
    db.endpoints.create(endpoint(), first_config(), owner)
    assert db.endpoints.begin_update("e1", BODY, "admin", 20, None) is None  # v1 still in progress
    assert db.endpoints.finish_update("e1", 1, success=True, body=BODY, message=None, now_ms=30)
    got = db.endpoints.get("e1") or db.endpoints.get_by_id("e1")
    assert (got.config_update, got.active_version, got.pending_version) == ("NOT_UPDATING", 1, None)  # type: ignore[union-attr]
    assert db.endpoints.begin_update("e1", BODY, "admin", 40, None) == 2
    assert db.endpoints.finish_update("e1", 2, success=False, body=BODY, message="boom", now_ms=50)
    got = db.endpoints.get_by_id("e1")
    assert (got.config_update, got.active_version, got.pending_version) == ("UPDATE_FAILED", 1, 2)  # type: ignore[union-attr]
    assert db.endpoints.get_config("e1", 2).message == "boom"  # type: ignore[union-attr]
    assert db.endpoints.begin_update("e1", BODY, "admin", 60, None) == 3
    assert db.endpoints.cancel_update("e1", None, 70) == 3
    assert not db.endpoints.finish_update("e1", 3, success=True, body=BODY, message=None, now_ms=80)
    got = db.endpoints.get_by_id("e1")
    assert (got.config_update, got.active_version) == ("UPDATE_CANCELED", 1)  # type: ignore[union-attr]
    assert [c.status for c in db.endpoints.configs("e1")] == ["ACTIVE", "FAILED", "CANCELED"]


def test_only_one_of_two_racing_updates_wins(db: Database) -> None:
    owner = with_owner(db)
    db.endpoints.create(endpoint(), first_config(), owner)
    db.endpoints.finish_update("e1", 1, success=True, body=BODY, message=None, now_ms=30)
    results: list[int | None] = []
    barrier = threading.Barrier(4)

    def race() -> None:
        barrier.wait()
        try:
            results.append(db.endpoints.begin_update("e1", BODY, "admin", 40, None))
        except Exception:  # a lost race on the version key is also a refusal
            results.append(None)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if r is not None]) == 1


def test_acl_write_merge_and_replace(db: Database) -> None:
    owner = with_owner(db)
    bob = db.principals.create("bob", "user", display_name=None, is_admin=False, now_ms=1).id
    db.endpoints.create(endpoint(), first_config(), owner)
    db.endpoints.write_acl("e1", {bob: 1}, replace=False)
    assert db.endpoints.acl("e1") == {owner: 3, bob: 1}
    db.endpoints.write_acl("e1", {bob: 2}, replace=False)
    assert db.endpoints.acl("e1") == {owner: 3, bob: 2}
    db.endpoints.write_acl("e1", {bob: 3}, replace=True)
    assert db.endpoints.acl("e1") == {bob: 3}
    assert db.endpoints.all_acls() == {"e1": {bob: 3}}


def test_delete_endpoint_removes_configs_and_acl(db: Database) -> None:
    owner = with_owner(db)
    db.endpoints.create(endpoint(), first_config(), owner)
    db.endpoints.delete("e1")
    assert db.endpoints.get("ep") is None
    assert db.endpoints.configs("e1") == []
    assert db.endpoints.all_acls() == {}


def test_schema_head_constant_matches_alembic() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from modelport.store.database import _MIGRATIONS, SCHEMA_HEAD

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_migrated_database_records_the_head_revision(db: Database) -> None:
    from modelport.store.database import SCHEMA_HEAD

    assert db.revision() == SCHEMA_HEAD
