"""llm/v1 request checks (entities/foundation/requests.py) and answer shapes (answers.py).

The answers are built from a scripted engine that follows the engine contract (events in
the order the contract promises), so the shapes are checked without a model.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from modelport.entities.foundation import answers
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
from modelport.entities.foundation.requests import DEFAULT_MAX_TOKENS, parse, task_of
from modelport.errors import InvalidParameterValue
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS

MSG = [{"role": "user", "content": "hi"}]


def test_task_is_read_from_the_body() -> None:
    assert task_of({"messages": MSG}) == CHAT
    assert task_of({"prompt": "x"}) == COMPLETIONS
    assert task_of({"input": "x"}) == EMBEDDINGS
    with pytest.raises(InvalidParameterValue, match="'messages' \\(chat\\), 'prompt'"):
        task_of({"text": "x"})


def test_sampling_defaults_and_fields() -> None:
    p = parse({"messages": MSG}, CHAT)
    s = p.generations[0].sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.stop, s.seed, s.json_schema) == (
        DEFAULT_MAX_TOKENS,
        1.0,
        1.0,
        (),
        None,
        None,
    )
    p = parse(
        {
            "messages": MSG,
            "max_completion_tokens": 9,
            "temperature": 0,
            "top_p": 0.5,
            "top_k": 3,
            "stop": "\n",
            "seed": 7,
            "n": 2,
            "stream": True,
            "response_format": {"type": "json_object"},
        },
        CHAT,
    )
    g = p.generations[0]
    assert g.n == 2 and p.stream
    assert (g.sampling.max_tokens, g.sampling.temperature, g.sampling.top_k, g.sampling.stop) == (
        9,
        0.0,
        3,
        ("\n",),
    )
    assert g.sampling.seed == 7 and g.sampling.json_schema == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"content": "x"}]}, "messages[0] must be an object with 'role'"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role must be one of"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "reads text only"),
        ({"messages": MSG, "temperature": 2.5}, "'temperature' must be between 0 and 2; got 2.5."),
        ({"messages": MSG, "temperature": "hot"}, "'temperature' must be a number"),
        ({"messages": MSG, "max_tokens": 0}, "'max_tokens' must be at least 1; got 0."),
        ({"messages": MSG, "max_tokens": 1.5}, "'max_tokens' must be an integer"),
        ({"messages": MSG, "n": 9}, "'n' must be between 1 and 8; got 9."),
        ({"messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
        ({"messages": MSG, "stop": [""]}, "non-empty"),
        ({"messages": MSG, "stream": "yes"}, "'stream' must be true or false"),
        ({"messages": MSG, "response_format": {"type": "xml"}}, "'response_format' must be"),
        ({"messages": MSG, "response_format": {"type": "json_schema"}}, "needs 'json_schema'"),
        ({"prompt": 3}, "'prompt': a string or a non-empty list"),
        ({"input": "x"}, "This endpoint serves a language model"),
    ],
)
def test_bad_chat_bodies_are_named(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message.replace("[", "\\[").replace("(", "\\(")):
        parse(body, CHAT)


def test_embedding_bodies() -> None:
    p = parse({"input": ["a", "b"], "encoding_format": "base64"}, EMBEDDINGS)
    assert p.inputs == ("a", "b") and p.base64
    with pytest.raises(InvalidParameterValue, match="embedding model"):
        parse({"messages": MSG}, EMBEDDINGS)
    with pytest.raises(InvalidParameterValue, match="'encoding_format' must be"):
        parse({"input": "a", "encoding_format": "int8"}, EMBEDDINGS)
    with pytest.raises(InvalidParameterValue, match="non-empty list"):
        parse({"input": []}, EMBEDDINGS)


def test_content_parts_are_joined() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ]
    }
    assert parse(body, CHAT).generations[0].messages == [{"role": "user", "content": "ab"}]


class Scripted(GenerationEngine):
    """Answers every request with the words of its prompt (or last message), one per event."""

    info = EngineInfo(engine="scripted", task=CHAT, model="scripted")

    def __init__(self) -> None:
        self.closed = 0

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:  # type: ignore[override]
        text = request.prompt if request.prompt is not None else str(request.messages[-1]["content"])  # type: ignore[index]
        words = text.split()
        try:
            for i in range(request.n):
                for w in words[: request.sampling.max_tokens]:
                    await asyncio.sleep(0)
                    yield TextDelta(i, w + " ")
                yield Finished(i, "length" if len(words) > request.sampling.max_tokens else "stop")
            yield Usage(
                prompt_tokens=len(words),
                completion_tokens=request.n * min(len(words), request.sampling.max_tokens),
            )
        finally:
            self.closed += 1


def test_chat_answer_shape() -> None:
    engine = Scripted()
    out = asyncio.run(
        answers.answer(
            engine, parse({"messages": [{"role": "user", "content": "a b c"}], "n": 2}, CHAT), "ep"
        )
    )
    assert out["object"] == "chat.completion" and out["model"] == "ep"
    assert [c["message"]["content"] for c in out["choices"]] == ["a b c ", "a b c "]
    assert [c["finish_reason"] for c in out["choices"]] == ["stop", "stop"]
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}


def test_completions_with_several_prompts_number_choices_per_prompt() -> None:
    engine = Scripted()
    body = {"prompt": ["a b", "c d e"], "max_tokens": 2}
    out = asyncio.run(answers.answer(engine, parse(body, CHAT), "ep"))
    assert [(c["index"], c["text"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "a b ", "stop"),
        (1, "c d ", "length"),
    ]
    assert out["usage"]["prompt_tokens"] == 5 and out["usage"]["completion_tokens"] == 4
    assert engine.closed == 2


def test_stream_chunks_role_first_usage_last() -> None:
    engine = Scripted()

    async def collect() -> list[dict[str, Any]]:
        return [
            c
            async for c in answers.chunks(
                engine, parse({"messages": [{"role": "user", "content": "x y"}], "stream": True}, CHAT), "ep"
            )
        ]

    chunks = asyncio.run(collect())
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "x "}
    assert chunks[1]["choices"][0]["delta"] == {"content": "y "}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert all("usage" not in c for c in chunks[:-1])


def test_closing_a_stream_closes_the_engine_iterator() -> None:
    engine = Scripted()

    async def half() -> None:
        stream = answers.chunks(engine, parse({"prompt": "a b c d e f", "stream": True}, CHAT), "ep")
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(half())
    assert engine.closed == 1


class Vectors(EmbeddingEngine):
    info = EngineInfo(engine="vectors", task=EMBEDDINGS, model="v", dimensions=2)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        return Embeddings([[float(len(t)), 0.5] for t in texts], prompt_tokens=sum(len(t) for t in texts))


def test_embeddings_as_floats_and_base64() -> None:
    out = asyncio.run(answers.embed(Vectors(), parse({"input": ["ab", "c"]}, EMBEDDINGS), "ep"))
    assert [d["embedding"] for d in out["data"]] == [[2.0, 0.5], [1.0, 0.5]]
    assert out["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    out = asyncio.run(
        answers.embed(Vectors(), parse({"input": "ab", "encoding_format": "base64"}, EMBEDDINGS), "ep")
    )
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (2.0, 0.5)
