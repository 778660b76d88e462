"""The two replica handlers with fake models: the custom one over the Batcher, the engine one
over an engine's events (answers, streams, cancellation, failures)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest

from modelport import errors
from modelport.entities.custom import FrameRows, Lookups, ModelInput
from modelport.entities.foundation.engine import (
    EmbeddingEngine,
    Embeddings,
    EngineInfo,
    Event,
    Finished,
    GenerationEngine,
    GenerationRequest,
    TextDelta,
    Usage,
)
from modelport.runtime.batching import Batcher
from modelport.runtime.custom_handler import CustomHandler, trailer_of
from modelport.runtime.engine_handler import EngineHandler
from modelport.runtime.protocol import Trailer
from modelport.tables.records import MAX_BODY_BYTES

CHAT_BODY = orjson.dumps({"messages": [{"role": "user", "content": "hi"}]})


# ---- custom -------------------------------------------------------------------------------


class FrameModel:
    """A batch-capable model: the body is a JSON list of numbers, each a row; predicts 10 * x;
    a row of -1 fails the model."""

    flavors = ["python_function", "fake"]
    batch_capable = True

    def parse(self, body: bytes) -> ModelInput:
        values = orjson.loads(body)
        rows = [[v] for v in values]
        return ModelInput("dataframe_split", frame=FrameRows(("x",), rows, "split"), key="k", rows=len(rows))

    def predict(self, inp: ModelInput) -> bytes:
        assert inp.frame is not None
        return self.render(self.run([row for row in inp.frame.rows]))

    def combine(self, inputs: Sequence[ModelInput]) -> list[list[Any]]:
        return [row for inp in inputs if inp.frame is not None for row in inp.frame.rows]

    def run(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        if any(row[0] == -1 for row in data):
            raise errors.ModelportError("ValueError: -1") from ValueError("-1")
        return [row[0] * 10 for row in data]

    def render(self, output: Any, wrap: bool = True) -> bytes:
        return orjson.dumps({"predictions": output})

    def lookups(self, inputs: Sequence[ModelInput]) -> None:
        return None  # looks nothing up


def custom_handler() -> CustomHandler:
    model = FrameModel()
    return CustomHandler(model, Batcher(model, "auto", 64, 0.001))  # type: ignore[arg-type]


def test_custom_requests_in_flight_together_are_predicted_in_one_batch() -> None:
    handler = custom_handler()

    async def go() -> list[bytes]:
        running = asyncio.get_running_loop().create_task(handler.batcher.run())
        try:
            return list(await asyncio.gather(handler.predict(b"[1]"), handler.predict(b"[2, 3]")))
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    assert asyncio.run(go()) == [b'{"predictions":[10]}', b'{"predictions":[20,30]}']
    assert handler.stats() == {"batches": 1, "batched_rows": 3, "max_batch_seen": 2}
    assert handler.what == "python_function, fake"


def test_custom_model_failures_are_raised_as_their_error() -> None:
    handler = custom_handler()

    async def go() -> bytes:
        running = asyncio.get_running_loop().create_task(handler.batcher.run())
        try:
            return await handler.predict(b"[-1]")
        finally:
            running.cancel()

    with pytest.raises(errors.ModelportError, match="ValueError: -1"):
        asyncio.run(go())


def test_custom_requests_queued_when_the_loop_stops_get_a_503_to_retry() -> None:
    handler = custom_handler()

    async def go() -> bytes:
        loop = asyncio.get_running_loop()
        running = loop.create_task(handler.batcher.run())
        await asyncio.sleep(0)  # the loop waits for work
        asking = loop.create_task(handler.predict(b"[1]"))
        await asyncio.sleep(0)  # queued, and the loop stops before its turn
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        return await asking

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        asyncio.run(go())
    assert caught.value.retry_after == 1


def test_a_trailer_tells_only_what_there_is_and_cuts_the_request_at_the_tables_limit() -> None:
    assert trailer_of(Lookups({})) is None  # nothing missing, nothing asked: a plain OK
    assert trailer_of(Lookups({"t": 2})) == Trailer({"t": 2}, None, False)
    rows = orjson.dumps({"dataframe_records": [{"note": "é" * 1000}] * 1000})  # about 2 MB
    cut = trailer_of(Lookups({}, rows))
    assert cut is not None and cut.request_truncated
    assert cut.request is not None and MAX_BODY_BYTES - 4 < len(cut.request) <= MAX_BODY_BYTES
    assert rows.startswith(cut.request)  # cut at a character, not inside one
    whole = orjson.dumps({"dataframe_records": [{"x": 1}]})
    assert trailer_of(Lookups({}, whole)) == Trailer({}, whole, False)


# ---- engine -------------------------------------------------------------------------------


class Generator(GenerationEngine):
    """Says "hello world"; after "hello", waits for ``go_on`` (or fails with ``fail``)."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.info = EngineInfo("fake", "llm/v1/chat", "m", extra={"threads": 1})
        self.fail = fail
        self.go_on = asyncio.Event()
        self.closed = 0

    async def _events(self) -> AsyncIterator[Event]:
        try:
            yield TextDelta(0, "hello")
            if self.fail is not None:
                raise self.fail
            await self.go_on.wait()
            yield TextDelta(0, " world")
            yield Finished(0, "stop")
            yield Usage(1, 2)
        finally:
            self.closed += 1

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        return self._events()

    def stats(self) -> dict[str, Any]:
        return {"tokens_per_second": 12.5}


class Embedder(EmbeddingEngine):
    def __init__(self) -> None:
        self.info = EngineInfo("fake", "llm/v1/embeddings", "e")

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        return Embeddings([[0.5, 0.25] for _ in texts], prompt_tokens=len(texts))


def test_engine_predict_answers_the_whole_chat() -> None:
    engine = Generator()
    engine.go_on.set()
    answer = orjson.loads(asyncio.run(EngineHandler(engine, "my-llm").predict(CHAT_BODY)))
    assert answer["model"] == "my-llm"
    assert answer["choices"][0]["message"]["content"] == "hello world"


def test_engine_stream_yields_chunks_as_bytes() -> None:
    engine = Generator()
    engine.go_on.set()

    async def go() -> list[Any]:
        return [orjson.loads(chunk) async for chunk in EngineHandler(engine, "my-llm").stream(CHAT_BODY)]

    chunks = asyncio.run(go())
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "hello world"
    assert chunks[-1]["usage"]["total_tokens"] == 3


def test_a_cancelled_stream_closes_the_engines_iterator_and_is_counted() -> None:
    engine = Generator()
    handler = EngineHandler(engine, "my-llm")

    async def go() -> None:
        seen = asyncio.Event()

        async def consume() -> None:
            async with contextlib.aclosing(handler.stream(CHAT_BODY)) as chunks:
                async for _ in chunks:
                    seen.set()

        task = asyncio.get_running_loop().create_task(consume())
        await seen.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert engine.closed == 1
    assert handler.stats() == {
        "cancelled": 1,
        "engine": "fake",
        "task": "llm/v1/chat",
        "tokens_per_second": 12.5,
    }


def test_an_engine_failure_is_a_500_naming_it_with_the_cause_kept() -> None:
    handler = EngineHandler(Generator(fail=RuntimeError("out of memory")), "my-llm")
    with pytest.raises(errors.ModelportError) as caught:
        asyncio.run(handler.predict(CHAT_BODY))
    assert caught.value.message == "The engine failed: RuntimeError: out of memory"
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_engine_errors_of_our_own_pass_as_they_are() -> None:
    stopped = errors.TemporarilyUnavailable("shutting down", retry_after=1)
    handler = EngineHandler(Generator(fail=stopped), "m")
    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        asyncio.run(handler.predict(CHAT_BODY))
    assert caught.value.retry_after == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"not json", errors.MalformedRequest), (b"[1]", errors.MalformedRequest), (b"{}", errors.BadRequest)],
)
def test_bad_bodies_are_client_errors(body: bytes, error: type[errors.ModelportError]) -> None:
    with pytest.raises(error):
        asyncio.run(EngineHandler(Generator(), "m").predict(body))


def test_embeddings_are_answered_whole_and_not_streamed() -> None:
    handler = EngineHandler(Embedder(), "e")
    answer = orjson.loads(asyncio.run(handler.predict(orjson.dumps({"input": ["a", "b"]}))))
    assert [item["embedding"] for item in answer["data"]] == [[0.5, 0.25], [0.5, 0.25]]

    async def go() -> None:
        async for _ in handler.stream(orjson.dumps({"input": "a"})):
            pass

    with pytest.raises(errors.ModelportError, match="answered whole"):
        asyncio.run(go())
