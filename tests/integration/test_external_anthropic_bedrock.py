"""Anthropic and Amazon Bedrock end to end: a real ``modelport serve`` in front of their
loopback fakes, queried with the official ``openai`` client, the Databricks invocations path
and ``mlflow.deployments`` ("databricks" target: ``predict`` and ``predict_stream``).

The session's ``provider_server`` (``tests/integration/conftest.py``) has
``MODELPORT_ANTHROPIC_BASE_URL`` and ``MODELPORT_BEDROCK_BASE_URL`` pointed at the fakes (the
Bedrock fake verifies every SigV4 signature the server makes), and one endpoint per provider,
family and task (``tests/support/providers.py``). Plain chat, streamed chat and the
``mlflow.deployments`` chat and completions of these endpoints are in the tables of
``test_external_providers.py``.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from mlflow.deployments import BaseDeploymentClient

from tests.fakes import bedrock_server
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.providers import ProviderFakes, bedrock_model

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
COMPLETION_ENDPOINTS = ("claude-complete", "br-titan-complete")
EMBEDDING_ENDPOINTS = (("br-titan-embed", 1024), ("br-cohere-embed", 1024))


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


def test_provider_errors_reach_the_client(client: openai.OpenAI, fakes: ProviderFakes) -> None:
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
        "config": {"served_entities": [{"name": "e", "external_model": bedrock_model(family, model, task)}]},
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
