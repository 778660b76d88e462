"""External providers end to end: a real ``modelport serve`` in front of their loopback fakes,
queried with the official ``openai`` client and with ``mlflow.deployments`` ("databricks"
target: ``predict`` and ``predict_stream`` over ``/invocations``).

The session's ``provider_server`` (``tests/integration/conftest.py``) has its
``MODELPORT_*_BASE_URL`` variables pointed at the fakes (the Vertex key's ``token_uri``
points at the Google fake, so the server fetches real signed-JWT tokens from it), and one
endpoint per provider and task (``tests/support/providers.py``). The chat and completion
tables below cover every provider but the OpenAI family (``test_external_models.py``); the
rest of this module is Cohere, Vertex AI, PaLM (Gemini API) and AI21, and
``test_external_anthropic_bedrock.py`` has Anthropic's and Bedrock's own cases.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from mlflow.deployments import BaseDeploymentClient

from tests.fakes import cohere_server, vertex_server
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.providers import ProviderFakes, create_external

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
ECHO, YOU_SAID = "echo: ", "You said: "  # how the Cohere/Google/AI21 and Anthropic/Bedrock fakes answer
#: Every chat endpoint but the OpenAI family's: (name, the answer's prefix, completion tokens of HELLO).
CHATS = [
    *(pytest.param(name, ECHO, 3, id=name) for name in ("co-chat", "vx-chat", "palm-chat", "ai21-chat")),
    *(
        pytest.param(name, YOU_SAID, 4, id=name)
        for name in ("claude-chat", "br-claude", "br-nova", "br-command-r", "br-jamba")
    ),
]
#: Every completions endpoint but the OpenAI family's: (name, the answer's prefix).
COMPLETION_ENDPOINTS = ("co-complete", "vx-complete", "palm-complete", "ai21-complete")
COMPLETIONS = [
    *(pytest.param(name, ECHO, id=name) for name in COMPLETION_ENDPOINTS),
    *(pytest.param(name, YOU_SAID, id=name) for name in ("claude-complete", "br-titan-complete")),
]
#: Embeddings endpoints and the vectors their fake computes (AI21 has no embeddings).
EMBEDDING_ENDPOINTS = (
    ("co-embed", cohere_server.embedding_of),
    ("vx-embed", vertex_server.embedding_of),
    ("palm-embed", vertex_server.embedding_of),
)


# ---- every provider: one table -------------------------------------------------------------------
@pytest.mark.parametrize(("endpoint", "said", "tokens"), CHATS)
def test_chat(endpoint: str, said: str, tokens: int, client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=endpoint, messages=HELLO, max_tokens=50)  # type: ignore[arg-type]
    assert answer.model == endpoint
    assert answer.choices[0].message.content == f"{said}hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == tokens


@pytest.mark.parametrize(("endpoint", "said", "tokens"), CHATS)
def test_streaming_chat(endpoint: str, said: str, tokens: int, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=endpoint,
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"{said}hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == tokens


@pytest.mark.parametrize(("endpoint", "said", "tokens"), CHATS)
def test_mlflow_predict_and_predict_stream_chat(
    endpoint: str, said: str, tokens: int, databricks: BaseDeploymentClient
) -> None:
    answer = databricks.predict(endpoint=endpoint, inputs={"messages": HELLO, "max_tokens": 50})
    assert answer["choices"][0]["message"]["content"] == f"{said}hello there"
    chunks = list(databricks.predict_stream(endpoint=endpoint, inputs={"messages": HELLO}))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == f"{said}hello there"


@pytest.mark.parametrize(("endpoint", "said"), COMPLETIONS)
def test_mlflow_predict_and_predict_stream_completions(
    endpoint: str, said: str, databricks: BaseDeploymentClient
) -> None:
    answer = databricks.predict(endpoint=endpoint, inputs={"prompt": "say this", "max_tokens": 10})
    assert answer["choices"][0]["text"] == f"{said}say this"
    chunks = list(databricks.predict_stream(endpoint=endpoint, inputs={"prompt": "say this"}))
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == f"{said}say this"


# ---- Cohere, Vertex AI, PaLM and AI21 --------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["co-chat", "vx-chat"])
def test_tool_calls(endpoint: str, client: openai.OpenAI, fakes: ProviderFakes) -> None:
    fakes.cohere.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    fakes.google.function_call = {"name": "get_weather", "args": {"city": "Paris"}}
    answer = client.chat.completions.create(model=endpoint, messages=HELLO, tools=TOOLS)  # type: ignore[arg-type]
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]


@pytest.mark.parametrize(("endpoint", "embedding_of"), EMBEDDING_ENDPOINTS)
def test_embeddings(endpoint: str, embedding_of: Any, client: openai.OpenAI) -> None:
    # openai asks for base64 unless told otherwise; the server encodes, the client decodes.
    answer = client.embeddings.create(model=endpoint, input=["a b", "c"])
    assert [d.embedding for d in answer.data] == [embedding_of("a b"), embedding_of("c")]
    if endpoint != "palm-embed":  # the Gemini API does not count embedding tokens
        assert answer.usage.prompt_tokens == 3


@pytest.mark.parametrize("endpoint", COMPLETION_ENDPOINTS)
def test_completions(endpoint: str, client: openai.OpenAI) -> None:
    answer = client.completions.create(model=endpoint, prompt="say this", max_tokens=10)
    assert answer.choices[0].text == "echo: say this"
    assert answer.usage is not None and answer.usage.total_tokens == 5
    streamed = list(client.completions.create(model=endpoint, prompt="say this", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "echo: say this"


# ---- mlflow.deployments ("databricks" target) over /invocations -----------------------------------
@pytest.mark.parametrize(("endpoint", "embedding_of"), EMBEDDING_ENDPOINTS)
def test_mlflow_predict_embeddings(
    endpoint: str, embedding_of: Any, databricks: BaseDeploymentClient
) -> None:
    answer = databricks.predict(endpoint=endpoint, inputs={"input": ["a b", "c"]})
    assert [d["embedding"] for d in answer["data"]] == [embedding_of("a b"), embedding_of("c")]


def test_the_server_reuses_its_vertex_token(client: openai.OpenAI, fakes: ProviderFakes) -> None:
    for _ in range(3):
        client.chat.completions.create(model="vx-chat", messages=HELLO)  # type: ignore[arg-type]
    client.embeddings.create(model="vx-embed", input="x")
    # The key is shared by both endpoints; at most the server's first query fetched a token.
    assert len(fakes.google.token_requests) <= 1
    assert len({r["headers"]["authorization"] for r in fakes.google.requests}) == 1


def test_provider_errors_reach_the_client(client: openai.OpenAI, fakes: ProviderFakes) -> None:
    fakes.cohere.faults.fail(429, "slow down", headers={"retry-after": "2"})
    with pytest.raises(openai.RateLimitError, match="slow down"):
        client.chat.completions.create(model="co-chat", messages=HELLO)  # type: ignore[arg-type]
    fakes.ai21.faults.fail(401, "Forbidden: Bad or missing API token.")
    with pytest.raises(openai.PermissionDeniedError, match="Bad or missing API token"):
        client.chat.completions.create(model="ai21-chat", messages=HELLO)  # type: ignore[arg-type]
    fakes.google.faults.fail(500, "internal")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="vx-chat", messages=HELLO)  # type: ignore[arg-type]


def test_ai21_embeddings_are_refused_when_the_endpoint_is_created(provider_server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ext = {
        "provider": "ai21labs",
        "name": "jamba-mini",
        "task": "llm/v1/embeddings",
        "ai21labs_config": {"ai21labs_api_key_plaintext": "k"},
    }
    body = {"name": "ai21-embed", "config": {"served_entities": [{"name": "e", "external_model": ext}]}}
    with httpx.Client(base_url=provider_server.url, headers=headers, timeout=30) as http:
        refused = http.post(API, json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert (
            "provider 'ai21labs' does not offer llm/v1/embeddings; it offers llm/v1/chat, llm/v1/completions"
            in (refused.json()["message"])
        )
        assert http.get(f"{API}/ai21-embed").status_code == 404


def test_credentials_from_a_secret_scope(provider_server: ServerProcess, fakes: ProviderFakes) -> None:
    """A Cohere key and a Vertex service-account key stored as secrets and referenced."""
    fakes.reset()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    key_file = json.dumps(fakes.google.new_service_account())
    with httpx.Client(base_url=provider_server.url, headers=headers, timeout=30) as http:
        assert http.post("/api/2.0/secrets/scopes/create", json={"scope": "llm"}).status_code == 200
        for key, value in (("cohere", cohere_server.API_KEY), ("gcp", key_file)):
            put = http.post("/api/2.0/secrets/put", json={"scope": "llm", "key": key, "string_value": value})
            assert put.status_code == 200, put.text
        cohere: dict[str, Any] = {
            "provider": "cohere",
            "name": "command-r",
            "task": "llm/v1/chat",
            "cohere_config": {"cohere_api_key": "{{secrets/llm/cohere}}"},
        }
        vertex: dict[str, Any] = {
            "provider": "google-cloud-vertex-ai",
            "name": "gemini-2.0-flash",
            "task": "llm/v1/chat",
            "google_cloud_vertex_ai_config": {
                "project_id": "proj-2",
                "region": "europe-west4",
                "private_key": "{{secrets/llm/gcp}}",
            },
        }
        create_external(http, "co-secret", cohere)
        create_external(http, "vx-secret", vertex)
        try:
            for name in ("co-secret", "vx-secret"):
                answer = http.post(f"/serving-endpoints/{name}/invocations", json={"messages": HELLO})
                assert answer.status_code == 200, answer.text
                assert answer.json()["choices"][0]["message"]["content"] == "echo: hello there"
            assert fakes.cohere.requests[-1]["headers"]["authorization"] == f"Bearer {cohere_server.API_KEY}"
            assert fakes.google.requests[-1]["path"].startswith("/v1/projects/proj-2/locations/europe-west4/")
            assert len(fakes.google.token_requests) == 1
        finally:
            for name in ("co-secret", "vx-secret"):
                http.delete(f"{API}/{name}")
            http.post("/api/2.0/secrets/scopes/delete", json={"scope": "llm"})
