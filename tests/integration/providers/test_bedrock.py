"""The Amazon Bedrock provider against a loopback Bedrock Runtime that verifies SigV4
signatures and frames its streams as AWS event streams (the fake is checked with boto3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import httpx
import pytest
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from modelport.entities.providers.base import ProviderContext
from modelport.entities.providers.bedrock import BedrockProvider
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
from tests.fakes.bedrock_server import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    FakeBedrock,
    chunk_frame,
    vector,
)
from tests.integration.providers.contexts import BASE_URLS, ENDPOINT, ask, resolver
from tests.serverproc import free_port

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
KEYS = {"aws_access_key_id_plaintext": ACCESS_KEY_ID, "aws_secret_access_key_plaintext": SECRET_ACCESS_KEY}
HELLO = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi you"}]}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> FakeBedrock:
    fake_server.reset()
    monkeypatch.setitem(BASE_URLS, "bedrock", fake_server.url)
    return fake_server


def _ask(family: str, model: str, method: str, body: dict[str, Any], task: str = CHAT, **kw: Any) -> Any:
    config = {"aws_region": REGION, "bedrock_provider": family, **kw.pop("keys", KEYS)}
    return ask(BedrockProvider, method, body, model=model, task=task, config=config, **kw)


# ---- the fake speaks Bedrock: boto3 reads it --------------------------------------------------------
@pytest.fixture
def boto(fake: FakeBedrock) -> Any:
    return _boto(fake, SECRET_ACCESS_KEY)


def _boto(fake: FakeBedrock, secret: str, key_id: str = ACCESS_KEY_ID) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=fake.url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_boto3_invokes_claude_on_the_fake(fake: FakeBedrock, boto: Any) -> None:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
    answer = boto.invoke_model(modelId=CLAUDE, body=json.dumps(body))
    data = json.loads(answer["body"].read())
    assert data["content"] == [{"type": "text", "text": "You said: hi"}] and data["stop_reason"] == "end_turn"
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert (headers["x-amzn-bedrock-input-token-count"], headers["x-amzn-bedrock-output-token-count"]) == (
        "1",
        "3",
    )
    # boto3 escapes the model id's ':' and signs the escaped path; the fake verified that
    assert fake.received[-1].raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"


def test_boto3_reads_the_fakes_event_stream(boto: Any) -> None:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "a b"}],
    }
    answer = boto.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(body))
    events = [json.loads(e["chunk"]["bytes"]) for e in answer["body"]]
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 4
    titan = boto.invoke_model_with_response_stream(
        modelId="amazon.titan-text-express-v1", body='{"inputText": "x"}'
    )
    assert [json.loads(e["chunk"]["bytes"])["completionReason"] for e in titan["body"]] == [
        None,
        None,
        "FINISH",
    ]


def test_boto3_sees_the_fakes_errors(fake: FakeBedrock, boto: Any) -> None:
    titan = {"modelId": "amazon.titan-text-express-v1", "body": json.dumps({"inputText": "x"})}
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        _boto(fake, "not-the-secret").invoke_model(**titan)
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(botocore.exceptions.ClientError, match="UnrecognizedClientException"):
        _boto(fake, SECRET_ACCESS_KEY, key_id="AKIAUNKNOWNKEY000000").invoke_model(**titan)
    fake.fail(429, "Too many requests, please wait before trying again.")
    with pytest.raises(boto.exceptions.ThrottlingException):
        boto.invoke_model(**titan)
    with pytest.raises(boto.exceptions.ValidationException, match=r"extraneous key \[model\]"):
        boto.invoke_model(
            modelId="amazon.titan-text-express-v1", body=json.dumps({"inputText": "x", "model": "m"})
        )
    fake.stream_exception = "throttlingException"
    stream = boto.invoke_model_with_response_stream(**titan)
    with pytest.raises(botocore.exceptions.EventStreamError, match="throttlingException"):
        list(stream["body"])


def test_the_fakes_frames_carry_valid_crcs() -> None:
    frame = chunk_frame({"outputText": "hi"})
    buffer = EventStreamBuffer()
    buffer.add_data(frame[:7])
    assert list(buffer) == []  # an incomplete prelude waits for more
    buffer.add_data(frame[7:])
    [message] = list(buffer)
    assert message.headers == {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    corrupt = EventStreamBuffer()
    corrupt.add_data(frame[:-5] + bytes([frame[-5] ^ 1]) + frame[-4:])
    with pytest.raises(ChecksumMismatch):
        list(corrupt)


# ---- chat, per family -----------------------------------------------------------------------------
FAMILIES = [
    pytest.param(
        "anthropic",
        CLAUDE,
        {
            "anthropic_version": "bedrock-2023-05-31",
            "messages": [{"role": "user", "content": "hi you"}],
            "system": "Be brief.",
            "max_tokens": 50,
            "temperature": 0.25,
        },
        {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8},
        id="claude",
    ),
    pytest.param(
        "amazon",
        "us.amazon.nova-lite-v1:0",
        {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": "hi you"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.25},
        },
        {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8},
        id="nova",
    ),
    pytest.param(
        "amazon",
        "amazon.titan-text-express-v1",
        {
            "inputText": "Be brief.\nUser: hi you\nBot:",
            "textGenerationConfig": {"maxTokenCount": 50, "temperature": 0.25},
        },
        {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10},
        id="titan-text",
    ),
    pytest.param(
        "cohere",
        "cohere.command-r-plus-v1:0",
        {"message": "hi you", "preamble": "Be brief.", "max_tokens": 50, "temperature": 0.25},
        {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8},
        id="command-r",
    ),
    pytest.param(
        "cohere",
        "cohere.command-text-v14",
        {"prompt": "Be brief.\nUser: hi you\nChatbot:", "max_tokens": 50, "temperature": 0.5},
        {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10},
        id="command-text",
    ),
    pytest.param(
        "ai21labs",
        "ai21.jamba-1-5-mini-v1:0",
        {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi you"}],
            "max_tokens": 50,
            "temperature": 0.5,
        },
        {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8},
        id="jamba",
    ),
]


@pytest.mark.parametrize(("family", "model", "sent", "usage"), FAMILIES)
def test_chat_body_and_answer_per_family(
    fake: FakeBedrock, family: str, model: str, sent: dict[str, Any], usage: dict[str, int]
) -> None:
    answer = _ask(family, model, "chat", {**HELLO, "max_tokens": 50, "temperature": 0.5, "user": "u-1"})
    assert fake.last == sent
    assert fake.received[-1].path == f"/model/{model}/invoke"
    assert answer["object"] == "chat.completion" and answer["model"] == ENDPOINT
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "You said: hi you"},
            "finish_reason": "stop",
            "finishReason": "stop",
        }
    ]
    assert answer["usage"] == usage


@pytest.mark.parametrize(("family", "model", "sent", "usage"), FAMILIES)
def test_stream_chat_per_family(
    fake: FakeBedrock, family: str, model: str, sent: dict[str, Any], usage: dict[str, int]
) -> None:
    chunks = _ask(
        family, model, "chat_stream", {**HELLO, "max_tokens": 50, "temperature": 0.5, "user": "u-1"}
    )
    assert fake.received[-1].path == f"/model/{model}/invoke-with-response-stream"
    assert fake.last == sent  # the stream is the path's business, not the body's
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "You said: hi you"
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[-1]["usage"] == usage


@pytest.mark.parametrize(
    ("family", "model"),
    [
        ("anthropic", CLAUDE),
        ("amazon", "amazon.nova-pro-v1:0"),
        ("amazon", "amazon.titan-text-lite-v1"),
        ("cohere", "cohere.command-r-v1:0"),
        ("cohere", "cohere.command-light-text-v14"),
        ("ai21labs", "ai21.jamba-1-5-large-v1:0"),
    ],
)
def test_completions_and_length_finish_per_family(fake: FakeBedrock, family: str, model: str) -> None:
    answer = _ask(
        family, model, "completions", {"prompt": ["one two three", "four"], "max_tokens": 3}, COMPLETIONS
    )
    assert answer["object"] == "text_completion"
    assert [(c["text"], c["finish_reason"]) for c in answer["choices"]] == [
        ("You said: one", "length"),
        ("You said: four", "stop"),
    ]
    assert answer["usage"]["completion_tokens"] == 6
    chunks = _ask(family, model, "completions_stream", {"prompt": "one two"}, COMPLETIONS)
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "You said: one two"
    assert (
        chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] == 4
    )


def test_titan_completions_send_the_prompt_itself(fake: FakeBedrock) -> None:
    _ask(
        "amazon", "amazon.titan-text-express-v1", "completions", {"prompt": "Once", "stop": "|"}, COMPLETIONS
    )
    assert fake.last == {"inputText": "Once", "textGenerationConfig": {"stopSequences": ["|"]}}


def test_claude_tools_on_bedrock(fake: FakeBedrock) -> None:
    body = {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS, "tool_choice": "auto"}
    answer = _ask("anthropic", CLAUDE, "chat", body)
    assert fake.last["tools"] == [{"name": "get_weather", "input_schema": TOOLS[0]["function"]["parameters"]}]
    message = answer["choices"][0]["message"]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"city-value"}',
    }
    result = {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "sunny"}
    follow = {**body, "messages": [*body["messages"], message, result]}
    chunks = _ask("anthropic", CLAUDE, "chat_stream", follow)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Tool said: sunny"


def test_tools_are_refused_where_the_family_has_none(fake: FakeBedrock) -> None:
    for family, model in [("amazon", "amazon.nova-lite-v1:0"), ("cohere", "cohere.command-r-v1:0")]:
        with pytest.raises(InvalidParameterValue, match="Tools are not supported"):
            _ask(family, model, "chat", {**HELLO, "tools": TOOLS})
    assert fake.received == []


# ---- embeddings -----------------------------------------------------------------------------------
def test_titan_embeddings_one_call_per_input(fake: FakeBedrock) -> None:
    answer = _ask(
        "amazon",
        "amazon.titan-embed-text-v2:0",
        "embeddings",
        {"input": ["a b", "c"], "dimensions": 256},
        EMBEDDINGS,
    )
    assert sorted(json.dumps(r.body) for r in fake.received) == [
        json.dumps({"inputText": "a b", "dimensions": 256}),
        json.dumps({"inputText": "c", "dimensions": 256}),
    ]
    assert answer["object"] == "list" and answer["model"] == ENDPOINT
    assert [d["embedding"] for d in answer["data"]] == [vector("a b", 256), vector("c", 256)]
    assert [d["index"] for d in answer["data"]] == [0, 1]
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    v1 = _ask("amazon", "amazon.titan-embed-text-v1", "embeddings", {"input": "a"}, EMBEDDINGS)
    assert len(v1["data"][0]["embedding"]) == 1536


def test_cohere_embeddings_in_batches_of_96_keep_their_order(fake: FakeBedrock) -> None:
    texts = [f"text {i}" for i in range(100)]
    body = {"input": texts, "extra_params": {"input_type": "search_query"}}
    answer = _ask("cohere", "cohere.embed-english-v3", "embeddings", body, EMBEDDINGS)
    assert sorted(len(r.body["texts"]) for r in fake.received) == [4, 96]
    assert {r.body["input_type"] for r in fake.received} == {"search_query"}
    assert [d["embedding"] for d in answer["data"]] == [vector(t, 1024) for t in texts]
    assert answer["usage"]["prompt_tokens"] == 200


def test_cohere_embeddings_by_type(fake: FakeBedrock) -> None:
    body = {"input": ["a"], "extra_params": {"embedding_types": ["float"]}}
    answer = _ask("cohere", "cohere.embed-multilingual-v3", "embeddings", body, EMBEDDINGS)
    assert fake.last == {"texts": ["a"], "input_type": "search_document", "embedding_types": ["float"]}
    assert answer["data"][0]["embedding"] == vector("a", 1024)


def test_tasks_a_family_lacks_are_not_implemented(fake: FakeBedrock) -> None:
    with pytest.raises(NotImplementedByServer, match="embeddings"):
        _ask("anthropic", CLAUDE, "embeddings", {"input": "x"}, EMBEDDINGS)
    with pytest.raises(NotImplementedByServer, match="embeddings"):
        _ask("ai21labs", "ai21.jamba-1-5-mini-v1:0", "embeddings", {"input": "x"}, EMBEDDINGS)
    with pytest.raises(NotImplementedByServer, match="chat"):
        _ask("amazon", "amazon.titan-embed-text-v2:0", "chat", HELLO)
    with pytest.raises(NotImplementedByServer, match="streaming"):
        _ask("cohere", "cohere.embed-english-v3", "chat_stream", HELLO)
    assert fake.received == []


# ---- signing and credentials ----------------------------------------------------------------------
def test_requests_are_signed_for_bedrock_in_the_region(fake: FakeBedrock) -> None:
    _ask("anthropic", CLAUDE, "chat", HELLO)
    headers = fake.received[-1].headers
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    assert f"/{REGION}/bedrock/aws4_request" in headers["authorization"]
    assert fake.received[-1].raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"


def test_secret_references_are_resolved_per_request(fake: FakeBedrock) -> None:
    secrets = {("aws", "id"): ACCESS_KEY_ID, ("aws", "secret"): SECRET_ACCESS_KEY}
    keys = {"aws_access_key_id": "{{secrets/aws/id}}", "aws_secret_access_key": "{{secrets/aws/secret}}"}
    assert (
        _ask("anthropic", CLAUDE, "chat", HELLO, keys=keys, secrets=secrets)["choices"][0]["finish_reason"]
        == "stop"
    )
    secrets[("aws", "secret")] = "rotated-but-wrong"
    with pytest.raises(PermissionDenied, match="signature we calculated does not match"):
        _ask("anthropic", CLAUDE, "chat", HELLO, keys=keys, secrets=secrets)


def test_session_token_is_sent_and_signed(fake_server: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeBedrock(session_token="session-token-1") as fake:
        monkeypatch.setitem(BASE_URLS, "bedrock", fake.url)
        with pytest.raises(PermissionDenied, match="security token"):
            _ask("anthropic", CLAUDE, "chat", HELLO)
        keys = {**KEYS, "aws_session_token_plaintext": "session-token-1"}
        assert _ask("anthropic", CLAUDE, "chat", HELLO, keys=keys)["choices"][0]["finish_reason"] == "stop"
        assert "x-amz-security-token" in fake.received[-1].headers["authorization"]


def test_missing_keys_are_refused_before_any_call(fake: FakeBedrock) -> None:
    with pytest.raises(PermissionDenied, match="aws_access_key_id"):
        _ask("anthropic", CLAUDE, "chat", HELLO, keys={"aws_access_key_id_plaintext": ACCESS_KEY_ID})
    assert fake.received == []


def test_default_endpoint_is_regional(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(BASE_URLS, "bedrock", raising=False)
    config = {"aws_region": "eu-west-1", "bedrock_provider": "Anthropic", **KEYS}
    ctx = ProviderContext(ENDPOINT, CLAUDE, CHAT, config, resolver({}), httpx.AsyncClient(), 1.0)
    provider = BedrockProvider(ctx)
    assert provider.model_url == (
        "https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0"
    )
    with pytest.raises(InvalidParameterValue, match="bedrock_provider"):
        BedrockProvider(
            ProviderContext(
                ENDPOINT,
                CLAUDE,
                CHAT,
                {**config, "bedrock_provider": "meta"},
                resolver({}),
                httpx.AsyncClient(),
                1.0,
            )
        )


# ---- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequest),
        (403, PermissionDenied),
        (429, RequestLimitExceeded),
        (500, BadGateway),
        (503, TemporarilyUnavailable),
    ],
)
def test_bedrock_errors_become_ours(fake: FakeBedrock, status: int, error: type[ModelportError]) -> None:
    fake.fail(status, f"upstream says {status}")
    with pytest.raises(error) as caught:
        _ask("anthropic", CLAUDE, "chat", HELLO)
    assert type(caught.value) is error
    assert f"upstream says {status}" in caught.value.message and "'amazon-bedrock'" in caught.value.message
    if status in (429, 503):
        assert caught.value.retry_after == 1


def test_exception_frames_inside_the_stream_are_raised(fake: FakeBedrock) -> None:
    fake.stream_exception = "throttlingException"
    with pytest.raises(RequestLimitExceeded, match="fake throttlingException"):
        _ask("amazon", "amazon.titan-text-express-v1", "chat_stream", HELLO)
    fake.stream_exception = "internalServerException"
    with pytest.raises(BadGateway):
        _ask("anthropic", CLAUDE, "chat_stream", HELLO)


def test_a_corrupt_event_stream_is_a_bad_gateway(fake: FakeBedrock) -> None:
    fake.corrupt_stream = True
    with pytest.raises(BadGateway, match="malformed event stream"):
        _ask("anthropic", CLAUDE, "chat_stream", HELLO)


def test_stream_refusals_come_before_the_first_chunk(fake: FakeBedrock) -> None:
    fake.fail(429)
    with pytest.raises(RequestLimitExceeded):
        _ask("cohere", "cohere.command-r-v1:0", "chat_stream", HELLO)


def test_slow_bedrock_is_deadline_exceeded(fake: FakeBedrock) -> None:
    fake.faults.slow(2.0)
    with pytest.raises(DeadlineExceeded):
        _ask("anthropic", CLAUDE, "chat", HELLO, timeout=0.3)


def test_unreachable_bedrock_is_bad_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BASE_URLS, "bedrock", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BadGateway, match="Could not reach"):
        _ask("anthropic", CLAUDE, "chat", HELLO)
