"""Rows of the inference and usage tables: body clipping and the conversion to Arrow."""

from __future__ import annotations

import datetime as dt

import orjson
import pyarrow as pa
import pytest

from modelport.tables.records import (
    INFERENCE_SCHEMA,
    MAX_BODY_BYTES,
    USAGE_SCHEMA,
    InferenceRecord,
    UsageRecord,
    clip,
    to_arrow,
)


def test_clip_keeps_short_bodies_whole() -> None:
    assert clip(None) == (None, False)
    assert clip(b'{"a": 1}') == ('{"a": 1}', False)
    assert clip("é" * 10) == ("é" * 10, False)
    assert clip(b"\xff ok") == ("\ufffd ok", False)
    exact = b"a" * MAX_BODY_BYTES
    assert clip(exact) == (exact.decode(), False)


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_clip_cuts_at_a_character_boundary(char: str) -> None:
    body = char * (MAX_BODY_BYTES // len(char.encode()) + 7)
    for value in (body, body.encode()):
        text, cut = clip(value)
        assert cut is True
        assert text is not None
        size = len(text.encode())
        assert MAX_BODY_BYTES - 4 < size <= MAX_BODY_BYTES
        assert set(text) == {char}


def test_clip_with_a_smaller_limit() -> None:
    assert clip("héllo", limit=2) == ("h", True)
    assert clip("héllo", limit=3) == ("hé", True)


def test_from_bodies_sets_the_flags() -> None:
    rec = InferenceRecord.from_bodies("r", 200, 3, b"x" * (MAX_BODY_BYTES + 1), "ok", requester="a")
    assert rec.request_truncated and not rec.response_truncated
    assert rec.requester == "a" and rec.response == "ok"


def test_records_serialise_with_orjson_and_convert_to_the_schemas() -> None:
    inference = orjson.loads(orjson.dumps(InferenceRecord("r", 200, 3, timestamp_ms=0, fallback_chain=["a"])))
    usage = orjson.loads(orjson.dumps(UsageRecord("r", "e", 200, request_time_ms=86_400_000 + 5)))
    ti = to_arrow("inference", [inference, {"databricks_request_id": "old", "unknown": 1}])
    tu = to_arrow("usage", [usage])
    assert ti.schema == INFERENCE_SCHEMA and tu.schema == USAGE_SCHEMA
    assert ti["date"].to_pylist() == [dt.date(1970, 1, 1), None]
    assert ti["fallback_chain"].to_pylist() == ['["a"]', None]
    assert tu["request_time"][0].as_py() == dt.datetime(1970, 1, 2, 0, 0, 0, 5000, tzinfo=dt.UTC)
    assert tu["date"].to_pylist() == [dt.date(1970, 1, 2)]
    with pytest.raises((pa.ArrowException, TypeError, ValueError)):
        to_arrow("usage", [{"request_id": "r", "status_code": "bad"}])
    with pytest.raises(ValueError):
        to_arrow("other", [])
