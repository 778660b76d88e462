"""Which inference tables an endpoint's current configs name (the tables its managers own)."""

from __future__ import annotations

from typing import Any

from modelport.control.table_acl import inference_table_of
from modelport.store.records import ConfigRecord, EndpointRecord


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
