"""Which inference tables an endpoint's current configs name (the tables its managers own);
the creator of a table gets MANAGE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelport.control.table_acl import (
    SYSTEM_TABLES,
    KnownTables,
    TableAccess,
    TableListings,
    inference_table_of,
)
from modelport.errors import ResourceDoesNotExist
from modelport.spec.identity import Caller
from modelport.spec.table_privileges import TablePrivilege
from modelport.store import open_database
from modelport.store.records import ConfigRecord, EndpointRecord, PrincipalRecord


def _endpoint(name: str = "Chat-Bot", gateway: dict[str, Any] | None = None) -> EndpointRecord:
    return EndpointRecord("id1", name, "alice", 0, 0, "NOT_UPDATING", ai_gateway=gateway)


def _config(capture: dict[str, Any] | None) -> ConfigRecord:
    body: dict[str, Any] = {"served_entities": [], "traffic_config": {"routes": []}}
    if capture is not None:
        body["auto_capture_config"] = capture
    return ConfigRecord("id1", 1, body, "ACTIVE", "alice", 0)


def test_gateway_and_legacy_configs_name_tables_lower_cased() -> None:
    gateway = {"inference_table_config": {"catalog_name": "Main", "schema_name": "S", "enabled": True}}
    capture = {"catalog_name": "ml", "schema_name": "prod", "table_name_prefix": "Fraud", "enabled": True}
    names = inference_table_of(_endpoint(gateway=gateway), [_config(capture)])
    # The gateway's table has no prefix: the endpoint's name, made a valid part.
    assert names == {"main.s.chat_bot_payload", "ml.prod.fraud_payload"}


def test_disabled_or_broken_configs_name_nothing() -> None:
    gateway = {"inference_table_config": {"catalog_name": "main", "schema_name": "s", "enabled": False}}
    broken = {"catalog_name": "bad name", "schema_name": "s", "enabled": True}
    assert inference_table_of(_endpoint(gateway=gateway), [_config(broken), _config(None)]) == set()


def test_a_table_creator_gets_manage_once_and_others_nothing(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    alice = db.principals.create("alice", "user", display_name=None, is_admin=False, now_ms=0)
    bob = db.principals.create("bob", "user", display_name=None, is_admin=False, now_ms=0)
    access = TableAccess(db, str(tmp_path / "tables"))
    known = KnownTables(on_disk={"ml.features.clicks": "unused"}, owners={})

    def caller(p: PrincipalRecord) -> Caller:
        return Caller(p.id, p.name, "user", ("users",), frozenset({p.id}))

    assert access.set_owner("ML.Features.Clicks", alice.id) is True
    assert access.set_owner("ml.features.clicks", alice.id) is False  # kept as it is
    assert access.level(caller(alice), "ml.features.clicks", known) is TablePrivilege.MANAGE
    assert access.level(caller(bob), "ml.features.clicks", known) is None
    assert access.readable(caller(bob), known) == {}
    admin = Caller(99, "root", "user", ("admins", "users"), frozenset({99}))
    assert set(access.readable(admin, known)) == {"ml.features.clicks", *SYSTEM_TABLES}


def _delta_table(root: Path, name: str) -> str:
    """A folder the tables root listing counts as a Delta table (it holds ``_delta_log``)."""
    path = root.joinpath(*name.split("."))
    (path / "_delta_log").mkdir(parents=True)
    return str(path.resolve())


def test_a_listing_of_the_tables_root_is_reused_until_it_expires(tmp_path: Path) -> None:
    root = tmp_path / "tables"
    now = [100.0]
    listings = TableListings(ttl=2.0, clock=lambda: now[0])
    first = _delta_table(root, "ml.features.clicks")
    assert listings.on_disk(str(root)) == {"ml.features.clicks": first}

    second = _delta_table(root, "ml.features.views")
    now[0] = 101.9
    assert listings.on_disk(str(root)) == {"ml.features.clicks": first}  # reused: not listed again
    now[0] = 102.0
    assert listings.on_disk(str(root)) == {"ml.features.clicks": first, "ml.features.views": second}


def test_a_table_modelport_writes_is_seen_at_once(tmp_path: Path) -> None:
    """The system tables and configured inference tables are expected: a reused listing that
    lacks one that now exists is thrown away; forget() (modelport made a table) does the same."""
    root = tmp_path / "tables"
    listings = TableListings(ttl=3600.0, clock=lambda: 0.0)
    expected = [*SYSTEM_TABLES, "main.serving.chat_payload"]
    assert listings.on_disk(str(root), expected) == {}

    usage = _delta_table(root, SYSTEM_TABLES[0])
    other = _delta_table(root, "ml.features.clicks")
    assert listings.on_disk(str(root), expected) == {SYSTEM_TABLES[0]: usage, "ml.features.clicks": other}

    payload = _delta_table(root, "main.serving.chat_payload")
    found = listings.on_disk(str(root), expected)
    assert found["main.serving.chat_payload"] == payload

    made = _delta_table(root, "ml.features.views")
    assert "ml.features.views" not in listings.on_disk(str(root), expected)
    listings.forget()
    assert listings.on_disk(str(root), expected)["ml.features.views"] == made


def test_known_tables_come_from_the_shared_listing_and_a_new_owned_table_forgets_it(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    alice = db.principals.create("alice", "user", display_name=None, is_admin=False, now_ms=0)
    root = tmp_path / "tables"
    access = TableAccess(db, str(root), TableListings(ttl=3600.0, clock=lambda: 0.0))
    assert access.known().on_disk == {}

    made = _delta_table(root, "ml.features.clicks")
    assert access.known().on_disk == {}  # not a table modelport writes: listed again within the ttl
    assert access.set_owner("ml.features.clicks", alice.id) is True  # modelport made it
    assert access.known().on_disk == {"ml.features.clicks": made}


def test_resolving_a_table_written_behind_modelports_back_finds_it_at_once(tmp_path: Path) -> None:
    """A user writes a Delta table with deltalake, then names it (a monitor on it, say): the
    reused listing lacks it, one probe finds it, the root is listed again."""
    db = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    root = tmp_path / "tables"
    access = TableAccess(db, str(root), TableListings(ttl=3600.0, clock=lambda: 0.0))
    assert access.known().on_disk == {}
    made = _delta_table(root, "ml.features.clicks")
    name, known = access.resolve("ML.features.clicks")
    assert name == "ml.features.clicks" and known.on_disk == {"ml.features.clicks": made}
    with pytest.raises(ResourceDoesNotExist, match=r"ml\.features\.views"):
        access.resolve("ml.features.views")
