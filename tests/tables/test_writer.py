"""TableWriter: rows reach Delta with the right types, bursts land exactly once, failures are retried."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from modelport.errors import InvalidParameterValue, InvalidState
from modelport.tables import writer as writer_module
from modelport.tables.names import TableRef
from modelport.tables.records import MAX_BODY_BYTES, AuditRecord, InferenceRecord, UsageRecord
from modelport.tables.writer import TableWriter
from tests.support.tables import id_counts, read_table

T0 = 1_767_225_599_000  # 2025-12-31T23:59:59Z: one second before a date boundary


def _inference(rid: str, **fields: object) -> InferenceRecord:
    base: dict[str, object] = {"request": '{"inputs": [1]}', "response": '{"predictions": [2]}'}
    base.update(fields)
    return InferenceRecord(rid, 200, 7, **base)  # type: ignore[arg-type]


def test_rows_round_trip_with_their_types(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool)
    w.open()
    chat = w.payload_table("Main", "default", "Chat")
    assert chat.name == "main.default.chat_payload"
    assert chat.uri == str(Path(root).resolve() / "main/default/chat_payload")
    w.record_inference(
        chat,
        InferenceRecord(
            "r1",
            429,
            12,
            request='{"messages": []}',
            response='{"error_code": "REQUEST_LIMIT_EXCEEDED"}',
            timestamp_ms=T0,
            client_request_id="c1",
            served_entity_id="e1",
            served_entity_name="gpt",
            requester="alice@example.com",
            sampling_fraction=0.5,
            request_metadata={"endpoint_name": "chat", "model_version": 3},  # type: ignore[dict-item]
            guardrails={"input": {"pii": "BLOCKED"}},
            fallback_chain=["gpt", "claude"],
            error_code="REQUEST_LIMIT_EXCEEDED",
        ),
    )
    w.record_inference(chat, _inference("r2", timestamp_ms=T0 + 1000))
    w.record_usage(
        UsageRecord(
            "r1",
            "chat",
            200,
            requester="alice@example.com",
            client_request_id="c1",
            served_entity_name="gpt",
            input_token_count=11,
            output_token_count=22,
            tokens_estimated=True,
            latency_ms=12,
            request_time_ms=T0,
            usage_context={"project": "x"},
        )
    )
    assert w.flush_now() == 3
    w.close()

    payload = read_table(chat.uri).sort_by("databricks_request_id")
    schema = payload.schema
    assert schema.field("date").type == pa.date32()
    assert schema.field("timestamp_ms").type == pa.int64()
    assert schema.field("status_code").type == pa.int32()
    assert schema.field("request_truncated").type == pa.bool_()
    assert pa.types.is_map(schema.field("request_metadata").type)
    row, row2 = payload.to_pylist(maps_as_pydicts="strict")
    assert row["databricks_request_id"] == "r1" and row["client_request_id"] == "c1"
    assert row["date"] == dt.date(2025, 12, 31) and row2["date"] == dt.date(2026, 1, 1)
    assert row["status_code"] == 429 and row["execution_time_ms"] == 12
    assert row["request_metadata"] == {"endpoint_name": "chat", "model_version": "3"}
    assert orjson.loads(row["guardrails"]) == {"input": {"pii": "BLOCKED"}}
    assert orjson.loads(row["fallback_chain"]) == ["gpt", "claude"]
    assert row["sampling_fraction"] == 0.5 and row["requester"] == "alice@example.com"
    assert row["request_truncated"] is False and row2["guardrails"] is None
    assert DeltaTable(chat.uri).metadata().partition_columns == ["date"]

    usage = read_table(w.usage.uri).to_pylist(maps_as_pydicts="strict")
    assert usage == [
        {
            "request_id": "r1",
            "client_request_id": "c1",
            "requester": "alice@example.com",
            "endpoint_name": "chat",
            "served_entity_name": "gpt",
            "status_code": 200,
            "input_token_count": 11,
            "output_token_count": 22,
            "tokens_estimated": True,
            "latency_ms": 12,
            "request_time": dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
            "usage_context": {"project": "x"},
            "date": dt.date(2025, 12, 31),
        }
    ]
    assert w.usage.uri.endswith("/system/serving/endpoint_usage")


def test_bodies_over_1_mib_are_truncated_and_flagged(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool)
    w.open()
    chat = w.payload_table("main", "default", "chat")
    big = b'{"text": "' + "é".encode() * (MAX_BODY_BYTES // 2) + b'"}'
    w.record_inference(chat, InferenceRecord.from_bodies("raw", 200, 1, big, b'{"ok": true}'))
    # A caller that passes text over the limit gets it clipped too.
    w.record_inference(chat, _inference("text", response="a" * (MAX_BODY_BYTES + 10)))
    w.flush_now()
    w.close()
    rows = {r["databricks_request_id"]: r for r in read_table(chat.uri).to_pylist()}
    raw, text = rows["raw"], rows["text"]
    assert raw["request_truncated"] is True and raw["response_truncated"] is False
    assert len(raw["request"].encode()) <= MAX_BODY_BYTES and raw["request"].endswith("é")
    assert raw["response"] == '{"ok": true}'
    assert text["response_truncated"] is True and text["request_truncated"] is False
    assert text["response"] == "a" * MAX_BODY_BYTES


def test_burst_of_2000_from_concurrent_tasks_lands_exactly_once(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool, flush_interval=0.05, max_batch=250)
    chat = w.payload_table("main", "default", "chat")
    asyncio.run(_burst(w, chat))
    expected = {f"t{n}-{i}" for n in range(50) for i in range(40)}
    for uri, column in ((chat.uri, "databricks_request_id"), (w.usage.uri, "request_id")):
        counts = id_counts(uri, column)
        assert set(counts) == expected and counts.total() == 2000
    stats = w.stats
    assert stats.recorded == stats.flushed == 4000
    assert stats.failed == stats.deduplicated == 0
    assert stats.commits >= 4  # batches during the burst, not one write at the end
    assert list(Path(spool).glob("*.seg")) == []


async def _burst(w: TableWriter, chat: TableRef) -> None:
    await w.start()

    async def client(n: int) -> None:
        for i in range(40):
            rid = f"t{n}-{i}"
            w.record_inference(chat, _inference(rid))
            w.record_usage(UsageRecord(rid, "chat", 200, input_token_count=1, output_token_count=2))
            await asyncio.sleep(0)

    await asyncio.gather(*(client(n) for n in range(50)))
    await w.stop()


def test_unflushed_rows_are_replayed_on_open(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool)
    w.open()
    chat = w.payload_table("main", "default", "chat")
    for i in range(10):
        w.record_inference(chat, _inference(f"a{i}"))
    w.flush_now()
    for i in range(10, 25):
        w.record_inference(chat, _inference(f"a{i}"))
    w.record_inference(chat, _inference("a24"))  # the same id twice in a replayed batch: kept once
    w._spool.close()  # the process dies: no flush, the segment stays

    w2 = TableWriter(root, spool)
    assert w2.recover() == 16
    w2.close()
    counts = id_counts(chat.uri, "databricks_request_id")
    assert set(counts) == {f"a{i}" for i in range(25)} and max(counts.values()) == 1
    assert w2.stats.deduplicated == 1 and w2.stats.flushed == 15


def test_a_table_marked_done_in_a_segment_is_not_rewritten(
    dirs: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, spool = dirs
    w = TableWriter(root, spool)
    w.open()
    chat = w.payload_table("main", "default", "chat")
    for i in range(5):
        w.record_inference(chat, _inference(f"b{i}"))
        w.record_usage(UsageRecord(f"b{i}", "chat", 200))
    real = writer_module.write_deltalake

    def usage_fails(uri: str, *args: object, **kwargs: object) -> None:
        if "endpoint_usage" in uri:
            raise OSError("storage unavailable")
        real(uri, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer_module, "write_deltalake", usage_fails)
    w.flush_now()
    assert w.stats.failed == 5 and w.stats.pending_segments == 1
    w._spool.close()  # crash while usage is still failing
    monkeypatch.setattr(writer_module, "write_deltalake", real)

    w2 = TableWriter(root, spool)
    assert w2.recover() == 5  # only the usage rows: the payload rows were marked done
    w2.close()
    assert id_counts(chat.uri, "databricks_request_id").total() == 5
    assert id_counts(w.usage.uri, "request_id").total() == 5


def test_failed_write_that_committed_is_retried_without_duplicates(
    dirs: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, spool = dirs
    w = TableWriter(root, spool, flush_interval=0.01)
    w.open()
    real = writer_module.write_deltalake
    calls = []

    def commits_then_raises(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("the answer to the commit was lost")

    monkeypatch.setattr(writer_module, "write_deltalake", commits_then_raises)
    for i in range(20):
        w.record_usage(UsageRecord(f"c{i}", "chat", 200))
    w.flush_now(deadline=time.monotonic() + 10)
    stats = w.stats
    w.close()
    assert stats.failed == 20 and stats.deduplicated == 20 and stats.pending_segments == 0
    counts = id_counts(w.usage.uri, "request_id")
    assert counts.total() == 20 and max(counts.values()) == 1


def test_rows_of_the_wrong_type_are_rejected_not_blocking(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool)
    w.open()
    w.record_usage(UsageRecord("ok", "chat", 200))
    w.record_usage(UsageRecord("bad", "chat", "two hundred"))  # type: ignore[arg-type]
    w.flush_now()
    w.close()
    assert id_counts(w.usage.uri, "request_id") == {"ok": 1}
    assert w.stats.rejected == 1
    rejected = [orjson.loads(line) for line in (Path(spool) / "rejected.jsonl").read_bytes().splitlines()]
    assert rejected[0]["r"]["request_id"] == "bad"


def test_torn_last_line_is_skipped(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool)
    w.open()
    w.record_usage(UsageRecord("whole", "chat", 200))
    segment = sorted(Path(spool).glob("*.seg"))[-1]
    w._spool.close()
    with segment.open("ab") as fh:
        fh.write(b'{"t":["usage","system.serving.endpoint_usage","x"],"r":{"request_id":"to')
    w2 = TableWriter(root, spool)
    w2.recover()
    w2.close()
    assert w2.stats.corrupt == 1
    assert id_counts(w.usage.uri, "request_id") == {"whole": 1}


def test_bad_input_and_state_raise_modelport_errors(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool)
    chat = w.payload_table("main", "default", "chat")
    with pytest.raises(InvalidState):
        w.record_usage(UsageRecord("r", "chat", 200))
    w.open()
    with pytest.raises(InvalidParameterValue):
        w.record_inference(w.usage, _inference("r"))
    with pytest.raises(InvalidParameterValue):
        w.record_inference(chat, UsageRecord("r", "chat", 200))  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterValue):
        w.record_usage(UsageRecord("", "chat", 200))
    with pytest.raises(InvalidParameterValue):
        w.payload_table("main", "../etc", "chat")
    with pytest.raises(InvalidState):
        TableWriter(root, spool).open()  # the spool folder belongs to w
    w.close()
    with pytest.raises(InvalidParameterValue):
        TableWriter(root, spool, max_batch=0)


def test_compact_merges_the_small_files_of_many_flushes(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool)
    w.open()
    for batch in range(4):
        for i in range(5):
            w.record_usage(UsageRecord(f"k{batch}-{i}", "chat", 200))
        w.flush_now()
    assert len(DeltaTable(w.usage.uri).file_uris()) == 4
    metrics = w.compact(w.usage)
    w.close()
    assert metrics["numFilesRemoved"] == 4 and metrics["numFilesAdded"] == 1
    assert len(DeltaTable(w.usage.uri).file_uris()) == 1
    assert id_counts(w.usage.uri, "request_id").total() == 20


def test_a_backlog_larger_than_one_pass_is_flushed_in_several(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool, max_bytes_per_cycle=1)  # one segment a pass
    w.open()
    for seg in range(3):
        for i in range(4):
            w.record_usage(UsageRecord(f"s{seg}-{i}", "chat", 200))
        w._spool.seal()
    assert w.flush_now() == 12
    w.close()
    assert w.stats.commits == 3
    assert id_counts(w.usage.uri, "request_id").total() == 12


def _audit(event_id: str, **fields: object) -> AuditRecord:
    response = {"status_code": 403, "error_code": "PERMISSION_DENIED", "error_message": "no"}
    return AuditRecord(event_id, f"r-{event_id}", "secrets", "putSecret", response, **fields)  # type: ignore[arg-type]


def test_audit_rows_round_trip_typed_and_are_replayed_once(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    w = TableWriter(root, spool)
    w.open()
    when = int(dt.datetime(2026, 12, 6, 23, 59, 59, 500_000, tzinfo=dt.UTC).timestamp() * 1000)
    w.record_audit(
        _audit(
            "e0",
            event_time_ms=when,
            user_identity={"email": "bob"},
            request_params={"scope": "s", "key": "k"},
        )
    )
    w.flush_now()
    for i in range(1, 4):
        w.record_audit(_audit(f"e{i}"))
    w.record_audit(_audit("e3"))  # the same event twice in a replayed batch: kept once
    w._spool.close()  # the process dies: no flush, the segment stays

    w2 = TableWriter(root, spool)
    assert w2.recover() == 4
    w2.close()
    assert w.audit.name == "system.access.audit" and w.audit.uri.endswith("/system/access/audit")
    counts = id_counts(w.audit.uri, "event_id")
    assert set(counts) == {"e0", "e1", "e2", "e3"} and max(counts.values()) == 1
    table = read_table(w.audit.uri)
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("event_date").type == pa.date32()
    assert DeltaTable(w.audit.uri).metadata().partition_columns == ["event_date"]
    first = next(row for row in table.to_pylist() if row["event_id"] == "e0")
    assert first["event_date"] == dt.date(2026, 12, 6)
    assert first["user_identity"] == {"email": "bob"}
    assert sorted(first["request_params"]) == [("key", "k"), ("scope", "s")]
    assert first["response"] == {"status_code": 403, "error_code": "PERMISSION_DENIED", "error_message": "no"}
    assert first["audit_level"] == "WORKSPACE_LEVEL"
    with pytest.raises(InvalidParameterValue, match="event_id"):
        w2.record_audit(_audit(""))
