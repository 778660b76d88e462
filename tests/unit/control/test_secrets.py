"""SecretService: Databricks' scope/secret/ACL semantics, resolution and its cache, and the
secrets key (control/cipher.py). The store is a real SQLite database in a temporary folder."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from modelport.control.cipher import KEY_FILE, SecretCipher, SecretsKeyError, load_cipher
from modelport.control.secrets import SecretService
from modelport.errors import (
    InvalidParameterValue,
    InvalidState,
    ModelportError,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from modelport.spec.identity import Caller
from modelport.store import Database, open_database

VALUE = "sk-unit-0123456789-not-a-real-key"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    for group, admin in (("admins", True), ("users", False)):
        database.principals.create(group, "group", display_name=group, is_admin=admin, now_ms=1)
    return database


def user(db: Database, name: str, *, admin: bool = False) -> Caller:
    record = db.principals.create(name, "user", display_name=None, is_admin=False, now_ms=1)
    groups = ["users"] + (["admins"] if admin else [])
    ids = {record.id}
    for group in groups:
        found = db.principals.get(group)
        assert found is not None
        db.principals.set_members(found.id, [record.id], replace=False)
        ids.add(found.id)
    return Caller(id=record.id, name=name, kind="user", groups=tuple(groups), principal_ids=frozenset(ids))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cipher() -> SecretCipher:
    return SecretCipher([Fernet.generate_key()])


@pytest.fixture
def service(db: Database, cipher: SecretCipher, clock: Clock) -> SecretService:
    return SecretService(db, cipher, clock=clock)


def put(service: SecretService, caller: Caller, scope: str, key: str, value: str = VALUE) -> None:
    service.put_secret(caller, {"scope": scope, "key": key, "string_value": value})


# ---- scopes and ACLs ----------------------------------------------------------------------------
def test_creator_gets_manage_and_sees_the_acl(db: Database, service: SecretService) -> None:
    alice = user(db, "alice")
    service.create_scope(alice, "team")
    assert service.list_acls(alice, "team") == [{"principal": "alice", "permission": "MANAGE"}]
    assert service.list_scopes(alice) == [{"name": "team", "backend_type": "DATABRICKS"}]
    with pytest.raises(ResourceAlreadyExists, match="Scope team already exists"):
        service.create_scope(alice, "team")


def test_initial_manage_principal_users_gives_everyone_manage(db: Database, service: SecretService) -> None:
    alice, bob = user(db, "alice"), user(db, "bob")
    service.create_scope(alice, "shared", "users")
    put(service, bob, "shared", "k")
    assert service.list_acls(bob, "shared") == [{"principal": "users", "permission": "MANAGE"}]
    with pytest.raises(InvalidParameterValue, match="only supported principal is 'users'"):
        service.create_scope(alice, "other", "alice")


def test_reserved_and_foreign_backend_scopes_are_refused(db: Database, service: SecretService) -> None:
    admin = user(db, "root", admin=True)
    with pytest.raises(InvalidParameterValue, match="reserved"):
        service.create_scope(admin, "modelport-endpoint-abc")
    with pytest.raises(InvalidParameterValue, match="AZURE_KEYVAULT"):
        service.create_scope(admin, "kv", None, "AZURE_KEYVAULT")


def test_read_lists_and_gets_but_cannot_write(db: Database, service: SecretService) -> None:
    alice, bob = user(db, "alice"), user(db, "bob")
    service.create_scope(alice, "team")
    put(service, alice, "team", "k")
    with pytest.raises(PermissionDenied, match="'bob' does not have READ permission on secret scope 'team'"):
        service.list_secrets(bob, "team")

    service.put_acl(alice, "team", "bob", "READ")

    [meta] = service.list_secrets(bob, "team")
    assert meta["key"] == "k" and isinstance(meta["last_updated_timestamp"], int)
    got = service.get_secret(bob, "team", "k")
    assert got == {"key": "k", "value": base64.b64encode(VALUE.encode()).decode()}
    with pytest.raises(PermissionDenied, match=r"WRITE permission .* \(has READ\)"):
        put(service, bob, "team", "k2")
    with pytest.raises(PermissionDenied, match="MANAGE"):
        service.list_acls(bob, "team")


def test_write_puts_and_deletes_but_cannot_manage(db: Database, service: SecretService) -> None:
    alice, bob = user(db, "alice"), user(db, "bob")
    service.create_scope(alice, "team")
    service.put_acl(alice, "team", "bob", "WRITE")
    put(service, bob, "team", "k")
    service.delete_secret(bob, "team", "k")
    with pytest.raises(ResourceDoesNotExist, match="Secret 'k' does not exist in scope team"):
        service.delete_secret(bob, "team", "k")
    with pytest.raises(PermissionDenied, match="MANAGE"):
        service.put_acl(bob, "team", "bob", "MANAGE")
    with pytest.raises(PermissionDenied, match="MANAGE"):
        service.delete_scope(bob, "team")


def test_group_grant_applies_to_members(db: Database, service: SecretService) -> None:
    alice, bob = user(db, "alice"), user(db, "bob")
    service.create_scope(alice, "team")
    service.put_acl(alice, "team", "users", "READ")
    assert service.get_acl(alice, "team", "users") == {"principal": "users", "permission": "READ"}
    assert service.list_secrets(bob, "team") == []


def test_admins_may_do_everything(db: Database, service: SecretService) -> None:
    alice, root = user(db, "alice"), user(db, "root", admin=True)
    service.create_scope(alice, "team")
    put(service, root, "team", "k")
    assert service.get_secret(root, "team", "k")["key"] == "k"
    service.put_acl(root, "team", "alice", "READ")
    service.delete_acl(root, "team", "alice")
    with pytest.raises(ResourceDoesNotExist, match="No ACL for principal 'alice' on scope team"):
        service.get_acl(root, "team", "alice")
    service.delete_scope(root, "team")
    with pytest.raises(ResourceDoesNotExist, match="Scope team does not exist"):
        service.list_secrets(root, "team")


def test_acl_for_an_unknown_principal_names_it(db: Database, service: SecretService) -> None:
    alice = user(db, "alice")
    service.create_scope(alice, "team")
    with pytest.raises(InvalidParameterValue, match=r"'ghost@example\.com'"):
        service.put_acl(alice, "team", "ghost@example.com", "READ")
    with pytest.raises(InvalidParameterValue, match="'OWNER' is not one of"):
        service.put_acl(alice, "team", "alice", "OWNER")


# ---- put validation: values are never echoed ------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"string_value": VALUE, "bytes_value": "c2s="}, "exactly one of"),
        ({}, "exactly one of"),
        ({"bytes_value": VALUE + "!!"}, "not valid base64"),
        ({"string_value": VALUE * 5000}, "the limit is 128 KB"),
        ({"string_value": VALUE, "key": "bad key"}, "letters, digits"),
    ],
)
def test_bad_puts_say_why_without_the_value(
    db: Database, service: SecretService, body: dict[str, str], message: str
) -> None:
    alice = user(db, "alice")
    service.create_scope(alice, "team")
    with pytest.raises(InvalidParameterValue, match=message) as caught:
        service.put_secret(alice, {"scope": "team", "key": "k", **body})
    assert "sk-unit" not in caught.value.message


def test_bytes_values_round_trip(db: Database, service: SecretService) -> None:
    alice = user(db, "alice")
    service.create_scope(alice, "team")
    blob = base64.b64encode(bytes(range(256))).decode()
    service.put_secret(alice, {"scope": "team", "key": "bin", "bytes_value": blob})
    assert service.get_secret(alice, "team", "bin")["value"] == blob


def test_values_are_encrypted_at_rest(db: Database, service: SecretService, tmp_path: Path) -> None:
    alice = user(db, "alice")
    service.create_scope(alice, "team")
    put(service, alice, "team", "k")
    record = db.secrets.get("team", "k")
    assert record is not None and VALUE.encode() not in record.value
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("m.db*"))
    assert VALUE.encode() not in stored
    assert base64.b64encode(VALUE.encode()) not in stored


# ---- resolve ---------------------------------------------------------------------------------------
def test_resolve_caches_for_a_few_seconds(
    db: Database, service: SecretService, cipher: SecretCipher, clock: Clock
) -> None:
    alice = user(db, "alice")
    service.create_scope(alice, "team")
    put(service, alice, "team", "k", "v1")
    assert service.resolve("team", "k") == "v1"

    # Another process rotates the value: this one sees it once the cache entry expires.
    db.secrets.put("team", "k", cipher.encrypt(b"v2"), 2)
    assert service.resolve("team", "k") == "v1"
    clock.now += 5.1
    assert service.resolve("team", "k") == "v2"


def test_put_and_delete_through_the_service_evict_at_once(db: Database, service: SecretService) -> None:
    alice = user(db, "alice")
    service.create_scope(alice, "team")
    put(service, alice, "team", "k", "v1")
    assert service.resolve("team", "k") == "v1"
    put(service, alice, "team", "k", "v2")
    assert service.resolve("team", "k") == "v2"
    service.delete_secret(alice, "team", "k")
    with pytest.raises(InvalidState, match=r"Secret \{\{secrets/team/k\}\}.*does not exist"):
        service.resolve("team", "k")


def test_resolve_async_reads_the_store_in_a_thread_only_on_a_miss(
    db: Database, service: SecretService, cipher: SecretCipher, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = user(db, "alice")
    service.create_scope(alice, "team")
    put(service, alice, "team", "k", "v1")
    reads: list[int] = []
    read = db.secrets.get

    def counted(scope: str, key: str) -> object:
        reads.append(threading.get_ident())
        return read(scope, key)

    monkeypatch.setattr(db.secrets, "get", counted)

    async def main() -> list[str]:
        loop_thread = threading.get_ident()
        got = [await service.resolve_async("team", "k"), await service.resolve_async("team", "k")]
        db.secrets.put("team", "k", cipher.encrypt(b"v2"), 2)
        clock.now += 5.1
        got.append(await service.resolve_async("team", "k"))
        assert reads and loop_thread not in reads
        return got

    assert asyncio.run(main()) == ["v1", "v1", "v2"]
    assert len(reads) == 2  # the first call and the one after the entry expired
    service.delete_secret(alice, "team", "k")
    with pytest.raises(InvalidState, match="does not exist"):
        asyncio.run(service.resolve_async("team", "k"))


def test_resolve_of_a_value_that_is_not_text(db: Database, service: SecretService) -> None:
    alice = user(db, "alice")
    service.create_scope(alice, "team")
    service.put_secret(
        alice, {"scope": "team", "key": "bin", "bytes_value": base64.b64encode(b"\xff").decode()}
    )
    with pytest.raises(InvalidState, match="not UTF-8"):
        service.resolve("team", "bin")


# ---- endpoint configs ------------------------------------------------------------------------------
def _config(key_field: str, value: str) -> dict[str, object]:
    return {
        "served_entities": [
            {
                "name": "chat",
                "external_model": {
                    "provider": "openai",
                    "name": "gpt",
                    "task": "llm/v1/chat",
                    "openai_config": {key_field: value},
                },
            }
        ],
        "traffic_config": {"routes": []},
    }


def test_check_references_needs_existing_readable_secrets(db: Database, service: SecretService) -> None:
    alice, bob = user(db, "alice"), user(db, "bob")
    service.create_scope(alice, "team")
    put(service, alice, "team", "k")
    service.check_references(alice, _config("openai_api_key", "{{secrets/team/k}}"))

    with pytest.raises(
        InvalidParameterValue, match=r"openai_api_key'.*\{\{secrets/nope/k\}\} does not exist"
    ):
        service.check_references(alice, _config("openai_api_key", "{{secrets/nope/k}}"))
    with pytest.raises(PermissionDenied, match=r"'bob' does not have READ .* \(\{\{secrets/team/k\}\}\)"):
        service.check_references(bob, _config("openai_api_key", "{{secrets/team/k}}"))
    with pytest.raises(PermissionDenied, match="READ"):  # a reference in a _plaintext field counts too
        service.check_references(bob, _config("openai_api_key_plaintext", "{{secrets/team/k}}"))
    with pytest.raises(InvalidParameterValue, match="scope 'team' has no key 'other'"):
        service.check_references(alice, _config("openai_api_key", "{{secrets/team/other}}"))


def test_inline_credentials_go_to_a_server_scope_only_admins_read(
    db: Database, service: SecretService
) -> None:
    alice, root = user(db, "alice"), user(db, "root", admin=True)
    body, keys = service.store_inline_credentials("e1", _config("openai_api_key_plaintext", VALUE))

    [key] = keys
    ref = body["served_entities"][0]["external_model"]["openai_config"]["openai_api_key_plaintext"]
    assert ref == f"{{{{secrets/modelport-endpoint-e1/{key}}}}}"
    assert key.startswith("chat.openai_api_key.")
    assert service.resolve("modelport-endpoint-e1", key) == VALUE
    assert db.secrets.acl("modelport-endpoint-e1") == {}
    with pytest.raises(PermissionDenied):
        service.get_secret(alice, "modelport-endpoint-e1", key)
    with pytest.raises(PermissionDenied):  # nor may alice point another endpoint at it
        service.check_references(alice, body)
    service.check_references(root, body)

    service.delete_inline_credentials("e1")
    assert db.secrets.get_scope("modelport-endpoint-e1") is None
    with pytest.raises(InvalidState):
        service.resolve("modelport-endpoint-e1", key)


def test_prune_drops_only_unreferenced_credentials(db: Database, service: SecretService) -> None:
    service.store_inline_credentials("e1", _config("openai_api_key_plaintext", "one"))
    second, _ = service.store_inline_credentials("e1", _config("openai_api_key_plaintext", "two"))
    scope = "modelport-endpoint-e1"
    assert len(db.secrets.list_secrets(scope)) == 2

    service.prune_inline_credentials("e1", [second], started_ms=10**15)

    [left] = db.secrets.list_secrets(scope)
    kept = second["served_entities"][0]["external_model"]["openai_config"]["openai_api_key_plaintext"]
    assert kept == f"{{{{secrets/{scope}/{left.key}}}}}"


# ---- the key -----------------------------------------------------------------------------------------
def test_key_file_is_created_0600_and_reused(db: Database, tmp_path: Path) -> None:
    first = load_cipher("", tmp_path, db)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = first.encrypt(b"x")
    again = load_cipher("", tmp_path, db)
    assert again.decrypt(token, "t") == b"x"


def test_a_different_key_stops_the_start(db: Database, tmp_path: Path) -> None:
    load_cipher("", tmp_path, db)
    other = Fernet.generate_key().decode()
    with pytest.raises(SecretsKeyError, match="MODELPORT_SECRETS_KEY is not the key this store"):
        load_cipher(other, tmp_path, db)


def test_a_lost_key_file_stops_the_start_without_making_a_new_one(db: Database, tmp_path: Path) -> None:
    load_cipher("", tmp_path, db)
    (tmp_path / KEY_FILE).unlink()
    with pytest.raises(SecretsKeyError, match="does not exist"):
        load_cipher("", tmp_path, db)
    assert not (tmp_path / KEY_FILE).exists()


def test_a_malformed_key_is_named_without_echoing_it(db: Database, tmp_path: Path) -> None:
    with pytest.raises(SecretsKeyError, match="not a valid Fernet key") as caught:
        load_cipher("not-a-key-value", tmp_path, db)
    assert "not-a-key-value" not in str(caught.value)


def test_rotation_lists_the_new_key_first(db: Database, tmp_path: Path) -> None:
    old = Fernet.generate_key().decode()
    token = load_cipher(old, tmp_path, db).encrypt(b"x")
    new = Fernet.generate_key().decode()
    rotated = load_cipher(f"{new},{old}", tmp_path, db)
    assert rotated.decrypt(token, "t") == b"x"
    with pytest.raises(ModelportError, match="cannot be decrypted"):
        SecretCipher([new.encode()]).decrypt(token, "Secret t")


def test_rotate_key_rewrites_every_secret_and_reseals_the_check(db: Database, tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    first = SecretService(db, load_cipher(old, tmp_path, db))
    root = user(db, "root", admin=True)
    first.create_scope(root, "sc")
    put(first, root, "sc", "a")
    before = db.secrets.list_secrets("sc")[0].last_updated_ms
    both = SecretService(db, load_cipher(f"{new},{old}", tmp_path, db))
    with pytest.raises(SecretsKeyError, match="rotate-key"):
        load_cipher(new, tmp_path, db)  # the secrets are still the old key's
    with pytest.raises(PermissionDenied, match="rotate the secrets key"):
        both.rotate_key(user(db, "bob"))

    assert both.rotate_key(root) == 1

    after = SecretService(db, load_cipher(new, tmp_path, db))
    assert after.resolve("sc", "a") == VALUE
    assert db.secrets.list_secrets("sc")[0].last_updated_ms == before  # re-encrypted, not rewritten
    with pytest.raises(SecretsKeyError, match="not the key"):
        load_cipher(old, tmp_path, db)


def test_rotate_key_is_all_or_nothing(db: Database, tmp_path: Path) -> None:
    old, new, stray = (Fernet.generate_key().decode() for _ in range(3))
    load_cipher(old, tmp_path, db)  # the first start seals the check token with the old key
    service = SecretService(db, load_cipher(f"{new},{old}", tmp_path, db))
    root = user(db, "root", admin=True)
    service.create_scope(root, "sc")
    put(service, root, "sc", "a")
    db.secrets.put("sc", "z", SecretCipher([stray.encode()]).encrypt(b"lost"), 1)
    with pytest.raises(InvalidState, match=r"\{\{secrets/sc/z\}\} cannot be decrypted"):
        service.rotate_key(root)
    with pytest.raises(SecretsKeyError):
        load_cipher(new, tmp_path, db)  # the check token was not resealed either
