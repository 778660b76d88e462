"""Pure translators of the Cohere, Gemini (Vertex AI, palm) and AI21 providers, on plain data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelport.entities.providers import ai21, cohere, gemini, via_chat
from modelport.errors import BadGateway, BadRequest, InvalidParameterValue, RequestLimitExceeded


async def _events(*items: tuple[str, str]) -> AsyncIterator[tuple[str, str]]:
    for item in items:
        yield item


def _collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        return [c async for c in chunks]

    return asyncio.run(go())


# ---- via_chat --------------------------------------------------------------------------------------
def test_text_of_joins_text_parts_only() -> None:
    content = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "b"},
    ]
    assert via_chat.text_of(content) == "ab"
    assert via_chat.text_of(None) == ""


@pytest.mark.parametrize("n", [0, 6, "2", True])
def test_choices_wanted_refuses_out_of_range(n: Any) -> None:
    with pytest.raises(InvalidParameterValue):
        via_chat.choices_wanted({"n": n})


def test_merge_chat_answers_reindexes_and_sums_usage() -> None:
    one = {
        "choices": [{"index": 0, "message": {"content": "a"}}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1},
    }
    two = {
        "choices": [{"index": 0, "message": {"content": "b"}}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3},
    }
    merged = via_chat.merge_chat_answers([one, two])
    assert [(c["index"], c["message"]["content"]) for c in merged["choices"]] == [(0, "a"), (1, "b")]
    assert merged["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}


def test_chat_body_for_prompt_drops_completion_only_fields() -> None:
    body = {"prompt": "p", "echo": True, "suffix": "s", "max_tokens": 3}
    assert via_chat.chat_body_for_prompt(body, "p") == {
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "p"}],
    }


def test_streaming_completions_take_one_prompt() -> None:
    with pytest.raises(InvalidParameterValue, match="exactly one prompt"):
        via_chat.stream_completion_via_chat(lambda body: _events(), {"prompt": ["a", "b"]})  # type: ignore[arg-type,return-value]


# ---- cohere ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("X", "stop"),
    ],
)
def test_cohere_finish_reasons(theirs: str, ours: str) -> None:
    assert cohere.finish_reason_of(theirs) == ours


def test_cohere_usage_prefers_billed_units_then_tokens() -> None:
    answer = {
        "message": {"content": [{"type": "text", "text": "x"}]},
        "finish_reason": "COMPLETE",
        "usage": {"tokens": {"input_tokens": 9, "output_tokens": 2}},
    }
    assert cohere.chat_answer_from_cohere(answer, "ep")["usage"]["prompt_tokens"] == 9
    answer["usage"]["billed_units"] = {"input_tokens": 3, "output_tokens": 2}  # type: ignore[index]
    assert cohere.chat_answer_from_cohere(answer, "ep")["usage"]["prompt_tokens"] == 3


def test_cohere_stream_error_at_message_end_is_bad_gateway() -> None:
    events = _events(
        ("message-start", '{"type":"message-start","id":"m"}'),
        ("message-end", '{"type":"message-end","delta":{"error":"boom"}}'),
    )
    with pytest.raises(BadGateway, match="boom"):
        _collect(cohere.chunks_from_cohere(events, "ep"))


def test_cohere_refuses_unknown_roles() -> None:
    with pytest.raises(BadRequest, match="wizard"):
        cohere.chat_to_cohere({"messages": [{"role": "wizard", "content": "x"}]}, "m")


# ---- gemini ----------------------------------------------------------------------------------------
def test_schema_keeps_the_openapi_subset() -> None:
    schema = {
        "$schema": "x",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "additionalProperties": 1}},
            "maybe": {"type": ["integer", "null"]},
        },
    }
    assert gemini.schema_for_gemini(schema) == {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "maybe": {"type": "integer", "nullable": True},
        },
    }


def test_consecutive_turns_of_one_role_are_merged() -> None:
    body = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    assert gemini.chat_to_gemini(body)["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}
    ]


def test_image_urls_become_inline_or_file_data() -> None:
    content = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/cat.jpg"}},
    ]
    parts = gemini.chat_to_gemini({"messages": [{"role": "user", "content": content}]})["contents"][0][
        "parts"
    ]
    assert parts == [
        {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/cat.jpg"}},
    ]


def test_thought_parts_are_left_out_and_thoughts_count_as_completion() -> None:
    answer = {
        "candidates": [
            {"content": {"parts": [{"text": "hmm", "thought": True}, {"text": "42"}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "thoughtsTokenCount": 7},
    }
    out = gemini.chat_answer_from_gemini(answer, "ep", "p")
    assert out["choices"][0]["message"]["content"] == "42"
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}


def test_an_error_event_in_a_gemini_stream_is_raised_as_ours() -> None:
    events = _events(
        ("message", '{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}')
    )
    with pytest.raises(RequestLimitExceeded, match="quota"):
        _collect(gemini.chunks_from_gemini(events, "ep", "p"))


def test_an_empty_gemini_stream_is_bad_gateway() -> None:
    with pytest.raises(BadGateway):
        _collect(gemini.chunks_from_gemini(_events(), "ep", "p"))


# ---- ai21 ------------------------------------------------------------------------------------------
def test_ai21_stream_takes_usage_from_a_later_event() -> None:
    events = _events(
        ("message", '{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}'),
        (
            "message",
            '{"id":"c1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}',
        ),
        ("message", "[DONE]"),
    )
    chunks = _collect(ai21.chunks_from_ai21(events, "ep"))
    assert [c["choices"][0]["delta"] for c in chunks] == [{"content": "hi"}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
