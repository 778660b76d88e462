"""ExternalPlane: body checks, provider cache, stream shaping, base64 embeddings (no sockets:
a scripted provider stands in for the real ones)."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelport.entities.providers.base import Provider, credential
from modelport.errors import BadGateway, InvalidParameterValue, InvalidState, NotImplementedByServer
from modelport.gateway.external import ChunkStream, ExternalPlane
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS, base64_embeddings


def chunk(content: str | None = None, finish: str | None = None, usage: Any = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "ep",
        "choices": [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}],
    }
    if usage is not False:
        out["usage"] = usage
    return out


USAGE = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


class Scripted(Provider):
    """Answers from the class attributes; records what it was given and whether streams closed."""

    provider = "scripted"
    tasks = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})
    streaming = frozenset({CHAT})
    chunks: list[Any] = []
    closed: list[bool] = []
    built = 0

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        Scripted.built += 1
        self.seen: list[dict[str, Any]] = []

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(body)
        return {"object": "chat.completion", "model": self.ctx.endpoint, "choices": []}

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.seen.append(body)
        try:
            for item in self.chunks:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            Scripted.closed.append(True)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(body)
        return {"object": "list", "model": "ep", "data": [{"index": 0, "embedding": [0.5, -1.25]}]}


def entity(task: str = CHAT, provider: str = "openai", name: str = "e1") -> dict[str, Any]:
    return {
        "name": name,
        "external_model": {"provider": provider, "name": "m", "task": task, "openai_config": {}},
    }


def never(scope: str, key: str) -> str:
    raise InvalidState("no secrets here")


def plane() -> ExternalPlane:
    return ExternalPlane(never, timeout=5.0, providers={"openai": Scripted})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def collect(stream: ChunkStream) -> list[dict[str, Any]]:
    try:
        return [c async for c in stream]
    finally:
        await stream.aclose()


async def answer(task: str, body: dict[str, Any], chunks: list[Any] | None = None) -> Any:
    Scripted.chunks = chunks or []
    ext = plane()
    try:
        result = await ext.answer(ext.provider("id", "ep", 1, entity(task)), body)
        return await collect(result) if isinstance(result, ChunkStream) else result
    finally:
        await ext.aclose()


# ---- the body must fit the task --------------------------------------------------------------------
def test_a_chat_endpoint_needs_messages_and_says_what_it_got() -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        run(answer(CHAT, {"prompt": "hi", "dataframe_split": {}}))
    assert caught.value.message == (
        "Endpoint 'ep' serves llm/v1/chat: the body needs 'messages' (a list of {role, content} messages); "
        "the body has 'prompt', 'dataframe_split'."
    )


def test_embeddings_cannot_stream_and_stream_must_be_a_bool() -> None:
    with pytest.raises(InvalidParameterValue, match="Embeddings cannot be streamed"):
        run(answer(EMBEDDINGS, {"input": "x", "stream": True}))
    with pytest.raises(InvalidParameterValue, match="'stream'"):
        run(answer(CHAT, {"messages": [], "stream": "yes"}))
    with pytest.raises(InvalidParameterValue, match="encoding_format"):
        run(answer(EMBEDDINGS, {"input": "x", "encoding_format": "int8"}))


def test_what_the_provider_does_not_serve_is_not_implemented() -> None:
    with pytest.raises(NotImplementedByServer, match="does not support completions"):
        run(answer(COMPLETIONS, {"prompt": "x"}))


# ---- providers are built once per config version ------------------------------------------------------
def test_providers_are_cached_per_config_version_and_forgotten_when_retired() -> None:
    ext = plane()
    Scripted.built = 0
    first = ext.provider("id", "ep", 1, entity())
    assert ext.provider("id", "ep", 1, entity()) is first
    assert ext.provider("id", "ep", 2, entity()) is not first
    assert Scripted.built == 2
    ext.retain([("id", 2)])
    assert ext.provider("id", "ep", 1, entity()) is not first
    assert first.ctx.endpoint == "ep" and first.ctx.model == "m" and first.ctx.timeout == 5.0
    run(ext.aclose())


def test_an_unknown_provider_is_not_implemented_and_named() -> None:
    with pytest.raises(NotImplementedByServer) as caught:
        plane().provider("id", "ep", 1, entity(provider="anthropic", name="claude"))
    assert "Provider 'anthropic' of served entity 'claude'" in caught.value.message
    assert caught.value.status == 501


# ---- streams ----------------------------------------------------------------------------------------------
def test_without_include_usage_usage_only_chunks_are_dropped_and_null_usage_removed() -> None:
    chunks = [
        chunk("Hi", usage=None),
        chunk(finish="stop", usage=None),
        {**chunk(), "choices": [], "usage": USAGE},
    ]
    got = run(answer(CHAT, {"messages": [{"role": "user", "content": "x"}], "stream": True}, chunks))
    assert got == [chunk("Hi"), chunk(finish="stop")]


def test_with_include_usage_the_usage_comes_last_in_a_chunk_of_its_own() -> None:
    # A provider that puts the usage on its finish chunk (Anthropic-style) ...
    chunks = [chunk("Hi"), chunk(finish="stop", usage=USAGE)]
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    got = run(answer(CHAT, body, chunks))
    assert got == [chunk("Hi"), chunk(finish="stop"), {**chunk(), "choices": [], "usage": USAGE}]
    # ... and one that sends OpenAI's usage chunk.
    openai_style = [chunk("Hi", usage=None), {**chunk(), "choices": [], "usage": USAGE}]
    assert run(answer(CHAT, body, openai_style)) == [chunk("Hi"), {**chunk(), "choices": [], "usage": USAGE}]


def test_an_error_before_the_first_chunk_is_raised_by_answer_and_the_stream_closed() -> None:
    Scripted.closed = []
    with pytest.raises(BadGateway, match="down"):
        run(answer(CHAT, {"messages": [], "stream": True}, [BadGateway("down")]))
    assert Scripted.closed == [True]


def test_an_error_mid_stream_comes_out_of_the_iteration() -> None:
    async def go() -> list[Any]:
        Scripted.chunks = [chunk("a"), BadGateway("cut")]
        ext = plane()
        stream = await ext.answer(ext.provider("id", "ep", 1, entity()), {"messages": [], "stream": True})
        assert isinstance(stream, ChunkStream)
        got = [await anext(stream)]
        with pytest.raises(BadGateway, match="cut"):
            await anext(stream)
        await stream.aclose()
        return got

    assert run(go()) == [chunk("a")]


def test_closing_a_stream_that_was_never_read_closes_the_provider_stream() -> None:
    async def go() -> None:
        Scripted.chunks, Scripted.closed = [chunk("a"), chunk("b")], []
        ext = plane()
        stream = await ext.answer(ext.provider("id", "ep", 1, entity()), {"messages": [], "stream": True})
        assert isinstance(stream, ChunkStream)
        await stream.aclose()
        assert Scripted.closed == [True]
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

    run(go())


# ---- embeddings -------------------------------------------------------------------------------------------
def test_base64_embeddings_are_little_endian_float32() -> None:
    got = run(answer(EMBEDDINGS, {"input": "x", "encoding_format": "base64"}))
    raw = base64.b64decode(got["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.25)
    floats = run(answer(EMBEDDINGS, {"input": "x", "encoding_format": "float"}))
    assert floats["data"][0]["embedding"] == [0.5, -1.25]


def test_base64_embeddings_of_an_answer() -> None:
    answer_ = {"data": [{"embedding": [1.0]}, {"embedding": [2.0, 3.0]}]}
    assert [d["embedding"] for d in base64_embeddings(answer_)["data"]] == ["AACAPw==", "AAAAQAAAQEA="]


# ---- secret references ---------------------------------------------------------------------------
class Keyed(Scripted):
    """Reads its key per request the way the real providers do (``credential``, synchronously)."""

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(body)
        config = self.ctx.config
        return {"key": credential(config, "openai_api_key", self.ctx.resolve), "org": config["org"]}


def keyed_entity() -> dict[str, Any]:
    block = {"openai_api_key": "{{secrets/llm/openai}}", "org": "{{secrets/llm/org}}"}
    return {
        "name": "e1",
        "external_model": {"provider": "openai", "name": "m", "task": CHAT, "openai_config": block},
    }


def blocking(scope: str, key: str) -> str:
    raise AssertionError("the blocking resolver ran on the event loop")


def test_references_are_resolved_asynchronously_on_every_query_before_the_provider_runs() -> None:
    values = {("llm", "openai"): "sk-1", ("llm", "org"): "org-1"}
    asked: list[tuple[str, str]] = []

    async def resolve_async(scope: str, key: str) -> str:
        asked.append((scope, key))
        return values[(scope, key)]

    ext = ExternalPlane(blocking, resolve_async=resolve_async, timeout=5.0, providers={"openai": Keyed})
    hello = {"messages": [{"role": "user", "content": "hi"}]}

    async def main() -> list[Any]:
        provider = ext.provider("id", "ep", 1, keyed_entity())
        first = await ext.answer(provider, dict(hello))
        values[("llm", "openai")] = "sk-2"  # rotated: the next query uses the new value
        second = await ext.answer(provider, dict(hello))
        return [first, second]

    assert run(main()) == [
        {"key": "sk-1", "org": "{{secrets/llm/org}}"},
        {"key": "sk-2", "org": "{{secrets/llm/org}}"},
    ]
    assert asked == [("llm", "openai"), ("llm", "org")] * 2


def test_a_reference_that_cannot_be_resolved_fails_the_query_before_the_provider_is_called() -> None:
    async def missing(scope: str, key: str) -> str:
        raise InvalidState(f"Secret {{{{secrets/{scope}/{key}}}}} does not exist")

    ext = ExternalPlane(blocking, resolve_async=missing, timeout=5.0, providers={"openai": Keyed})

    async def main() -> Keyed:
        provider = ext.provider("id", "ep", 1, keyed_entity())
        with pytest.raises(InvalidState, match="does not exist"):
            await ext.answer(provider, {"messages": [{"role": "user", "content": "hi"}]})
        assert isinstance(provider, Keyed)
        return provider

    assert run(main()).seen == []
