"""The Anthropic provider against a loopback Messages API (the fake is checked with the official SDK)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from modelport.entities.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider
from modelport.entities.providers.base import ProviderContext
from modelport.errors import (
    BadGateway,
    BadRequest,
    DeadlineExceeded,
    InvalidParameterValue,
    ModelportError,
    NotImplementedByServer,
    PermissionDenied,
    RequestLimitExceeded,
    TemporarilyUnavailable,
)
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS
from tests.fakes.anthropic_server import API_KEY, VERSION, FakeAnthropic
from tests.integration.providers.contexts import BASE_URLS, ENDPOINT, ask, resolver
from tests.serverproc import free_port

MODEL = "claude-opus-4-7"
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
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
]
ANTHROPIC_TOOLS = [
    {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in TOOLS
]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    fake_server.reset()
    monkeypatch.setitem(BASE_URLS, "anthropic", fake_server.url)
    return fake_server


def _ask(method: str, body: dict[str, Any], task: str = CHAT, **kw: Any) -> Any:
    kw.setdefault("config", {"anthropic_api_key_plaintext": API_KEY})
    return ask(AnthropicProvider, method, body, model=MODEL, task=task, **kw)


def _user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


# ---- the fake speaks Anthropic: the official SDK reads it --------------------------------------------
@pytest.fixture
def sdk(fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key=API_KEY, max_retries=0)


def test_sdk_reads_the_fakes_message(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model=MODEL, max_tokens=50, system="be brief", messages=[{"role": "user", "content": "hello there"}]
    )
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "You said: hello there")
    ]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 4)


def test_sdk_streams_the_fakes_events_into_the_same_message(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "weather?"}], tools=ANTHROPIC_TOOLS
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Let me check."
    assert final.stop_reason == "tool_use"
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.input == {"city": "city-value"}
    # the tool result goes back in the next user turn, which the fake checks
    answer = sdk.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=ANTHROPIC_TOOLS,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": final.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}],
            },
        ],
    )
    assert answer.content[0].type == "text" and answer.content[0].text == "Tool said: sunny"


def test_sdk_sees_the_fakes_errors(fake: FakeAnthropic, sdk: anthropic.Anthropic) -> None:
    hello = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=fake.url, api_key="wrong", max_retries=0).messages.create(
            model=MODEL, max_tokens=5, messages=hello
        )
    for status, error in [
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, anthropic.OverloadedError),
    ]:
        fake.faults.fail(status)
        with pytest.raises(error) as caught:
            sdk.messages.create(model=MODEL, max_tokens=5, messages=hello)
        assert caught.value.status_code == status
    with pytest.raises(anthropic.BadRequestError, match="tool_result"):
        sdk.messages.create(
            model=MODEL,
            max_tokens=5,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "?"}],
                }
            ],
        )
    fake.stream_error = "overloaded_error"
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        sdk.messages.stream(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "a b c"}]
        ) as stream,
    ):
        list(stream.text_stream)


def test_fake_wants_the_key_and_the_version_header(fake: FakeAnthropic) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    url = f"{fake.url}/v1/messages"
    ok = httpx.post(url, json=body, headers={"x-api-key": API_KEY, "anthropic-version": VERSION})
    assert ok.status_code == 200 and ok.headers["request-id"].startswith("req_")
    no_version = httpx.post(url, json=body, headers={"x-api-key": API_KEY})
    assert no_version.status_code == 400
    assert no_version.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    no_key = httpx.post(url, json=body, headers={"anthropic-version": VERSION})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    system_role = {**body, "messages": [{"role": "system", "content": "x"}, *body["messages"]]}
    refused = httpx.post(url, json=system_role, headers={"x-api-key": API_KEY, "anthropic-version": VERSION})
    assert refused.status_code == 400 and "messages.0.role" in refused.json()["error"]["message"]


# ---- chat ----------------------------------------------------------------------------------------------
def test_chat_sends_a_messages_body_and_answers_openai_shape(fake: FakeAnthropic) -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
        "temperature": 1.2,
        "top_p": 0.9,
        "stop": "STOP",
        "user": "u-1",
        "extra_params": {"top_k": 5},
        "stream_options": {"include_usage": True},
    }
    answer = _ask("chat", body)
    assert fake.last == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello there"}],
        "system": "Be brief.",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "temperature": 0.6,
        "top_p": 0.9,
        "top_k": 5,
        "stop_sequences": ["STOP"],
        "metadata": {"user_id": "u-1"},
    }
    headers = fake.received[-1].headers
    assert headers["x-api-key"] == API_KEY and headers["anthropic-version"] == "2023-06-01"
    assert answer["object"] == "chat.completion" and answer["model"] == ENDPOINT
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "You said: hello there"},
            "finish_reason": "stop",
            "finishReason": "stop",
        }
    ]
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}


def test_finish_reasons_for_max_tokens_and_stop_sequences(fake: FakeAnthropic) -> None:
    long = _ask("chat", {**_user("one two three four"), "max_tokens": 3})
    assert fake.last["max_tokens"] == 3
    assert long["choices"][0]["message"]["content"] == "You said: one"
    assert long["choices"][0]["finish_reason"] == "length"
    stopped = _ask("chat", {**_user("one two three"), "stop": ["two"], "max_completion_tokens": 50})
    assert fake.last["max_tokens"] == 50
    assert stopped["choices"][0]["message"]["content"] == "You said: one "
    assert stopped["choices"][0]["finish_reason"] == "stop"


def test_secret_reference_is_resolved_on_every_request(fake: FakeAnthropic) -> None:
    secrets = {("llm", "anthropic"): API_KEY}
    config = {"anthropic_api_key": "{{secrets/llm/anthropic}}"}
    assert _ask("chat", _user("hi"), config=config, secrets=secrets)["choices"][0]["finish_reason"] == "stop"
    secrets[("llm", "anthropic")] = "rotated-but-wrong"
    with pytest.raises(PermissionDenied, match="check the credentials"):
        _ask("chat", _user("hi"), config=config, secrets=secrets)
    assert fake.received[-1].headers["x-api-key"] == "rotated-but-wrong"


def test_no_key_is_refused_before_any_call(fake: FakeAnthropic) -> None:
    with pytest.raises(PermissionDenied, match="anthropic_api_key"):
        _ask("chat", _user("hi"), config={})
    assert fake.received == []


def test_user_images_become_image_blocks(fake: FakeAnthropic) -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    _ask("chat", {"messages": [{"role": "user", "content": parts}]})
    assert fake.last["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_bad_bodies_are_refused_before_any_call(fake: FakeAnthropic) -> None:
    for body, match in [
        ({**_user("x"), "n": 2}, "'n' must be 1"),
        ({**_user("x"), "frequency_penalty": 0.5}, "frequency_penalty"),
        ({"messages": [{"role": "narrator", "content": "x"}]}, "role 'narrator'"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "at least one user"),
        ({**_user("x"), "tools": [{"type": "retrieval"}]}, "type 'function'"),
        ({**_user("x"), "response_format": {"type": "json_object"}}, "response_format"),
        ({"prompt": "x"}, "messages"),
    ]:
        with pytest.raises(InvalidParameterValue, match=match):
            _ask("chat", body)
    assert fake.received == []


# ---- streaming -------------------------------------------------------------------------------------
def test_stream_chat_gives_openai_chunks_with_usage_last(fake: FakeAnthropic) -> None:
    chunks = _ask("chat_stream", _user("a b c"))
    assert fake.last["stream"] is True
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == ENDPOINT for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "You said: a b c"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def test_error_event_inside_the_stream_is_raised(fake: FakeAnthropic) -> None:
    fake.stream_error = "overloaded_error"
    with pytest.raises(TemporarilyUnavailable, match="overloaded_error"):
        _ask("chat_stream", _user("a b c"))
    fake.stream_error = "rate_limit_error"
    with pytest.raises(RequestLimitExceeded):
        _ask("chat_stream", _user("a b c"))


def test_stream_refusals_come_before_the_first_chunk(fake: FakeAnthropic) -> None:
    fake.faults.fail(529, "Overloaded")
    with pytest.raises(TemporarilyUnavailable, match="Overloaded"):
        _ask("chat_stream", _user("x"))


# ---- tools -----------------------------------------------------------------------------------------
def test_tool_call_answer(fake: FakeAnthropic) -> None:
    answer = _ask("chat", {**_user("weather in Paris?"), "tools": TOOLS, "tool_choice": "required"})
    assert fake.last["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": TOOLS[0]["function"]["parameters"],
        },
        {"name": "get_time", "input_schema": TOOLS[1]["function"]["parameters"]},
    ]
    assert fake.last["tool_choice"] == {"type": "any"}
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("toolu_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"city-value"}'}


def test_tool_choice_function_and_no_parallel_calls(fake: FakeAnthropic) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    answer = _ask(
        "chat", {**_user("time?"), "tools": TOOLS, "tool_choice": choice, "parallel_tool_calls": False}
    )
    assert fake.last["tool_choice"] == {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_time"


def test_tool_results_go_back_as_tool_result_blocks(fake: FakeAnthropic) -> None:
    first = _ask("chat", {**_user("weather?"), "tools": TOOLS})["choices"][0]["message"]
    call_id = first["tool_calls"][0]["id"]
    body = {
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "weather?"},
            first,
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        ],
    }
    answer = _ask("chat", body)
    assert fake.last["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": "city-value"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    "content": [{"type": "text", "text": "sunny"}],
                }
            ],
        },
    ]
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Tool said: sunny"}


def test_stream_tool_call_chunks(fake: FakeAnthropic) -> None:
    chunks = _ask("chat_stream", {**_user("weather?"), "tools": TOOLS})
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0]["index"] == 0 and calls[0]["id"].startswith("toolu_")
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "city-value"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# ---- completions and embeddings ---------------------------------------------------------------------
def test_completions_are_messages_calls_one_per_prompt(fake: FakeAnthropic) -> None:
    answer = _ask("completions", {"prompt": ["one two", "three"], "max_tokens": 3}, task=COMPLETIONS)
    assert sorted(json.dumps(r.body["messages"]) for r in fake.received) == [
        json.dumps([{"role": "user", "content": "one two"}]),
        json.dumps([{"role": "user", "content": "three"}]),
    ]
    assert answer["object"] == "text_completion"
    assert [(c["text"], c["finish_reason"]) for c in answer["choices"]] == [
        ("You said: one", "length"),
        ("You said: three", "stop"),
    ]
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}


def test_completions_stream(fake: FakeAnthropic) -> None:
    chunks = _ask("completions_stream", {"prompt": "one two"}, task=COMPLETIONS)
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "You said: one two"
    assert (
        chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] == 4
    )


def test_embeddings_are_not_offered() -> None:
    assert AnthropicProvider.tasks == {CHAT, COMPLETIONS}
    assert EMBEDDINGS not in AnthropicProvider.tasks
    with pytest.raises(NotImplementedByServer):
        _ask("embeddings", {"input": "x"}, task=EMBEDDINGS)


# ---- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequest),
        (401, PermissionDenied),
        (403, PermissionDenied),
        (429, RequestLimitExceeded),
        (500, BadGateway),
        (529, TemporarilyUnavailable),
    ],
)
def test_anthropic_errors_become_ours(fake: FakeAnthropic, status: int, error: type[ModelportError]) -> None:
    fake.faults.fail(status, f"upstream says {status}", headers={"retry-after": "7"})
    with pytest.raises(error) as caught:
        _ask("chat", _user("x"))
    assert type(caught.value) is error
    assert f"upstream says {status}" in caught.value.message and "'anthropic'" in caught.value.message
    if status in (429, 529):
        assert caught.value.retry_after == 7


def test_slow_anthropic_is_deadline_exceeded(fake: FakeAnthropic) -> None:
    fake.faults.slow(2.0)
    with pytest.raises(DeadlineExceeded):
        _ask("chat", _user("x"), timeout=0.3)


def test_unreachable_anthropic_is_bad_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BASE_URLS, "anthropic", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BadGateway, match="Could not reach"):
        _ask("chat", _user("x"))


def test_default_base_url_is_anthropics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(BASE_URLS, "anthropic", raising=False)
    ctx = ProviderContext(ENDPOINT, MODEL, CHAT, {}, resolver({}), httpx.AsyncClient(), 1.0)
    assert AnthropicProvider(ctx).url == "https://api.anthropic.com/v1/messages"
