"""The secrets repository and its migration, run against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from modelport.errors import ResourceAlreadyExists, ResourceDoesNotExist
from modelport.store import Database, open_database


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = open_database(store_url)
    yield database
    database.close()


def principal(db: Database, name: str = "alice@x.com") -> int:
    return db.principals.create(name, "user", display_name=None, is_admin=False, now_ms=1).id


def test_schema_matches_the_migrations(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from modelport.store.schema import metadata

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_scope_create_get_list_and_duplicate(db: Database) -> None:
    owner = principal(db)
    db.secrets.create_scope("b-scope", "alice@x.com", 10, owner)
    db.secrets.create_scope("a.scope", "alice@x.com", 11, None)

    assert [s.name for s in db.secrets.list_scopes()] == ["a.scope", "b-scope"]
    found = db.secrets.get_scope("b-scope")
    assert found is not None and (found.creator, found.created_ms) == ("alice@x.com", 10)
    assert db.secrets.acl("b-scope") == {owner: 3}
    assert db.secrets.acl("a.scope") == {}
    with pytest.raises(ResourceAlreadyExists, match="Scope b-scope already exists"):
        db.secrets.create_scope("b-scope", "bob", 12, None)


def test_put_overwrites_and_lists_metadata_without_values(db: Database) -> None:
    db.secrets.create_scope("s", "admin", 1, None)
    db.secrets.put("s", "k", b"token-1", 100)
    db.secrets.put("s", "k", b"token-2", 200)
    db.secrets.put("s", "a", b"token-3", 300)

    record = db.secrets.get("s", "k")
    assert record is not None and (record.value, record.last_updated_ms) == (b"token-2", 200)
    listed = db.secrets.list_secrets("s")
    assert [(r.key, r.last_updated_ms, r.value) for r in listed] == [("a", 300, b""), ("k", 200, b"")]
    assert db.secrets.get("s", "missing") is None


def test_put_into_a_missing_scope_is_resource_does_not_exist(db: Database) -> None:
    with pytest.raises(ResourceDoesNotExist, match="Scope nope does not exist"):
        db.secrets.put("nope", "k", b"x", 1)


def test_delete_secret_reports_whether_it_existed(db: Database) -> None:
    db.secrets.create_scope("s", "admin", 1, None)
    db.secrets.put("s", "k", b"x", 1)
    assert db.secrets.delete("s", "k") is True
    assert db.secrets.delete("s", "k") is False
    assert db.secrets.get("s", "k") is None


def test_delete_scope_takes_its_secrets_and_acls(db: Database) -> None:
    owner = principal(db)
    db.secrets.create_scope("s", "alice@x.com", 1, owner)
    db.secrets.put("s", "k", b"x", 1)
    assert db.secrets.delete_scope("s") is True
    assert db.secrets.delete_scope("s") is False
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM secrets")).scalar() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM secret_acls")).scalar() == 0


def test_prune_keeps_referenced_and_recent_keys(db: Database) -> None:
    db.secrets.create_scope("s", "admin", 1, None)
    db.secrets.put("s", "old-used", b"x", 100)
    db.secrets.put("s", "old-unused", b"x", 100)
    db.secrets.put("s", "new-unused", b"x", 900)

    assert db.secrets.prune("s", {"old-used"}, before_ms=500) == ["old-unused"]
    assert [r.key for r in db.secrets.list_secrets("s")] == ["new-unused", "old-used"]


def test_acls_put_replace_delete_and_entries(db: Database) -> None:
    alice = principal(db, "alice@x.com")
    team = db.principals.create("team", "group", display_name=None, is_admin=False, now_ms=1).id
    db.secrets.create_scope("s", "alice@x.com", 1, alice)
    db.secrets.put_acl("s", team, 1)
    db.secrets.put_acl("s", team, 2)

    assert db.secrets.acl("s") == {alice: 3, team: 2}
    entries = [(e.principal_name, e.principal_kind, e.permission) for e in db.secrets.acl_entries("s")]
    assert entries == [("alice@x.com", "user", 3), ("team", "group", 2)]
    assert db.secrets.delete_acl("s", team) is True
    assert db.secrets.delete_acl("s", team) is False
    assert db.secrets.acl("s") == {alice: 3}


def test_deleting_a_principal_removes_its_scope_grants(db: Database) -> None:
    alice = principal(db)
    db.secrets.create_scope("s", "alice@x.com", 1, alice)
    db.principals.delete(alice)
    assert db.secrets.acl("s") == {}
    assert db.secrets.get_scope("s") is not None


def test_ensure_scope_is_idempotent(db: Database) -> None:
    db.secrets.ensure_scope("modelport-endpoint-e1", "modelport", 1)
    db.secrets.ensure_scope("modelport-endpoint-e1", "modelport", 2)
    found = db.secrets.get_scope("modelport-endpoint-e1")
    assert found is not None and found.created_ms == 1
    assert db.secrets.acl("modelport-endpoint-e1") == {}


def test_values_are_stored_as_given_bytes(db: Database) -> None:
    db.secrets.create_scope("s", "admin", 1, None)
    blob = bytes(range(256))
    db.secrets.put("s", "bin", blob, 1)
    record = db.secrets.get("s", "bin")
    assert record is not None and record.value == blob
