"""The AI21 (Jamba) provider against a loopback AI21 Studio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from modelport.entities.providers.ai21 import AI21Provider
from modelport.errors import (
    BadGateway,
    BadRequest,
    DeadlineExceeded,
    ModelportError,
    NotImplementedByServer,
    PermissionDenied,
    RequestLimitExceeded,
    TemporarilyUnavailable,
)
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS
from tests.fakes.ai21_server import API_KEY, FakeAI21
from tests.integration.providers.contexts import BASE_URLS, ENDPOINT, ask

CONFIG = {"ai21labs_api_key_plaintext": API_KEY}
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
def fake_server() -> Iterator[FakeAI21]:
    fake = FakeAI21().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_server: FakeAI21, monkeypatch: pytest.MonkeyPatch) -> FakeAI21:
    fake_server.reset()
    monkeypatch.setitem(BASE_URLS, "ai21", fake_server.url)
    return fake_server


def _ask(method: str, body: dict[str, Any], task: str = CHAT, **kw: Any) -> Any:
    kw.setdefault("config", CONFIG)
    return ask(AI21Provider, method, body, model="jamba-mini", task=task, **kw)


def _hi() -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}]}


def test_chat_request_and_answer(fake: FakeAI21) -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
        "max_completion_tokens": 30,
        "temperature": 0.4,
        "top_p": 0.9,
        "stop": "END",
        "user": "someone",  # OpenAI-only: not for AI21
        "logit_bias": {"1": 2},
        "model": "my-endpoint",
        "extra_params": {"documents": [{"content": "doc"}]},
    }
    answer = _ask("chat", body)
    sent = fake.requests[-1]
    assert sent["path"] == "/studio/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert sent["json"] == {
        "model": "jamba-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
        "max_tokens": 30,
        "temperature": 0.4,
        "top_p": 0.9,
        "stop": ["END"],
        "documents": [{"content": "doc"}],
    }
    assert answer["object"] == "chat.completion"
    assert answer["model"] == ENDPOINT
    assert answer["id"].startswith("chat-")
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hello there"},
            "finish_reason": "stop",
            "finishReason": "stop",
        }
    ]
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_n_and_length(fake: FakeAI21) -> None:
    fake.reply_text = "one two three"
    answer = _ask("chat", {**_hi(), "n": 2, "max_tokens": 2})
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in answer["choices"]] == [
        (0, "one two", "length"),
        (1, "one two", "length"),
    ]
    assert len(fake.requests) == 1


def test_json_schema_format_is_json_object(fake: FakeAI21) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    _ask("chat", {**_hi(), "response_format": fmt})
    assert fake.requests[-1]["json"]["response_format"] == {"type": "json_object"}


def test_stream_chat(fake: FakeAI21) -> None:
    chunks = _ask("chat_stream", {"messages": [{"role": "user", "content": "a b"}], "stream": True})
    assert fake.requests[-1]["json"]["stream"] is True
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {ENDPOINT}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo: a b"
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("stop") == 1


def test_tool_calls(fake: FakeAI21) -> None:
    fake.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    answer = _ask("chat", {**_hi(), "tools": TOOLS})
    assert fake.requests[-1]["json"]["tools"] == TOOLS
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}

    history = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'},
        ],
        "tools": TOOLS,
    }
    answer = _ask("chat", history)
    assert fake.requests[-1]["json"]["messages"][1:] == [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": call["id"]},
    ]
    assert answer["choices"][0]["message"]["content"] == 'echo: {"temp": 21}'


def test_stream_tool_calls(fake: FakeAI21) -> None:
    fake.tool_call = {"name": "get_weather", "arguments": {"city": "Rome"}}
    chunks = _ask("chat_stream", {**_hi(), "tools": TOOLS})
    [delta] = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert delta["index"] == 0
    assert delta["function"]["name"] == "get_weather"
    assert json.loads(delta["function"]["arguments"]) == {"city": "Rome"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_completions(fake: FakeAI21) -> None:
    answer = _ask("completions", {"prompt": ["x", "y z"], "max_tokens": 5}, task=COMPLETIONS)
    assert sorted(r["json"]["messages"][0]["content"] for r in fake.requests) == ["x", "y z"]
    assert [(c["text"], c["finish_reason"]) for c in answer["choices"]] == [
        ("echo: x", "stop"),
        ("echo: y z", "stop"),
    ]
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def test_completions_stream(fake: FakeAI21) -> None:
    chunks = _ask("completions_stream", {"prompt": "go"}, task=COMPLETIONS)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "echo: go"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_no_embeddings(fake: FakeAI21) -> None:
    with pytest.raises(NotImplementedByServer, match="'ai21labs' does not support embeddings"):
        _ask("embeddings", {"input": "x"}, task=EMBEDDINGS)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequest),
        (401, PermissionDenied),
        (422, BadRequest),
        (429, RequestLimitExceeded),
        (500, BadGateway),
        (503, TemporarilyUnavailable),
    ],
)
def test_ai21_errors_become_ours(fake: FakeAI21, status: int, error: type[ModelportError]) -> None:
    fake.faults.fail(status, f"the message for {status}")
    with pytest.raises(error) as raised:
        _ask("chat", _hi())
    assert type(raised.value) is error
    assert f"the message for {status}" in str(raised.value)
    assert "'ai21labs'" in str(raised.value)


def test_wrong_key(fake: FakeAI21) -> None:
    with pytest.raises(PermissionDenied, match="Bad or missing API token"):
        _ask("chat", _hi(), config={"ai21labs_api_key_plaintext": "nope"})


def test_slow_ai21_is_deadline_exceeded(fake: FakeAI21) -> None:
    fake.faults.slow(2.0)
    with pytest.raises(DeadlineExceeded):
        _ask("chat", _hi(), timeout=0.3)
