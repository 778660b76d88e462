"""The agent handler (``runtime/agent_handler.py``) in this process, on a real MLflow
``ResponsesAgent`` saved to a temporary folder: the answer and its trace, the agent context
seen by the agent's code, a stream closed early closing the agent's generator, refusals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc  # noqa: F401 (imported before the autouse fixture: it runs `uname`)
import orjson
import pytest

from modelport.errors import InvalidParameterValue, ModelportError
from modelport.runtime.agent_handler import AgentHandler
from modelport.runtime.protocol import AgentContext, Trailer

AGENT = """
import time
from pathlib import Path

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent

from modelport.runtime.protocol import current_agent_context


class Probe(ResponsesAgent):
    def predict(self, request):
        custom = request.custom_inputs or {}
        if custom.get("fail"):
            raise RuntimeError("the agent broke")
        context = current_agent_context.get()
        with mlflow.start_span(name="tool", span_type="TOOL"):
            pass
        return ResponsesAgentResponse(
            output=[self.create_text_output_item(text="ok", id="m1")],
            custom_outputs={"endpoint": context.endpoint if context else None},
        )

    def predict_stream(self, request):
        custom = request.custom_inputs or {}
        what = "failed"
        try:
            for i in range(50):
                yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=f"w{i} ", item_id="m1"))
                time.sleep(custom.get("sleep", 0))
            what = "finished"
        except GeneratorExit:
            what = "closed"
            raise
        finally:
            if custom.get("marker"):
                Path(custom["marker"]).write_text(what)


mlflow.models.set_model(Probe())
"""

CONTEXT = AgentContext("http://127.0.0.1:1", "tok", 1, "req-42", "ag-probe")


@pytest.fixture(scope="module")
def handler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHandler]:
    import mlflow

    folder = tmp_path_factory.mktemp("agent")
    code = folder / "probe.py"
    code.write_text(AGENT)
    mlflow.pyfunc.save_model(str(folder / "model"), python_model=str(code), pip_requirements=["mlflow"])
    args = argparse.Namespace(model_path=str(folder / "model"), task="", concurrency=2)
    loaded = AgentHandler.load(args)
    yield loaded
    asyncio.run(loaded.aclose())


def body(**custom: Any) -> bytes:
    return orjson.dumps({"input": [{"role": "user", "content": "hi"}], "custom_inputs": custom})


def test_the_task_comes_from_the_mlmodel_file(handler: AgentHandler) -> None:
    assert handler.task == "agent/v1/responses"


def test_an_answer_carries_the_requests_trace(handler: AgentHandler) -> None:
    answer, trailer = asyncio.run(handler.predict_agent(body(), CONTEXT))
    data = orjson.loads(answer)
    assert data["output"][0]["content"][0]["text"] == "ok"
    assert data["custom_outputs"] == {"endpoint": "ag-probe"}  # the context, inside the agent
    assert isinstance(trailer, Trailer) and trailer.trace is not None
    trace = orjson.loads(trailer.trace)
    names = [span["name"] for span in trace["data"]["spans"]]
    assert names[0] == handler.name and {"predict", "tool"} <= set(names)
    assert trace["info"]["client_request_id"] == "req-42"


def test_without_a_context_the_agent_sees_none(handler: AgentHandler) -> None:
    answer = asyncio.run(handler.predict(body()))
    assert orjson.loads(answer)["custom_outputs"] == {"endpoint": None}


def test_a_bad_body_is_refused_before_the_agent_runs(handler: AgentHandler) -> None:
    with pytest.raises(InvalidParameterValue, match="'input'"):
        asyncio.run(handler.predict_agent(b'{"messages": []}', None))


def test_what_the_agent_raises_is_a_500_naming_it(handler: AgentHandler) -> None:
    with pytest.raises(ModelportError) as caught:
        asyncio.run(handler.predict_agent(body(fail=True), None))
    assert caught.value.status == 500
    assert "RuntimeError: the agent broke" in caught.value.message


def test_a_stream_ends_with_its_trace(handler: AgentHandler) -> None:
    async def read() -> list[Any]:
        return [event async for event in handler.stream_agent(body(), CONTEXT)]

    events = asyncio.run(read())
    chunks, trailer = events[:-1], events[-1]
    assert len(chunks) == 50 and all(isinstance(c, bytes) for c in chunks)
    assert orjson.loads(chunks[0])["delta"] == "w0 "
    assert isinstance(trailer, Trailer) and trailer.trace is not None
    assert "predict_stream" in [s["name"] for s in orjson.loads(trailer.trace)["data"]["spans"]]


def test_closing_a_stream_closes_the_agents_generator(handler: AgentHandler, tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    async def first_then_close() -> bytes:
        events = handler.stream_agent(body(sleep=0.05, marker=str(marker)), None)
        async with contextlib.aclosing(events):
            first = await anext(events)
        assert isinstance(first, bytes)
        return first

    asyncio.run(first_then_close())
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.read_text() == "closed"  # not "finished": 50 events would take 2.5 s
    assert handler.stats()["agent_streams_closed_early"] >= 1
