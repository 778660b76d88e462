"""Inference and usage table names and where they are stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import InvalidParameterValue
from modelport.tables.names import TableRef, default_prefix, payload_table, split_name, table_uri, usage_table


def test_payload_table_is_named_and_placed_like_databricks(tmp_path: Path) -> None:
    ref = payload_table(str(tmp_path), "Main", "Default", "My_Chat")
    assert ref.kind == "inference"
    assert ref.name == "main.default.my_chat_payload"
    assert ref.uri == f"{tmp_path.resolve()}/main/default/my_chat_payload"
    assert ref.id_column == "databricks_request_id"


def test_usage_table_and_uri_roots(tmp_path: Path) -> None:
    ref = usage_table("s3://bucket/prefix/")
    assert ref.name == "system.serving.endpoint_usage"
    assert ref.uri == "s3://bucket/prefix/system/serving/endpoint_usage"
    assert ref.id_column == "request_id"
    assert table_uri("~/x", "a", "b", "c") == f"{Path('~/x').expanduser().resolve()}/a/b/c"


@pytest.mark.parametrize("bad", ["", "a-b", "a.b", "../x", "a b", "é", "x" * 256])
def test_bad_name_parts_are_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidParameterValue, match="schema_name"):
        payload_table("/data", "main", bad, "p")


def test_prefix_too_long_once_suffixed() -> None:
    with pytest.raises(InvalidParameterValue, match="table_name_prefix"):
        payload_table("/data", "main", "default", "p" * 250)


def test_default_prefix_and_split_name() -> None:
    assert default_prefix("My-Endpoint.v2") == "my_endpoint_v2"
    assert split_name("Main.default.T") == ("main", "default", "t")
    with pytest.raises(InvalidParameterValue):
        split_name("main.t")


def test_table_ref_spool_key_and_kind() -> None:
    ref = TableRef("usage", "system.serving.endpoint_usage", "/r/system/serving/endpoint_usage")
    assert ref.spool_key == b'["usage","system.serving.endpoint_usage","/r/system/serving/endpoint_usage"]'
    with pytest.raises(InvalidParameterValue):
        TableRef("other", "a.b.c", "/x")  # type: ignore[arg-type]
