"""Traces of agent requests: in the inference table's ``trace`` column (capped at 1 MiB) and in
the embedded MLflow tracking server, found by ``mlflow.search_traces()`` (``gateway/agent_traces.py``).

The row and the trace are joined by the gateway's request id: the row's
``databricks_request_id``, the trace's ``client_request_id`` and tag ``modelport.request_id``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from modelport.gateway.agent_traces import TAG_ENDPOINT, TAG_REQUEST_ID, TAG_SERVED_ENTITY, experiment_name
from modelport.gateway.recording import MAX_TRACE_BYTES
from tests.agents.world import CHAT, LLM, RESPONSES, World
from tests.serverproc import ADMIN_TOKEN


def _mlflow(world: World) -> Any:
    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(world.url)
    return mlflow


def _searched(world: World, endpoint: str, request_id: str, timeout: float = 30.0) -> Any:
    """The trace of query ``request_id`` as ``mlflow.search_traces`` finds it in ``endpoint``'s
    experiment (written off the query path: it may take a moment)."""
    mlflow = _mlflow(world)
    deadline = time.monotonic() + timeout
    while True:
        experiment = mlflow.get_experiment_by_name(experiment_name(endpoint))
        if experiment is not None:
            found = mlflow.search_traces(
                locations=[experiment.experiment_id],
                filter_string=f"tags.`{TAG_REQUEST_ID}` = '{request_id}'",
                return_type="list",
            )
            if found:
                assert len(found) == 1, found
                return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no trace of request {request_id} in {experiment_name(endpoint)}")
        time.sleep(0.3)


def _row(world: World, endpoint: str, request_id: str) -> dict[str, Any]:
    (row,) = world.wait_rows(endpoint, 1, databricks_request_id=request_id)
    return row


def _span_types(trace: Any) -> dict[str, str]:
    return {span.name: str(span.span_type) for span in trace.data.spans}


def test_a_query_leaves_its_trace_in_the_row_and_in_mlflow(world: World) -> None:
    from mlflow.entities import Trace

    body = {"input": [{"role": "user", "content": "trace me"}], "custom_inputs": {"use_tool": True}}
    r = world.invoke(RESPONSES, body)
    assert r.status_code == 200, r.text
    assert "tool: You said: trace me" in r.text
    request_id = r.headers["x-request-id"]

    row = _row(world, RESPONSES, request_id)
    assert row["trace"], row
    in_row = Trace.from_json(row["trace"])
    types = _span_types(in_row)
    # the agent's own code (the root span: its predict) and the tool's call of the LLM endpoint
    root = [s for s in in_row.data.spans if s.parent_id is None]
    assert len(root) == 1, types
    tools = [name for name, kind in types.items() if kind == "TOOL"]
    assert any(LLM in name for name in tools), types

    found = _searched(world, RESPONSES, request_id)
    assert found.info.trace_id == in_row.info.trace_id
    assert found.info.client_request_id == request_id
    assert found.info.tags[TAG_ENDPOINT] == RESPONSES
    assert found.info.tags[TAG_SERVED_ENTITY] == "agent"
    assert found.info.trace_metadata.get("mlflow.trace.user") == "admin"
    assert _span_types(found) == types


def test_a_query_without_the_tool_has_no_tool_span(world: World) -> None:
    from mlflow.entities import Trace

    r = world.invoke(RESPONSES, {"input": [{"role": "user", "content": "no tool"}]})
    assert r.status_code == 200, r.text
    row = _row(world, RESPONSES, r.headers["x-request-id"])
    types = _span_types(Trace.from_json(row["trace"]))
    assert types and "TOOL" not in types.values(), types


def test_a_streamed_query_leaves_its_trace(world: World) -> None:
    from mlflow.entities import Trace

    body = {"input": [{"role": "user", "content": "stream me"}], "stream": True}
    with world.admin.stream("POST", f"/serving-endpoints/{RESPONSES}/invocations", json=body) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
        request_id = r.headers["x-request-id"]
    assert "[DONE]" in text
    in_row = Trace.from_json(_row(world, RESPONSES, request_id)["trace"])
    assert in_row.info.trace_id == _searched(world, RESPONSES, request_id).info.trace_id


def test_a_chat_agent_query_is_traced_too(world: World) -> None:
    r = world.invoke(CHAT, {"messages": [{"role": "user", "content": "chat trace"}]})
    assert r.status_code == 200, r.text
    request_id = r.headers["x-request-id"]
    assert json.loads(_row(world, CHAT, request_id)["trace"])["info"]["trace_id"]
    assert _searched(world, CHAT, request_id).info.tags[TAG_ENDPOINT] == CHAT


def test_a_huge_trace_is_capped_in_the_row_and_whole_in_mlflow(world: World) -> None:
    text = "big " * (MAX_TRACE_BYTES // 4 + 1000)  # the agent's input and its echo: > 2 MiB of trace
    r = world.invoke(RESPONSES, {"input": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text[:300]
    request_id = r.headers["x-request-id"]
    stub = json.loads(_row(world, RESPONSES, request_id)["trace"])
    assert stub["truncated"] is True and stub["size_bytes"] > MAX_TRACE_BYTES
    assert stub["spans"] >= 1 and stub["trace_id"].startswith("tr-")
    found = _searched(world, RESPONSES, request_id)
    assert found.info.trace_id == stub["trace_id"]
    assert len(found.data.spans) == stub["spans"]


def test_traces_are_read_by_admins_only(world: World) -> None:
    """The embedded server's trace routes are open to admins alone (``api/mlflow_routes.py``)."""
    r = world.invoke(RESPONSES, {"input": [{"role": "user", "content": "whose trace"}]})
    assert r.status_code == 200, r.text
    trace_id = _searched(world, RESPONSES, r.headers["x-request-id"]).info.trace_id
    path = f"/api/3.0/mlflow/traces/{trace_id}"
    assert world.admin.get(path).status_code == 200
    assert world.alice.get(path).status_code == 403
