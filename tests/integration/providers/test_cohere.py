"""The Cohere provider against a loopback Cohere v2 API (the fake is checked with the official SDK)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import cohere
import pytest

from modelport.entities.providers.cohere import CohereProvider
from modelport.errors import (
    BadGateway,
    BadRequest,
    DeadlineExceeded,
    ModelportError,
    PermissionDenied,
    RequestLimitExceeded,
    TemporarilyUnavailable,
)
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS
from tests.fakes.cohere_server import API_KEY, FakeCohere, embedding_of
from tests.integration.providers.contexts import BASE_URLS, ENDPOINT, ask
from tests.serverproc import free_port

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeCohere]:
    fake = FakeCohere().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_server: FakeCohere) -> FakeCohere:
    fake_server.reset()
    return fake_server


def _config(fake: FakeCohere, **extra: Any) -> dict[str, Any]:
    return {"cohere_api_key_plaintext": API_KEY, "cohere_api_base": fake.url, **extra}


def _ask(fake: FakeCohere, method: str, body: dict[str, Any], task: str = CHAT, **kw: Any) -> Any:
    kw.setdefault("config", _config(fake))
    return ask(CohereProvider, method, body, model="command-r-plus", task=task, **kw)


# ---- the fake speaks Cohere: the official SDK reads it ------------------------------------------------
def test_sdk_reads_the_fakes_chat_answer(fake: FakeCohere) -> None:
    client = cohere.ClientV2(api_key=API_KEY, base_url=fake.url)
    answer = client.chat(model="command-r-plus", messages=[{"role": "user", "content": "hello there"}])
    assert answer.finish_reason == "COMPLETE"
    assert answer.message.content is not None
    assert [(c.type, c.text) for c in answer.message.content] == [("text", "echo: hello there")]
    assert answer.usage is not None and answer.usage.billed_units is not None
    assert (answer.usage.billed_units.input_tokens, answer.usage.billed_units.output_tokens) == (2, 3)


def test_sdk_reads_every_event_of_the_fakes_stream(fake: FakeCohere) -> None:
    client = cohere.ClientV2(api_key=API_KEY, base_url=fake.url)
    events = list(client.chat_stream(model="command-r-plus", messages=[{"role": "user", "content": "a b"}]))
    # The SDK skips events it cannot parse, so the complete sequence shows nothing drifted.
    assert [e.type for e in events] == [
        "message-start",
        "content-start",
        "content-delta",
        "content-delta",
        "content-delta",
        "content-end",
        "message-end",
    ]
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")  # type: ignore[union-attr]
    assert text == "echo: a b"
    end = events[-1]
    assert end.delta.finish_reason == "COMPLETE"  # type: ignore[union-attr]


def test_sdk_reads_the_fakes_tool_call_stream(fake: FakeCohere) -> None:
    fake.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    client = cohere.ClientV2(api_key=API_KEY, base_url=fake.url)
    events = list(
        client.chat_stream(model="command-r-plus", messages=[{"role": "user", "content": "?"}], tools=TOOLS)
    )
    kinds = [e.type for e in events]
    assert kinds[:3] == ["message-start", "tool-plan-delta", "tool-call-start"]
    assert kinds[-2:] == ["tool-call-end", "message-end"]
    start = events[2].delta.message.tool_calls  # type: ignore[union-attr]
    assert start.function.name == "get_weather"
    args = "".join(
        e.delta.message.tool_calls.function.arguments  # type: ignore[union-attr]
        for e in events
        if e.type == "tool-call-delta"
    )
    assert json.loads(args) == {"city": "Paris"}


def test_sdk_reads_the_fakes_embeddings(fake: FakeCohere) -> None:
    client = cohere.ClientV2(api_key=API_KEY, base_url=fake.url)
    answer = client.embed(
        model="embed-v4.0", texts=["a b", "c"], input_type="search_query", embedding_types=["float"]
    )
    assert answer.embeddings.float_ == [embedding_of("a b"), embedding_of("c")]
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert answer.meta.billed_units.input_tokens == 3


def test_sdk_sees_the_fakes_errors(fake: FakeCohere) -> None:
    with pytest.raises(cohere.UnauthorizedError) as unauthorized:
        cohere.ClientV2(api_key="wrong", base_url=fake.url).chat(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert unauthorized.value.body == {"message": "invalid api token"}
    fake.faults.fail(429, "slow down", times=3)
    client = cohere.ClientV2(api_key=API_KEY, base_url=fake.url)
    with pytest.raises(cohere.TooManyRequestsError) as limited:
        client.chat(
            model="m", messages=[{"role": "user", "content": "hi"}], request_options={"max_retries": 0}
        )
    assert limited.value.body == {"message": "slow down"}


# ---- chat ---------------------------------------------------------------------------------------------
def test_chat_sends_cohere_fields_and_answers_openai_shape(fake: FakeCohere) -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "model": "ignored-endpoint-name",
        "extra_params": {"safety_mode": "OFF"},
    }
    answer = _ask(fake, "chat", body)

    sent = fake.requests[-1]
    assert sent["path"] == "/v2/chat"
    assert sent["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert sent["json"] == {
        "model": "command-r-plus",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "p": 0.9,
        "stop_sequences": ["END"],
        "safety_mode": "OFF",
    }
    assert answer["object"] == "chat.completion"
    assert answer["model"] == ENDPOINT
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hello there"},
            "finish_reason": "stop",
            "finishReason": "stop",
        }
    ]
    # Billed units (not the template-inflated raw token counts): 4 prompt words, 3 answer words.
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_max_tokens_finish_is_length(fake: FakeCohere) -> None:
    fake.reply_text = "one two three four five"
    answer = _ask(fake, "chat", {"messages": [{"role": "user", "content": "count"}], "max_tokens": 2})
    assert answer["choices"][0]["message"]["content"] == "one two"
    assert answer["choices"][0]["finish_reason"] == "length"


def test_n_choices_are_concurrent_calls(fake: FakeCohere) -> None:
    answer = _ask(fake, "chat", {"messages": [{"role": "user", "content": "hi"}], "n": 3})
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2]
    assert len(fake.requests) == 3
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}


def test_secret_reference_is_resolved_on_every_request(fake: FakeCohere) -> None:
    secrets = {("llm", "cohere"): API_KEY}
    config = {"cohere_api_key": "{{secrets/llm/cohere}}", "cohere_api_base": fake.url}
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert (
        _ask(fake, "chat", body, config=config, secrets=secrets)["choices"][0]["message"]["content"]
        == "echo: hi"
    )
    secrets[("llm", "cohere")] = "rotated-but-wrong"
    with pytest.raises(PermissionDenied, match="invalid api token"):
        _ask(fake, "chat", body, config=config, secrets=secrets)


def test_base_url_from_environment_when_the_block_has_none(
    fake: FakeCohere, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BASE_URLS, "cohere", fake.url)
    answer = _ask(
        fake,
        "chat",
        {"messages": [{"role": "user", "content": "hi"}]},
        config={"cohere_api_key_plaintext": API_KEY},
    )
    assert answer["choices"][0]["message"]["content"] == "echo: hi"


def test_base_url_with_version_segment_is_accepted(fake: FakeCohere) -> None:
    config = _config(fake, cohere_api_base=fake.url + "/v1/")
    answer = _ask(fake, "chat", {"messages": [{"role": "user", "content": "hi"}]}, config=config)
    assert fake.requests[-1]["path"] == "/v2/chat"
    assert answer["choices"][0]["message"]["content"] == "echo: hi"


# ---- streaming ----------------------------------------------------------------------------------------
def test_stream_chat_gives_openai_chunks_with_usage_last(fake: FakeCohere) -> None:
    chunks = _ask(fake, "chat_stream", {"messages": [{"role": "user", "content": "a b"}], "stream": True})
    assert fake.requests[-1]["json"]["stream"] is True
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "echo: a b"
    last = chunks[-1]
    assert last["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert last["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


# ---- tools --------------------------------------------------------------------------------------------
def test_tool_call_answer(fake: FakeCohere) -> None:
    fake.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    body = {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": TOOLS,
        "tool_choice": "required",
    }
    answer = _ask(fake, "chat", body)
    sent = fake.requests[-1]["json"]
    assert sent["tools"] == TOOLS
    assert sent["tool_choice"] == "REQUIRED"
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert choice["message"]["content"] is None


def test_tool_results_go_back_as_tool_messages(fake: FakeCohere) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    body = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        ],
        "tools": TOOLS,
    }
    answer = _ask(fake, "chat", body)
    assert fake.requests[-1]["json"]["messages"][1:] == [
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    assert answer["choices"][0]["message"]["content"] == 'echo: {"temp": 21}'


def test_stream_tool_call_chunks(fake: FakeCohere) -> None:
    fake.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    chunks = _ask(fake, "chat_stream", {"messages": [{"role": "user", "content": "?"}], "tools": TOOLS})
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["index"] == 0
    assert deltas[0]["function"]["name"] == "get_weather"
    assert deltas[0]["id"].startswith("call_")
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_choice_naming_a_function_offers_only_that_one(fake: FakeCohere) -> None:
    other = {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
    body = {
        "messages": [{"role": "user", "content": "?"}],
        "tools": [*TOOLS, other],
        "tool_choice": {"type": "function", "function": {"name": "other"}},
    }
    _ask(fake, "chat", body)
    sent = fake.requests[-1]["json"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["other"]
    assert sent["tool_choice"] == "REQUIRED"


# ---- completions --------------------------------------------------------------------------------------
def test_completions_are_chat_calls_one_per_prompt(fake: FakeCohere) -> None:
    answer = _ask(fake, "completions", {"prompt": ["say a", "say b c"], "max_tokens": 20}, task=COMPLETIONS)
    assert sorted(r["json"]["messages"][0]["content"] for r in fake.requests) == ["say a", "say b c"]
    assert all(r["json"]["max_tokens"] == 20 for r in fake.requests)
    assert answer["object"] == "text_completion"
    assert [(c["index"], c["text"], c["finish_reason"]) for c in answer["choices"]] == [
        (0, "echo: say a", "stop"),
        (1, "echo: say b c", "stop"),
    ]
    assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


def test_completions_stream(fake: FakeCohere) -> None:
    chunks = _ask(fake, "completions_stream", {"prompt": "go on"}, task=COMPLETIONS)
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks) == "echo: go on"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 5


# ---- embeddings ---------------------------------------------------------------------------------------
def test_embeddings(fake: FakeCohere) -> None:
    answer = _ask(fake, "embeddings", {"input": ["a b", "c"], "encoding_format": "base64"}, task=EMBEDDINGS)
    assert fake.requests[-1]["json"] == {
        "model": "command-r-plus",
        "texts": ["a b", "c"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    assert answer == {
        "object": "list",
        "model": ENDPOINT,
        "data": [
            {"object": "embedding", "index": 0, "embedding": embedding_of("a b")},
            {"object": "embedding", "index": 1, "embedding": embedding_of("c")},
        ],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def test_embeddings_input_type_from_extra_params(fake: FakeCohere) -> None:
    body = {"input": "q", "extra_params": {"input_type": "search_query"}, "dimensions": 6}
    answer = _ask(fake, "embeddings", body, task=EMBEDDINGS)
    assert fake.requests[-1]["json"]["input_type"] == "search_query"
    assert fake.requests[-1]["json"]["output_dimension"] == 6
    assert len(answer["data"][0]["embedding"]) == 6


def test_more_than_96_texts_go_in_batches_and_keep_their_order(fake: FakeCohere) -> None:
    texts = [f"text {i}" for i in range(100)]
    answer = _ask(fake, "embeddings", {"input": texts}, task=EMBEDDINGS)
    assert sorted(len(r["json"]["texts"]) for r in fake.requests) == [4, 96]
    assert [d["embedding"] for d in answer["data"]] == [embedding_of(t) for t in texts]
    assert answer["usage"]["prompt_tokens"] == 200


# ---- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequest),
        (401, PermissionDenied),
        (429, RequestLimitExceeded),
        (500, BadGateway),
        (503, TemporarilyUnavailable),
    ],
)
def test_cohere_errors_become_ours(fake: FakeCohere, status: int, error: type[ModelportError]) -> None:
    fake.faults.fail(status, f"the message for {status}", headers={"retry-after": "7"})
    with pytest.raises(error) as raised:
        _ask(fake, "chat", {"messages": [{"role": "user", "content": "hi"}]})
    assert type(raised.value) is error
    assert f"the message for {status}" in str(raised.value)
    assert "'cohere'" in str(raised.value)
    if status in (429, 503):
        assert raised.value.retry_after == 7  # type: ignore[attr-defined]


def test_stream_errors_are_raised_before_the_first_chunk(fake: FakeCohere) -> None:
    fake.faults.fail(429, "too many")
    with pytest.raises(RequestLimitExceeded, match="too many"):
        _ask(fake, "chat_stream", {"messages": [{"role": "user", "content": "hi"}]})


def test_slow_cohere_is_deadline_exceeded(fake: FakeCohere) -> None:
    fake.faults.slow(2.0)
    with pytest.raises(DeadlineExceeded):
        _ask(fake, "chat", {"messages": [{"role": "user", "content": "hi"}]}, timeout=0.3)


def test_unreachable_cohere_is_bad_gateway() -> None:
    config = {"cohere_api_key_plaintext": API_KEY, "cohere_api_base": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(BadGateway, match="Could not reach provider 'cohere'"):
        ask(
            CohereProvider,
            "chat",
            {"messages": [{"role": "user", "content": "hi"}]},
            model="m",
            task=CHAT,
            config=config,
        )


def test_bad_request_bodies_are_refused_before_any_call(fake: FakeCohere) -> None:
    with pytest.raises(BadRequest):
        _ask(fake, "chat", {"messages": []})
    with pytest.raises(BadRequest):
        _ask(fake, "chat", {"messages": [{"role": "wizard", "content": "x"}]})
    with pytest.raises(BadRequest):
        _ask(fake, "chat_stream", {"messages": [{"role": "user", "content": "x"}], "n": 2})
    assert fake.requests == []
