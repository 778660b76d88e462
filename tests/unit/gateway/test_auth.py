from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from modelport.control.identity import IdentityService
from modelport.errors import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist, Unauthenticated
from modelport.gateway.auth import Authenticator, caller_from
from modelport.spec.identity import hash_token
from modelport.store import Database, open_database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path / 'm.db'}")


def services(db: Database) -> tuple[Authenticator, IdentityService]:
    auth = Authenticator(db, ttl_seconds=60)
    return auth, IdentityService(db, auth.forget)


def test_first_start_generates_a_token_file_with_mode_0600_once(db: Database, tmp_path: Path) -> None:
    auth, identity = services(db)
    token = identity.bootstrap("admin", None, tmp_path)
    assert token is not None and token.startswith("dapi") and len(token) == 36
    path = tmp_path / "admin-token"
    assert path.read_text().strip() == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert identity.bootstrap("admin", None, tmp_path) is None  # second start: nothing new
    caller = auth.authenticate(f"Bearer {token}")
    assert (caller.name, caller.is_admin, set(caller.groups)) == ("admin", True, {"admins", "users"})


def test_admin_token_from_environment_is_stored_hashed_and_no_file_written(
    db: Database, tmp_path: Path
) -> None:
    auth, identity = services(db)
    assert identity.bootstrap("root", "dapi-from-env", tmp_path) is None
    assert not (tmp_path / "admin-token").exists()
    assert auth.authenticate("Bearer dapi-from-env").name == "root"
    assert db.principals.find_token(hash_token("dapi-from-env")) is not None
    assert "dapi-from-env" not in (tmp_path / "m.db").read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (None, "Missing credentials"),
        ("Basic abc", "Unsupported authorization scheme"),
        ("Bearer", "Unsupported"),
        ("Bearer dapi-nope", "Invalid access token"),
    ],
)
def test_bad_credentials(db: Database, tmp_path: Path, header: str | None, fragment: str) -> None:
    auth, identity = services(db)
    identity.bootstrap("admin", "dapi-ok", tmp_path)
    with pytest.raises(Unauthenticated, match=fragment):
        auth.authenticate(header)


def test_deleted_token_stops_working_despite_the_cache(db: Database, tmp_path: Path) -> None:
    auth, identity = services(db)
    identity.bootstrap("admin", "dapi-ok", tmp_path)
    admin = auth.authenticate("Bearer dapi-ok")
    new = identity.create_token(admin, None, "ci")
    assert auth.authenticate(f"Bearer {new.value}").token_id == new.record.id  # now cached
    identity.delete_token(admin, new.record.id)
    with pytest.raises(Unauthenticated):
        auth.authenticate(f"Bearer {new.value}")


def test_expired_token_is_refused(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth, identity = services(db)
    identity.bootstrap("admin", "dapi-ok", tmp_path)
    admin = auth.authenticate("Bearer dapi-ok")
    new = identity.create_token(admin, 60, None)
    assert auth.authenticate(f"Bearer {new.value}").name == "admin"
    import modelport.gateway.auth as auth_module

    monkeypatch.setattr(auth_module, "now_ms", lambda: new.record.expiry_ms + 1)  # type: ignore[operator]
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(f"Bearer {new.value}")


def test_lifetime_must_be_positive(db: Database, tmp_path: Path) -> None:
    auth, identity = services(db)
    identity.bootstrap("admin", "dapi-ok", tmp_path)
    admin = auth.authenticate("Bearer dapi-ok")
    with pytest.raises(InvalidParameterValue, match="lifetime_seconds"):
        identity.create_token(admin, 0, None)


def test_non_admins_cannot_manage_principals_or_others_tokens(db: Database, tmp_path: Path) -> None:
    auth, identity = services(db)
    identity.bootstrap("admin", "dapi-ok", tmp_path)
    admin = auth.authenticate("Bearer dapi-ok")
    alice = caller_from(identity.create_principal(admin, "alice@x.com", "user"))
    assert alice.groups == ("users",) and not alice.is_admin
    with pytest.raises(PermissionDenied, match="admins"):
        identity.create_principal(alice, "bob", "user")
    admin_token = identity.list_tokens(admin)[0]
    with pytest.raises(ResourceDoesNotExist):
        identity.delete_token(alice, admin_token.id)
    with pytest.raises(PermissionDenied):
        identity.create_token_for(alice, "admin", "user", None, None)


def test_group_change_is_seen_after_cache_is_cleared(db: Database, tmp_path: Path) -> None:
    auth, identity = services(db)
    identity.bootstrap("admin", "dapi-ok", tmp_path)
    admin = auth.authenticate("Bearer dapi-ok")
    identity.create_principal(admin, "alice", "user")
    tok = identity.create_token_for(admin, "alice", "user", None, None)
    assert not auth.authenticate(f"Bearer {tok.value}").is_admin
    identity.change_members(admin, "admins", ["alice"], [])
    assert auth.authenticate(f"Bearer {tok.value}").is_admin


def test_a_known_token_outlives_its_ttl_while_the_store_is_unreachable(tmp_path: Path) -> None:
    from modelport.errors import TemporarilyUnavailable

    path = tmp_path / "m.db"
    db = open_database(f"sqlite:///{path}")
    auth = Authenticator(db, ttl_seconds=0.0)  # every call past the cache asks the store
    IdentityService(db, auth.forget).bootstrap("admin", "dapi-ok", tmp_path)
    assert auth.authenticate("Bearer dapi-ok").name == "admin"
    path.rename(tmp_path / "away.db")
    path.mkdir()  # the store's file is gone: SQLite cannot open it (OperationalError)
    assert auth.authenticate("Bearer dapi-ok").name == "admin"  # the stale entry serves
    with pytest.raises(TemporarilyUnavailable):
        auth.authenticate("Bearer dapi-never-seen")  # cannot be checked: 503, not 401
    path.rmdir()
    (tmp_path / "away.db").rename(path)
    assert auth.authenticate("Bearer dapi-ok").name == "admin"  # checked against the store again
    with pytest.raises(Unauthenticated):
        auth.authenticate("Bearer dapi-never-seen")


@pytest.mark.parametrize("name_or_id", ["²", "٣", "9" * 30, "-1", " 1"])
def test_a_principal_id_that_is_no_database_integer_is_not_found(db: Database, name_or_id: str) -> None:
    """SCIM ids arrive as path text: '²' passes str.isdigit() but not int() (a fuzzer's 500),
    30 digits overflow the column; each is just a principal that does not exist."""
    _, identity = services(db)
    with pytest.raises(ResourceDoesNotExist):
        identity.find(name_or_id)


@pytest.mark.parametrize("token_id", [["x"], {"id": "x"}, 7])
def test_a_token_id_that_is_no_string_is_a_bad_request(
    db: Database, tmp_path: Path, token_id: object
) -> None:
    """``{"token_id": [...]}`` reached the store's query as a list: a 500 found by the fuzzer."""
    auth, identity = services(db)
    identity.bootstrap("admin", "dapi-ok", tmp_path)
    admin = auth.authenticate("Bearer dapi-ok")
    with pytest.raises(InvalidParameterValue, match="'token_id': must be a string"):
        identity.delete_token(admin, token_id)  # type: ignore[arg-type]
