"""Table jobs without a server: their inputs read and checked, the output table's state read
back (the checkpoint), the job store, and a chunk scored through ``ai_query`` on DuckDB with
endpoints answered in-process."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.batch.ai_query import EndpointInfo, Endpoints
from modelport.batch.table_io import append, file_format, output_state, read_file
from modelport.batch.table_jobs import TableJob, TableJobStore
from modelport.batch.table_runner import TableJobRunner, _score, _Stopped
from modelport.errors import InvalidParameterValue, InvalidState, NotFound, PermissionDenied
from modelport.spec.identity import Caller


def _caller(name: str, admin: bool = False) -> Caller:
    return Caller(1, name, "user", ("admins",) if admin else (), frozenset({1}))


def _job(**fields: Any) -> TableJob:
    base: dict[str, Any] = {
        "id": TableJobStore.new_id(),
        "owner": "alice",
        "endpoint": "model",
        "kind": "custom",
        "input_format": "parquet",
        "input_name": "in.parquet",
        "fingerprint": "sha256:ab",
        "output_table": "main.default.out",
        "columns": ["a", "b"],
        "chunk_rows": 10,
        "created_at": 1,
    }
    return TableJob(**{**base, **fields})


# ---- inputs ----------------------------------------------------------------------------------
def test_the_format_comes_from_the_file_name() -> None:
    assert [file_format(n) for n in ("x.PARQUET", "x.csv", "x.jsonl", "x.json", "x.ndjson")] == [
        "parquet",
        "csv",
        "jsonl",
        "jsonl",
        "jsonl",
    ]
    with pytest.raises(InvalidParameterValue, match=r"x\.txt"):
        file_format("x.txt")


def test_each_format_is_read_and_an_all_null_column_becomes_a_string(tmp_path: Path) -> None:
    unsigned = pa.array([1, 2], pa.uint32())
    pq.write_table(pa.table({"a": [1, 2], "n": pa.nulls(2), "u": unsigned}), tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n")
    (tmp_path / "t.jsonl").write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')
    parquet = read_file(tmp_path / "t.parquet", "parquet", "t.parquet")
    assert (parquet.schema.field("n").type, parquet.schema.field("u").type) == (pa.string(), pa.int64())
    assert read_file(tmp_path / "t.csv", "csv", "t.csv").to_pylist() == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert read_file(tmp_path / "t.jsonl", "jsonl", "t.jsonl").column("b").to_pylist() == ["x", "y"]


def test_a_file_that_is_not_its_format_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"not parquet")
    with pytest.raises(InvalidParameterValue, match=r"Cannot read 'scores\.parquet' as parquet"):
        read_file(tmp_path / "f", "parquet", "scores.parquet")


def test_a_column_named_like_the_outputs_own_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"Result": [1]}), tmp_path / "t.parquet")
    with pytest.raises(InvalidParameterValue, match="'Result'"):
        read_file(tmp_path / "t.parquet", "parquet", "t.parquet")


# ---- the output table: the checkpoint -----------------------------------------------------------
def test_the_output_state_is_read_back_from_the_table(tmp_path: Path) -> None:
    uri = str(tmp_path / "out")
    assert output_state(uri) is None
    chunk = {"row_id": [0, 1, 2], "x": ["a", "b", "c"], "result": [1.0, None, None]}
    append(uri, pa.table({**chunk, "errorMessage": [None, "boom", "boom"]}), "bjob-1", "sha256:ab")
    append(
        uri,
        pa.table({"row_id": [5], "x": ["f"], "result": [2.0], "errorMessage": pa.nulls(1)}),
        "bjob-1",
        "sha256:ab",
    )
    state = output_state(uri)
    assert state is not None
    assert sorted(state.row_ids.to_pylist()) == [0, 1, 2, 5]
    assert (state.failed, state.errors) == (2, Counter({"boom": 2}))
    assert (state.job_id, state.fingerprint) == ("bjob-1", "sha256:ab")


# ---- the store ------------------------------------------------------------------------------------
def test_a_job_is_seen_by_its_owner_and_admins_only(tmp_path: Path) -> None:
    store = TableJobStore(tmp_path)
    job = store.add(_job())
    assert store.get(_caller("alice"), job.id).to_json()["rows"] == {"total": 0, "done": 0, "failed": 0}
    assert store.get(_caller("root", admin=True), job.id).id == job.id
    with pytest.raises(NotFound):
        store.get(_caller("bob"), job.id)
    assert [j.id for j in store.list(_caller("bob"))] == []
    with pytest.raises(NotFound):
        store.load("batch-../../etc")


def test_cancel_leaves_a_marker_and_reopen_queues_the_job_again(tmp_path: Path) -> None:
    store = TableJobStore(tmp_path)
    job = store.add(_job(status="running"))
    store.cancel(_caller("alice"), job.id)
    assert store.load(job.id).status == "cancelling"
    job.status = "cancelled"
    store.save(job)
    with pytest.raises(InvalidState):
        store.cancel(_caller("alice"), job.id)
    reopened = store.reopen(store.load(job.id))
    assert (reopened.status, store.cancel_requested(job.id)) == ("queued", False)
    assert [j.id for j in store.writing("main.default.out")] == [job.id]


def test_the_runner_reads_an_ended_job_again_only_once_it_is_reopened(tmp_path: Path) -> None:
    store = TableJobStore(tmp_path)
    queued = store.add(_job())
    ended = store.add(_job(status="cancelled"))
    seen: dict[str, int] = {}
    assert [j.id for j in store.pending(seen)] == [queued.id]
    assert list(seen) == [ended.id]
    store.reopen(ended)
    assert {j.id for j in store.pending(seen)} == {queued.id, ended.id}
    assert seen == {}


def test_same_work_means_owner_endpoint_input_columns_and_output() -> None:
    job = _job()
    assert job.same_work(_job(id="bjob-2"))
    assert not job.same_work(_job(columns=["a"]))
    assert not job.same_work(_job(owner="bob"))
    # A table's later version is the same input (a reopened job reads the version it began with).
    delta = _job(input_format="delta", input_name="main.a.t", fingerprint="delta:main.a.t@1")
    assert delta.same_work(_job(input_format="delta", input_name="main.a.t", fingerprint="delta:main.a.t@4"))


def test_columns_default_to_all_and_an_llm_takes_exactly_one() -> None:
    assert TableJobRunner._columns(None, ["a", "b"], "custom") == ["a", "b"]
    assert TableJobRunner._columns(["b"], ["a", "b"], "chat") == ["b"]
    with pytest.raises(InvalidParameterValue, match="no column 'c'"):
        TableJobRunner._columns(["c"], ["a", "b"], "custom")
    with pytest.raises(InvalidParameterValue, match="one text column"):
        TableJobRunner._columns(None, ["a", "b"], "embeddings")
    with pytest.raises(InvalidParameterValue, match="chunk_rows"):
        TableJobRunner._chunk_rows(0, "custom")


# ---- a chunk through ai_query ------------------------------------------------------------------
def _endpoints(answer: Any) -> tuple[Endpoints, list[Any]]:
    sent: list[Any] = []

    async def call(endpoint: str, body: bytes) -> bytes:
        data = orjson.loads(body)
        sent.append(data)
        return orjson.dumps(answer(data))

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(coro)

    return Endpoints(call, lambda _e: EndpointInfo("custom", "DOUBLE", ("a", "b")), run), sent


def _chunk() -> pa.Table:
    return pa.table({"row_id": [3, 4, 7], "a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})


def _split_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    split = data["dataframe_split"]
    return [dict(zip(split["columns"], row, strict=True)) for row in split["data"]]


def test_a_chunk_is_sent_as_one_dataframe_split_and_answered_row_by_row() -> None:
    endpoints, sent = _endpoints(lambda d: {"predictions": [r["a"] * 10 for r in _split_rows(d)]})
    scored = _score(_job(), endpoints, _chunk(), threading.Event())
    assert scored.column_names == ["row_id", "a", "b", "result", "errorMessage"]
    assert scored.column("result").to_pylist() == [10.0, 20.0, 30.0]
    assert scored.column("errorMessage").to_pylist() == [None, None, None]
    assert len(sent) == 1 and _split_rows(sent[0]) == [
        {"a": 1.0, "b": "x"},
        {"a": 2.0, "b": "y"},
        {"a": 3.0, "b": "z"},
    ]


def test_a_failing_row_gets_its_error_message_and_the_others_their_answer() -> None:
    def answer(data: dict[str, Any]) -> dict[str, Any]:
        rows = _split_rows(data)
        if any(r["b"] == "y" for r in rows):
            raise InvalidParameterValue("y is refused")
        return {"predictions": [r["a"] for r in rows]}

    endpoints, _ = _endpoints(answer)
    scored = _score(_job(), endpoints, _chunk(), threading.Event())
    assert scored.column("result").to_pylist() == [1.0, None, 3.0]
    assert scored.column("errorMessage").to_pylist() == [None, "y is refused", None]


def test_a_stopped_job_drops_the_chunk_and_a_refusal_fails_it() -> None:
    endpoints, _ = _endpoints(lambda d: {})
    stopped = threading.Event()

    async def refuse(endpoint: str, body: bytes) -> bytes:
        if stopped.is_set():
            raise _Stopped()
        raise PermissionDenied("'alice' does not have CAN_QUERY permission")

    refusing = Endpoints(refuse, endpoints.describe, endpoints.run)
    with pytest.raises(PermissionDenied, match="CAN_QUERY"):
        _score(_job(), refusing, _chunk(), stopped)
    stopped.set()
    with pytest.raises(_Stopped):
        _score(_job(), refusing, _chunk(), stopped)
