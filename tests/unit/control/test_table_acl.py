"""Which inference tables an endpoint's current configs name (the tables its managers own);
the creator of a table gets MANAGE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.control.table_acl import SYSTEM_TABLES, KnownTables, TableAccess, inference_table_of
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
