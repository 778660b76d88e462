"""Agents' traces: the inference row's ``trace`` column (capped) and the MLflow tracking store.

The traces are made by MLflow itself, in this process, the way a served agent's are (its
model-serving trace buffer: ``mlflow.start_span`` inside a prediction context, then
``pop_trace``); the store is MLflow's SQLAlchemy tracking store on a SQLite file, and the rows
go through a real :class:`~modelport.tables.writer.TableWriter` into a Delta table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelport.gateway import agent_traces
from modelport.gateway.agent_traces import (
    TAG_ENDPOINT,
    TAG_REQUEST_ID,
    TAG_SERVED_ENTITY,
    AgentTraces,
    PendingTrace,
    experiment_name,
)
from modelport.gateway.exchange import Exchange
from modelport.gateway.recording import MAX_TRACE_BYTES, Recorder, trace_column
from modelport.gateway.routing import Route, ServedEntity
from modelport.spec.identity import Caller
from modelport.tables.writer import TableWriter
from tests.support.tables import read_table

BOB = Caller(id=2, name="bob", kind="user", groups=("users",), principal_ids=frozenset({2}))


@pytest.fixture(scope="module")
def make_trace() -> Iterator[Any]:
    """``make(request_id, blob=0) -> bytes``: the ``Trace.to_json()`` of an agent's request with
    a root span ``agent`` and a child ``tool`` (whose attribute ``blob`` is ``blob`` characters
    long), made by MLflow's tracer in its model-serving mode (no tracking store)."""
    import mlflow
    from mlflow.entities import Trace
    from mlflow.pyfunc.context import Context, set_prediction_context
    from mlflow.tracing.export.inference_table import pop_trace

    saved = {k: os.environ.get(k) for k in ("IS_IN_DB_MODEL_SERVING_ENV", "ENABLE_MLFLOW_TRACING")}
    os.environ.update({"IS_IN_DB_MODEL_SERVING_ENV": "true", "ENABLE_MLFLOW_TRACING": "true"})
    mlflow.tracing.reset()

    def make(request_id: str, blob: int = 0) -> bytes:
        context = Context(request_id=request_id)
        with set_prediction_context(context), mlflow.start_span("agent", span_type="AGENT") as root:
            root.set_inputs({"input": [{"role": "user", "content": "hi"}]})
            with mlflow.start_span("tool", span_type="TOOL") as tool:
                tool.set_attribute("blob", "x" * blob)
            root.set_outputs({"output": "echo: hi"})
        found = pop_trace(request_id)
        assert found is not None, "MLflow kept no trace"
        return Trace.from_dict(found).to_json().encode()

    try:
        yield make
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        mlflow.tracing.reset()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """MLflow's SQLAlchemy tracking store on a fresh SQLite database (made once: it takes seconds)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = tmp_path_factory.mktemp("mlflow")
    return SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))


def _route(name: str = "ag-x", inference: dict[str, Any] | None = None) -> Route:
    entity = ServedEntity("agent", {"entity_name": "m", "entity_version": "1"})
    return Route("ep-1", name, 1, "NOT_UPDATING", {"agent": entity}, ("agent",), (100,), inference=inference)


def _exchange(trace: bytes | None, request_id: str = "req-1") -> Exchange:
    ex = Exchange(BOB, "ag-x", b'{"input": []}', request_id=request_id)
    ex.entity = "agent"
    ex.trace = trace
    return ex


def _pending(trace: bytes, request_id: str, endpoint: str = "ag-x") -> PendingTrace:
    return PendingTrace(trace, endpoint, "ep-1", "agent", request_id, "bob")


def _found(store: Any, experiment_id: str, request_id: str) -> list[Any]:
    infos, _ = store.search_traces(
        locations=[experiment_id], filter_string=f"tags.`{TAG_REQUEST_ID}` = '{request_id}'"
    )
    return list(infos)


# -- the inference row's column ----------------------------------------------------------------


def test_a_small_trace_is_kept_as_it_came(make_trace: Any) -> None:
    trace = make_trace("small-1")
    assert trace_column(trace) == trace.decode()
    assert json.loads(trace_column(trace))["info"]["trace_id"].startswith("tr-")


def test_a_trace_past_the_cap_becomes_a_stub_naming_it(make_trace: Any) -> None:
    trace = make_trace("huge-1", blob=MAX_TRACE_BYTES + 10)
    assert len(trace) > MAX_TRACE_BYTES
    stub = json.loads(trace_column(trace))
    assert stub == {
        "truncated": True,
        "trace_id": json.loads(trace)["info"]["trace_id"],
        "spans": 2,
        "size_bytes": len(trace),
    }


def test_a_cut_text_that_is_no_trace_still_gets_a_stub() -> None:
    stub = json.loads(trace_column(b"[" + b" " * MAX_TRACE_BYTES + b"]"))
    assert stub["truncated"] is True and stub["trace_id"] is None and stub["spans"] == 0


def test_the_recorder_writes_the_trace_into_the_row(make_trace: Any, tmp_path: Path) -> None:
    writer = TableWriter(tmp_path / "tables", tmp_path / "spool")
    writer.open()
    recorder = Recorder(writer)
    route = _route(inference={"enabled": True, "catalog_name": "main", "schema_name": "ag"})
    small, huge = make_trace("row-1"), make_trace("row-2", blob=MAX_TRACE_BYTES)
    for ex in (_exchange(small, "row-1"), _exchange(huge, "row-2"), _exchange(None, "row-3")):
        recorder.record(ex, route, status=200, served="agent", response=b'{"output": []}', tokens=None)
    writer.flush_now()
    rows = {
        r["databricks_request_id"]: r
        for r in read_table(str(tmp_path / "tables" / "main" / "ag" / "ag_x_payload")).to_pylist()
    }
    assert rows["row-1"]["trace"] == small.decode()
    stub = json.loads(rows["row-2"]["trace"])
    assert stub["truncated"] is True and stub["trace_id"] == json.loads(huge)["info"]["trace_id"]
    assert rows["row-3"]["trace"] is None
    writer.close()


# -- the MLflow tracking store -----------------------------------------------------------------


def test_a_trace_is_written_to_its_endpoint_experiment(make_trace: Any, store: Any) -> None:
    traces = AgentTraces(lambda: store)
    trace = make_trace("mlflow-1")
    trace_id = traces.write(_pending(trace, "gw-req-1"))
    experiment = store.get_experiment_by_name(experiment_name("ag-x"))
    assert experiment is not None and experiment.tags[TAG_ENDPOINT] == "ag-x"
    (info,) = _found(store, experiment.experiment_id, "gw-req-1")
    assert info.trace_id == trace_id == json.loads(trace)["info"]["trace_id"]
    assert info.client_request_id == "gw-req-1"
    assert info.tags[TAG_ENDPOINT] == "ag-x" and info.tags[TAG_SERVED_ENTITY] == "agent"
    assert info.trace_metadata["mlflow.trace.user"] == "bob"
    whole = store.get_trace(trace_id)
    assert sorted(s.name for s in whole.data.spans) == ["agent", "tool"]
    # the next trace of the endpoint goes to the same experiment
    traces.write(_pending(make_trace("mlflow-2"), "gw-req-2"))
    assert len(_found(store, experiment.experiment_id, "gw-req-2")) == 1
    assert store.get_experiment_by_name(experiment_name("ag-x")).experiment_id == experiment.experiment_id


def test_a_trace_taken_from_another_store_is_moved_whole(make_trace: Any, store: Any) -> None:
    data = json.loads(make_trace("moved-1"))
    data["info"]["tags"] = {
        "mlflow.artifactLocation": "file:///replica/mlruns/0/traces/x/artifacts",
        "mlflow.trace.spansLocation": "ARTIFACT_REPO",
        "mine": "kept",
    }
    trace_id = AgentTraces(lambda: store).write(_pending(json.dumps(data).encode(), "moved-1"))
    info = store.get_trace_info(trace_id)
    assert info.tags["mine"] == "kept" and info.tags["mlflow.trace.spansLocation"] == "TRACKING_STORE"
    assert "/replica/" not in info.tags["mlflow.artifactLocation"]
    assert len(store.get_trace(trace_id).data.spans) == 2


def test_the_thread_writes_counts_failures_and_goes_on(make_trace: Any, store: Any) -> None:
    traces = AgentTraces(lambda: store)
    traces.start()
    assert traces.submit(_pending(b"not a trace", "bad-1", endpoint="ag-y"))
    assert traces.submit(_pending(make_trace("thread-1"), "good-1", endpoint="ag-y"))
    traces.stop(timeout=30)
    assert (traces.written, traces.failed, traces.dropped, traces.pending) == (1, 1, 0, 0)
    experiment = store.get_experiment_by_name(experiment_name("ag-y"))
    assert len(_found(store, experiment.experiment_id, "good-1")) == 1


def test_a_store_that_cannot_be_had_is_counted_and_asked_again(make_trace: Any, store: Any) -> None:
    calls: list[int] = []

    def flaky() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the registry failed to start")
        return store

    traces = AgentTraces(flaky)
    traces.start()
    traces.submit(_pending(make_trace("flaky-1"), "flaky-1", endpoint="ag-z"))
    traces.submit(_pending(make_trace("flaky-2"), "flaky-2", endpoint="ag-z"))
    traces.stop(timeout=30)
    assert (traces.written, traces.failed, len(calls)) == (1, 1, 2)


def test_a_deleted_experiment_is_not_restored(make_trace: Any, store: Any) -> None:
    traces = AgentTraces(lambda: store)
    traces.write(_pending(make_trace("del-1"), "del-1", endpoint="ag-deleted"))
    experiment = store.get_experiment_by_name(experiment_name("ag-deleted"))
    store.delete_experiment(experiment.experiment_id)
    with pytest.raises(Exception, match="deleted"):
        traces.write(_pending(make_trace("del-2"), "del-2", endpoint="ag-deleted"))
    fresh = AgentTraces(lambda: store)  # one that never saw it active
    with pytest.raises(RuntimeError, match="is deleted"):
        fresh.write(_pending(make_trace("del-3"), "del-3", endpoint="ag-deleted"))
    assert store.get_experiment(experiment.experiment_id).lifecycle_stage == "deleted"


# -- the observer and the bounds -------------------------------------------------------------


def test_the_observer_queues_only_answers_with_a_trace(make_trace: Any) -> None:
    traces = AgentTraces(lambda: None)  # never started: what it queues stays
    traces(_exchange(None), _route(), 200, 1.0, None)
    assert traces.pending == 0
    traces(_exchange(make_trace("obs-1"), "obs-1"), _route(), 500, 1.0, None)
    assert traces.pending == 1
    item = traces._queue.get_nowait()
    assert (item.endpoint, item.endpoint_id, item.served_entity, item.request_id, item.requester) == (
        "ag-x",
        "ep-1",
        "agent",
        "obs-1",
        "bob",
    )


def test_traces_past_the_bounds_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_traces, "MAX_PENDING", 2)
    monkeypatch.setattr(agent_traces, "MAX_PENDING_BYTES", 100)
    traces = AgentTraces(lambda: None)
    assert traces.submit(_pending(b"x" * 10, "b-1"))
    assert traces.submit(_pending(b"x" * 10, "b-2"))
    assert not traces.submit(_pending(b"x" * 10, "b-3"))  # count
    assert traces.dropped == 1 and traces.pending == 2
    traces = AgentTraces(lambda: None)
    assert traces.submit(_pending(b"x" * 60, "b-4"))
    assert not traces.submit(_pending(b"x" * 60, "b-5"))  # bytes
    assert traces.dropped == 1 and traces.pending == 1


def test_stop_without_start_is_harmless() -> None:
    AgentTraces(lambda: None).stop()
    assert orjson.loads(trace_column(b'{"a": 1}')) == {"a": 1}
