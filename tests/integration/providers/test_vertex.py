"""The Vertex AI provider against a loopback Google (OAuth token endpoint + Vertex AI REST)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelport.entities.providers.base import ProviderContext
from modelport.entities.providers.vertex import VertexProvider
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
from tests.fakes.vertex_server import JWT_BEARER, FakeGoogle, embedding_of
from tests.integration.providers.contexts import BASE_URLS, ENDPOINT, ask, resolver
from tests.serverproc import free_port

MODEL_PATH = "/v1/projects/proj-1/locations/europe-west4/publishers/google/models/gemini-2.0-flash"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"]}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeGoogle]:
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_server: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> FakeGoogle:
    fake_server.reset()
    monkeypatch.setitem(BASE_URLS, "vertex", fake_server.url)
    return fake_server


@pytest.fixture
def config(fake: FakeGoogle) -> dict[str, Any]:
    """A block with a new service account (so no token is cached for it yet)."""
    key = json.dumps(fake.new_service_account())
    return {"project_id": "proj-1", "region": "europe-west4", "private_key_plaintext": key}


def _ask(config: dict[str, Any], method: str, body: dict[str, Any], task: str = CHAT, **kw: Any) -> Any:
    kw.setdefault("model", "gemini-2.0-flash")
    return ask(VertexProvider, method, body, task=task, config=config, **kw)


def _hi() -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}]}


# ---- OAuth ----------------------------------------------------------------------------------------
def test_token_comes_from_a_signed_jwt_grant_and_is_sent_as_bearer(
    fake: FakeGoogle, config: dict[str, Any]
) -> None:
    _ask(config, "chat", _hi())
    [grant] = fake.token_requests
    assert grant["form"]["grant_type"] == JWT_BEARER
    assert grant["headers"]["content-type"] == "application/x-www-form-urlencoded"
    [query] = fake.requests
    assert query["headers"]["authorization"].startswith("Bearer ya29.fake-")


def test_one_token_request_serves_many_queries(fake: FakeGoogle, config: dict[str, Any]) -> None:
    for _ in range(3):
        _ask(config, "chat", _hi())

    async def many() -> None:
        async with httpx.AsyncClient() as http:
            ctx = ProviderContext(
                ENDPOINT, "gemini-2.0-flash", CHAT, config, resolver({}), http, 5.0, BASE_URLS
            )
            provider = VertexProvider(ctx)
            await asyncio.gather(*(provider.chat(_hi()) for _ in range(10)))

    asyncio.run(many())
    assert len(fake.token_requests) == 1
    assert len(fake.requests) == 13
    assert len({r["headers"]["authorization"] for r in fake.requests}) == 1


def test_concurrent_first_queries_wait_for_one_refresh(fake: FakeGoogle, config: dict[str, Any]) -> None:
    fake.token_faults.slow(0.3)

    async def many() -> None:
        async with httpx.AsyncClient() as http:
            ctx = ProviderContext(
                ENDPOINT, "gemini-2.0-flash", CHAT, config, resolver({}), http, 5.0, BASE_URLS
            )
            provider = VertexProvider(ctx)
            await asyncio.gather(*(provider.chat(_hi()) for _ in range(8)))

    asyncio.run(many())
    assert len(fake.token_requests) == 1


def test_a_token_close_to_expiry_is_refreshed(fake: FakeGoogle, config: dict[str, Any]) -> None:
    fake.token_lifetime = 120  # inside the five-minute margin: never reused
    _ask(config, "chat", _hi())
    _ask(config, "chat", _hi())
    assert len(fake.token_requests) == 2


def test_a_rotated_key_gets_its_own_token(fake: FakeGoogle, config: dict[str, Any]) -> None:
    secrets = {("gcp", "sa"): config["private_key_plaintext"]}
    block = {"project_id": "proj-1", "region": "europe-west4", "private_key": "{{secrets/gcp/sa}}"}
    _ask(block, "chat", _hi(), secrets=secrets)
    secrets[("gcp", "sa")] = json.dumps(fake.new_service_account())
    _ask(block, "chat", _hi(), secrets=secrets)
    assert len(fake.token_requests) == 2
    assert len({r["headers"]["authorization"] for r in fake.requests}) == 2


def test_a_key_google_does_not_know_is_permission_denied(fake: FakeGoogle) -> None:
    other = FakeGoogle()  # never started: its accounts are unknown to `fake`
    info = other.new_service_account()
    info["token_uri"] = fake.token_uri
    block = {"project_id": "p", "region": "europe-west4", "private_key_plaintext": json.dumps(info)}
    with pytest.raises(PermissionDenied, match="Invalid JWT Signature"):
        _ask(block, "chat", _hi())
    assert fake.requests == []


def test_a_private_key_that_is_not_a_key_file_is_permission_denied(fake: FakeGoogle) -> None:
    block = {
        "project_id": "p",
        "region": "europe-west4",
        "private_key_plaintext": "-----BEGIN PRIVATE KEY-----",
    }
    with pytest.raises(PermissionDenied, match="service-account key file"):
        _ask(block, "chat", _hi())
    block["private_key_plaintext"] = json.dumps({"type": "service_account"})
    with pytest.raises(PermissionDenied, match="not a usable service-account key"):
        _ask(block, "chat", _hi())


def test_unreachable_token_endpoint_is_bad_gateway(fake: FakeGoogle) -> None:
    info = fake.new_service_account()
    info["token_uri"] = f"http://127.0.0.1:{free_port()}/token"
    block = {"project_id": "p", "region": "europe-west4", "private_key_plaintext": json.dumps(info)}
    with pytest.raises(BadGateway, match="token endpoint"):
        _ask(block, "chat", _hi())


def test_default_hosts_follow_the_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(BASE_URLS, "vertex", raising=False)

    def url(region: str, model: str = "gemini-2.0-flash") -> str:
        ctx = ProviderContext(
            ENDPOINT, model, CHAT, {"project_id": "p", "region": region}, resolver({}), None, 1.0
        )  # type: ignore[arg-type]
        return VertexProvider(ctx).url

    assert url("us-central1") == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1"
        "/publishers/google/models/gemini-2.0-flash"
    )
    assert url("global").startswith("https://aiplatform.googleapis.com/v1/projects/p/locations/global/")


# ---- chat -----------------------------------------------------------------------------------------
def test_chat_request_and_answer(fake: FakeGoogle, config: dict[str, Any]) -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ],
        "temperature": 0.3,
        "top_p": 0.8,
        "max_tokens": 40,
        "stop": ["END"],
        "model": "my-endpoint",
        "extra_params": {
            "top_k": 20,
            "safety_settings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
        },
    }
    answer = _ask(config, "chat", body)
    sent = fake.requests[-1]
    assert sent["path"] == MODEL_PATH + ":generateContent"
    assert sent["json"] == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {"role": "model", "parts": [{"text": "Hi!"}]},
            {"role": "user", "parts": [{"text": "hello there"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.8,
            "maxOutputTokens": 40,
            "stopSequences": ["END"],
            "topK": 20,
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
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
    # Prompt words: "Be brief." (2) + "Hello" + "Hi!" + "hello there" (2).
    assert answer["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}


def test_n_is_candidate_count(fake: FakeGoogle, config: dict[str, Any]) -> None:
    answer = _ask(config, "chat", {**_hi(), "n": 2})
    assert fake.requests[-1]["json"]["generationConfig"]["candidateCount"] == 2
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("gemini", "openai"),
    [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter")],
)
def test_finish_reasons(fake: FakeGoogle, config: dict[str, Any], gemini: str, openai: str) -> None:
    fake.finish_reason = gemini
    assert _ask(config, "chat", _hi())["choices"][0]["finish_reason"] == openai


def test_max_tokens_cut_is_length(fake: FakeGoogle, config: dict[str, Any]) -> None:
    fake.reply_text = "one two three"
    answer = _ask(config, "chat", {**_hi(), "max_tokens": 1})
    assert answer["choices"][0]["message"]["content"] == "one"
    assert answer["choices"][0]["finish_reason"] == "length"


def test_a_blocked_prompt_is_an_empty_content_filter_choice(fake: FakeGoogle, config: dict[str, Any]) -> None:
    fake.block_prompt = True
    answer = _ask(config, "chat", _hi())
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": ""}
    assert answer["choices"][0]["finish_reason"] == "content_filter"


def test_json_response_format(fake: FakeGoogle, config: dict[str, Any]) -> None:
    _ask(config, "chat", {**_hi(), "response_format": {"type": "json_object"}})
    assert fake.requests[-1]["json"]["generationConfig"] == {"responseMimeType": "application/json"}


# ---- streaming ------------------------------------------------------------------------------------
def test_stream_chat(fake: FakeGoogle, config: dict[str, Any]) -> None:
    chunks = _ask(config, "chat_stream", {"messages": [{"role": "user", "content": "a b"}], "stream": True})
    sent = fake.requests[-1]
    assert sent["path"] == MODEL_PATH + ":streamGenerateContent"
    assert sent["query"] == {"alt": "sse"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo: a b"
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert all("usage" not in c for c in chunks[:-1])


def test_stream_errors_come_before_the_first_chunk(fake: FakeGoogle, config: dict[str, Any]) -> None:
    fake.faults.fail(429, "Resource exhausted. Please try again later.", headers={"retry-after": "3"})
    with pytest.raises(RequestLimitExceeded, match="Resource exhausted") as raised:
        _ask(config, "chat_stream", _hi())
    assert raised.value.retry_after == 3


# ---- tools ----------------------------------------------------------------------------------------
def test_tools_become_function_declarations(fake: FakeGoogle, config: dict[str, Any]) -> None:
    fake.function_call = {"name": "get_weather", "args": {"city": "Paris"}}
    body = {**_hi(), "tools": TOOLS, "tool_choice": "required"}
    answer = _ask(config, "chat", body)
    sent = fake.requests[-1]["json"]
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string"},
                            "unit": {"type": "string", "nullable": True},
                        },
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_naming_a_tool_allows_only_that_function(fake: FakeGoogle, config: dict[str, Any]) -> None:
    _ask(
        config,
        "chat",
        {**_hi(), "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    )
    assert fake.requests[-1]["json"]["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_tool_results_become_function_responses(fake: FakeGoogle, config: dict[str, Any]) -> None:
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
    ]
    body = {
        "messages": [
            {"role": "user", "content": "Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": "call_b", "content": "sunny"},
        ],
        "tools": TOOLS,
    }
    answer = _ask(config, "chat", body)
    assert fake.requests[-1]["json"]["contents"] == [
        {"role": "user", "parts": [{"text": "Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
            ],
        },
    ]
    assert answer["choices"][0]["message"]["content"] == 'echo: {"content": "sunny"}'


def test_stream_tool_call(fake: FakeGoogle, config: dict[str, Any]) -> None:
    fake.function_call = {"name": "get_weather", "args": {"city": "Paris"}}
    chunks = _ask(config, "chat_stream", {**_hi(), "tools": TOOLS})
    [delta] = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert delta["index"] == 0
    assert delta["function"]["name"] == "get_weather"
    assert json.loads(delta["function"]["arguments"]) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# ---- completions ----------------------------------------------------------------------------------
def test_completions(fake: FakeGoogle, config: dict[str, Any]) -> None:
    answer = _ask(config, "completions", {"prompt": ["one", "two three"], "max_tokens": 9}, task=COMPLETIONS)
    assert sorted(r["json"]["contents"][0]["parts"][0]["text"] for r in fake.requests) == ["one", "two three"]
    assert answer["object"] == "text_completion"
    assert [(c["text"], c["finish_reason"]) for c in answer["choices"]] == [
        ("echo: one", "stop"),
        ("echo: two three", "stop"),
    ]
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def test_completions_stream(fake: FakeGoogle, config: dict[str, Any]) -> None:
    chunks = _ask(config, "completions_stream", {"prompt": "go on"}, task=COMPLETIONS)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "echo: go on"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# ---- embeddings -----------------------------------------------------------------------------------
def test_embeddings_use_predict(fake: FakeGoogle, config: dict[str, Any]) -> None:
    answer = _ask(config, "embeddings", {"input": ["a b", "c"]}, task=EMBEDDINGS, model="text-embedding-005")
    sent = fake.requests[-1]
    assert sent["path"].endswith("/publishers/google/models/text-embedding-005:predict")
    assert sent["json"] == {"instances": [{"content": "a b"}, {"content": "c"}]}
    assert answer == {
        "object": "list",
        "model": ENDPOINT,
        "data": [
            {"object": "embedding", "index": 0, "embedding": embedding_of("a b")},
            {"object": "embedding", "index": 1, "embedding": embedding_of("c")},
        ],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def test_embeddings_task_type_and_dimensions(fake: FakeGoogle, config: dict[str, Any]) -> None:
    body = {
        "input": "q",
        "dimensions": 6,
        "extra_params": {"task_type": "RETRIEVAL_QUERY", "autoTruncate": False},
    }
    answer = _ask(config, "embeddings", body, task=EMBEDDINGS, model="text-embedding-005")
    assert fake.requests[-1]["json"] == {
        "instances": [{"content": "q", "task_type": "RETRIEVAL_QUERY"}],
        "parameters": {"outputDimensionality": 6, "autoTruncate": False},
    }
    assert len(answer["data"][0]["embedding"]) == 6


def test_gemini_embedding_takes_one_text_a_call(fake: FakeGoogle, config: dict[str, Any]) -> None:
    answer = _ask(
        config, "embeddings", {"input": ["x", "y y", "z"]}, task=EMBEDDINGS, model="gemini-embedding-001"
    )
    assert len(fake.requests) == 3
    assert [d["embedding"] for d in answer["data"]] == [embedding_of(t) for t in ["x", "y y", "z"]]
    assert answer["usage"]["prompt_tokens"] == 4


# ---- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequest),
        (403, PermissionDenied),
        (404, BadRequest),
        (429, RequestLimitExceeded),
        (500, BadGateway),
        (503, TemporarilyUnavailable),
    ],
)
def test_google_errors_become_ours(
    fake: FakeGoogle, config: dict[str, Any], status: int, error: type[ModelportError]
) -> None:
    fake.faults.fail(status, f"the message for {status}")
    with pytest.raises(error) as raised:
        _ask(config, "chat", _hi())
    assert type(raised.value) is error
    assert f"the message for {status}" in str(raised.value)
    assert "'google-cloud-vertex-ai'" in str(raised.value)


def test_a_revoked_token_is_refused_once_then_replaced(fake: FakeGoogle, config: dict[str, Any]) -> None:
    _ask(config, "chat", _hi())
    fake.revoke_tokens()
    with pytest.raises(PermissionDenied, match="invalid authentication credentials"):
        _ask(config, "chat", _hi())
    assert _ask(config, "chat", _hi())["choices"][0]["message"]["content"] == "echo: hi"
    assert len(fake.token_requests) == 2


def test_google_refusing_a_body_is_bad_request_with_googles_message(
    fake: FakeGoogle, config: dict[str, Any]
) -> None:
    body = {**_hi(), "extra_params": {"bogus_knob": 1}}  # becomes generationConfig.bogusKnob
    with pytest.raises(BadRequest, match='Unknown name "bogusKnob"'):
        _ask(config, "chat", body)
    # Streaming calls get their errors as a one-element JSON array.
    with pytest.raises(BadRequest, match='Unknown name "bogusKnob"'):
        _ask(config, "chat_stream", body)


def test_a_tool_message_may_name_its_function(fake: FakeGoogle, config: dict[str, Any]) -> None:
    body = {
        "messages": [
            {"role": "user", "content": "?"},
            {"role": "tool", "name": "f", "tool_call_id": "x", "content": "[1]"},
        ]
    }
    answer = _ask(config, "chat", body)
    assert fake.requests[-1]["json"]["contents"] == [
        {
            "role": "user",
            "parts": [{"text": "?"}, {"functionResponse": {"name": "f", "response": {"content": [1]}}}],
        }
    ]
    assert answer["choices"][0]["message"]["content"] == 'echo: {"content": [1]}'


def test_bodies_we_cannot_translate_are_refused_before_any_call(
    fake: FakeGoogle, config: dict[str, Any]
) -> None:
    with pytest.raises(BadRequest, match="needs 'messages'"):
        _ask(config, "chat", {"messages": "hi"})
    with pytest.raises(BadRequest, match="tool_call_id"):
        _ask(config, "chat", {"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]})
    with pytest.raises(BadRequest, match="at least one user"):
        _ask(config, "chat", {"messages": [{"role": "system", "content": "x"}]})
    assert fake.requests == []


def test_slow_vertex_is_deadline_exceeded(fake: FakeGoogle, config: dict[str, Any]) -> None:
    _ask(config, "chat", _hi())  # the token first, at full speed
    fake.faults.slow(2.0)
    with pytest.raises(DeadlineExceeded):
        _ask(config, "chat", _hi(), timeout=0.3)
