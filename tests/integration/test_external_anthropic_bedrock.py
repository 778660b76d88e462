"""Anthropic and Amazon Bedrock end to end: a real ``modelport serve`` in front of their
loopback fakes, queried with the official ``openai`` client, the Databricks invocations path
and ``mlflow.deployments`` ("databricks" target: ``predict`` and ``predict_stream``).

One server for the module, with ``MODELPORT_ANTHROPIC_BASE_URL`` and
``MODELPORT_BEDROCK_BASE_URL`` pointed at the fakes (the Bedrock fake verifies every SigV4
signature the server makes), and one endpoint per provider, family and task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from mlflow.deployments import BaseDeploymentClient, get_deploy_client

from tests.fakes import anthropic_server, bedrock_server
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.bedrock_server import FakeBedrock
from tests.serverproc import ADMIN_TOKEN, ServerProcess

pytestmark = pytest.mark.slow

API = "/api/2.0/serving-endpoints"
HELLO = [{"role": "user", "content": "hello there"}]
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
AWS = {
    "aws_region": bedrock_server.REGION,
    "aws_access_key_id_plaintext": bedrock_server.ACCESS_KEY_ID,
    "aws_secret_access_key_plaintext": bedrock_server.SECRET_ACCESS_KEY,
}
CLAUDE = {"anthropic_config": {"anthropic_api_key_plaintext": anthropic_server.API_KEY}}


def _bedrock(family: str, model: str, task: str, **aws: str) -> dict[str, Any]:
    config = {**AWS, "bedrock_provider": family, **aws}
    return {"provider": "amazon-bedrock", "name": model, "task": task, "amazon_bedrock_config": config}


ENDPOINTS: dict[str, dict[str, Any]] = {
    "claude-chat": {"provider": "anthropic", "name": "claude-opus-4-7", "task": "llm/v1/chat", **CLAUDE},
    "claude-complete": {
        "provider": "anthropic",
        "name": "claude-opus-4-7",
        "task": "llm/v1/completions",
        **CLAUDE,
    },
    "br-claude": _bedrock("anthropic", "anthropic.claude-3-5-sonnet-20240620-v1:0", "llm/v1/chat"),
    "br-nova": _bedrock("amazon", "us.amazon.nova-lite-v1:0", "llm/v1/chat"),
    "br-command-r": _bedrock("cohere", "cohere.command-r-v1:0", "llm/v1/chat"),
    "br-jamba": _bedrock("ai21labs", "ai21.jamba-1-5-mini-v1:0", "llm/v1/chat"),
    "br-titan-complete": _bedrock("amazon", "amazon.titan-text-express-v1", "llm/v1/completions"),
    "br-titan-embed": _bedrock("amazon", "amazon.titan-embed-text-v2:0", "llm/v1/embeddings"),
    "br-cohere-embed": _bedrock("cohere", "cohere.embed-english-v3", "llm/v1/embeddings"),
    "br-wrong-key": _bedrock(
        "anthropic",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "llm/v1/chat",
        aws_secret_access_key_plaintext="nope",
    ),
}
CHAT_ENDPOINTS = ("claude-chat", "br-claude", "br-nova", "br-command-r", "br-jamba")
COMPLETION_ENDPOINTS = ("claude-complete", "br-titan-complete")
EMBEDDING_ENDPOINTS = (("br-titan-embed", 1024), ("br-cohere-embed", 1024))


class Fakes:
    def __init__(self) -> None:
        self.anthropic = FakeAnthropic().start()
        self.bedrock = FakeBedrock().start()

    def reset(self) -> None:
        self.anthropic.reset()
        self.bedrock.reset()

    def stop(self) -> None:
        self.anthropic.stop()
        self.bedrock.stop()


def _create(http: httpx.Client, name: str, ext: dict[str, Any]) -> None:
    body = {"name": name, "config": {"served_entities": [{"name": f"{name}-e", "external_model": ext}]}}
    created = http.post(API, json=body)
    assert created.status_code == 200, created.text
    deadline = time.monotonic() + 30
    while (state := http.get(f"{API}/{name}").json()["state"])["config_update"] == "IN_PROGRESS":
        assert time.monotonic() < deadline, f"{name} still updating"
        time.sleep(0.05)
    assert state["config_update"] == "NOT_UPDATING", state


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    started = Fakes()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def provider_server(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "MODELPORT_ANTHROPIC_BASE_URL": fakes.anthropic.url,
        "MODELPORT_BEDROCK_BASE_URL": fakes.bedrock.url,
    }
    proc = ServerProcess(tmp_path_factory.mktemp("modelport-anthropic-bedrock"), env=env).start()
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=proc.url, headers=headers, timeout=30) as http:
            for name, ext in ENDPOINTS.items():
                _create(http, name, ext)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(provider_server: ServerProcess, fakes: Fakes) -> openai.OpenAI:
    fakes.reset()
    return openai.OpenAI(
        base_url=f"{provider_server.url}/serving-endpoints", api_key=ADMIN_TOKEN, max_retries=0
    )


@pytest.fixture
def databricks(
    provider_server: ServerProcess, fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> BaseDeploymentClient:
    fakes.reset()
    monkeypatch.setenv("DATABRICKS_HOST", provider_server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", ADMIN_TOKEN)
    return get_deploy_client("databricks")


@pytest.mark.parametrize("endpoint", CHAT_ENDPOINTS)
def test_chat(endpoint: str, client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=endpoint, messages=HELLO, max_tokens=50)  # type: ignore[arg-type]
    assert answer.model == endpoint
    assert answer.choices[0].message.content == "You said: hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 4


@pytest.mark.parametrize("endpoint", CHAT_ENDPOINTS)
def test_streaming_chat(endpoint: str, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=endpoint,
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("endpoint", ["claude-chat", "br-claude"])
def test_tool_calls_round_trip(endpoint: str, client: openai.OpenAI) -> None:
    asked = [{"role": "user", "content": "weather in Paris?"}]
    answer = client.chat.completions.create(model=endpoint, messages=asked, tools=TOOLS)  # type: ignore[arg-type]
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "city-value"}  # type: ignore[union-attr]
    result = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    follow = [*asked, choice.message.model_dump(exclude_none=True), result]
    again = client.chat.completions.create(model=endpoint, messages=follow, tools=TOOLS)  # type: ignore[arg-type]
    assert again.choices[0].message.content == "Tool said: sunny"


def test_completions(client: openai.OpenAI) -> None:
    for endpoint in COMPLETION_ENDPOINTS:
        answer = client.completions.create(model=endpoint, prompt="say this", max_tokens=10)
        assert answer.choices[0].text == "You said: say this"
        assert answer.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("endpoint", "dims"), EMBEDDING_ENDPOINTS)
def test_embeddings(endpoint: str, dims: int, client: openai.OpenAI) -> None:
    # openai asks for base64 unless told otherwise; the server encodes, the client decodes.
    answer = client.embeddings.create(model=endpoint, input=["a b", "c"])
    expected = [bedrock_server.vector(t, dims) for t in ("a b", "c")]
    assert [[round(x, 4) for x in d.embedding] for d in answer.data] == expected
    assert answer.usage.prompt_tokens == 3


@pytest.mark.parametrize("endpoint", CHAT_ENDPOINTS)
def test_mlflow_predict_and_predict_stream_chat(endpoint: str, databricks: BaseDeploymentClient) -> None:
    answer = databricks.predict(endpoint=endpoint, inputs={"messages": HELLO, "max_tokens": 50})
    assert answer["choices"][0]["message"]["content"] == "You said: hello there"
    chunks = list(databricks.predict_stream(endpoint=endpoint, inputs={"messages": HELLO}))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "You said: hello there"


@pytest.mark.parametrize("endpoint", COMPLETION_ENDPOINTS)
def test_mlflow_predict_and_predict_stream_completions(
    endpoint: str, databricks: BaseDeploymentClient
) -> None:
    answer = databricks.predict(endpoint=endpoint, inputs={"prompt": "say this", "max_tokens": 10})
    assert answer["choices"][0]["text"] == "You said: say this"
    chunks = list(databricks.predict_stream(endpoint=endpoint, inputs={"prompt": "say this"}))
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "You said: say this"


@pytest.mark.parametrize(("endpoint", "dims"), EMBEDDING_ENDPOINTS)
def test_mlflow_predict_embeddings(endpoint: str, dims: int, databricks: BaseDeploymentClient) -> None:
    answer = databricks.predict(endpoint=endpoint, inputs={"input": ["a b", "c"]})
    expected = [bedrock_server.vector(t, dims) for t in ("a b", "c")]
    assert [[round(x, 4) for x in d["embedding"]] for d in answer["data"]] == expected


def test_databricks_invocations_path(provider_server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"messages": HELLO, "max_tokens": 20}
    answer = httpx.post(
        f"{provider_server.url}/serving-endpoints/br-nova/invocations", json=body, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["served-model-name"] == "br-nova-e"
    assert answer.json()["choices"][0]["finishReason"] == "stop"


def test_provider_errors_reach_the_client(client: openai.OpenAI, fakes: Fakes) -> None:
    fakes.anthropic.faults.fail(529, "Overloaded")
    with pytest.raises(openai.InternalServerError, match="Overloaded") as overloaded:
        client.chat.completions.create(model="claude-chat", messages=HELLO)  # type: ignore[arg-type]
    assert overloaded.value.status_code == 503
    fakes.bedrock.fail(429, "Too many requests, please wait before trying again.")
    with pytest.raises(openai.RateLimitError, match="Too many requests"):
        client.chat.completions.create(model="br-claude", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.PermissionDeniedError, match="signature we calculated does not match"):
        client.chat.completions.create(model="br-wrong-key", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.APIStatusError) as no_embeddings:
        client.embeddings.create(model="claude-chat", input="x")
    assert no_embeddings.value.status_code in (400, 501)


@pytest.mark.parametrize(
    ("family", "model", "task", "offers"),
    [
        (
            "anthropic",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "llm/v1/embeddings",
            "llm/v1/chat, llm/v1/completions",
        ),
        ("amazon", "amazon.titan-embed-text-v2:0", "llm/v1/chat", "llm/v1/embeddings"),
    ],
)
def test_a_task_the_bedrock_model_lacks_is_refused_at_create(
    family: str, model: str, task: str, offers: str, provider_server: ServerProcess
) -> None:
    body = {
        "name": "br-refused",
        "config": {"served_entities": [{"name": "e", "external_model": _bedrock(family, model, task)}]},
    }
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    refused = httpx.post(f"{provider_server.url}{API}", json=body, headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": (
            "Invalid value for 'config.served_entities[0].external_model.task': provider 'amazon-bedrock' "
            f"with bedrock_provider '{family}' and model '{model}' does not offer {task}; it offers {offers}."
        ),
    }
