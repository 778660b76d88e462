"""The OpenAI-family providers (openai, Azure OpenAI, Entra, custom) against the loopback
OpenAI fake (itself checked against the official ``openai`` types in tests/fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from modelport.entities.providers import openai as openai_module
from modelport.entities.providers.base import ProviderContext
from modelport.entities.providers.custom import CustomProvider, base_url_of
from modelport.entities.providers.openai import OpenAIProvider
from modelport.errors import (
    BadGateway,
    BadRequest,
    DeadlineExceeded,
    InvalidState,
    PermissionDenied,
    RequestLimitExceeded,
    TemporarilyUnavailable,
)
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS
from tests.fakes.openai_server import API_KEY, AZURE_AD_TOKEN, AZURE_KEY, ENTRA, FakeOpenAI
from tests.integration.providers.contexts import BASE_URLS, ENDPOINT, ask, resolver
from tests.serverproc import free_port

HELLO = {"messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    fake_server.reset()
    return fake_server


def openai_config(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"openai_api_key_plaintext": API_KEY, "openai_api_base": f"{fake.url}/v1", **extra}


def azure_config(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {
        "openai_api_type": "azure",
        "openai_api_key_plaintext": AZURE_KEY,
        "openai_api_base": fake.url,
        "openai_deployment_name": "my-gpt",
        "openai_api_version": "2024-06-01",
        **extra,
    }


def entra_config(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    tenant, client_id, _ = ENTRA
    return {
        "openai_api_type": "azuread",
        "openai_api_base": fake.url,
        "openai_deployment_name": "my-gpt",
        "openai_api_version": "2024-06-01",
        "microsoft_entra_tenant_id": tenant,
        "microsoft_entra_client_id": client_id,
        "microsoft_entra_client_secret": "{{secrets/azure/entra}}",
        **extra,
    }


def ask_openai(method: str, body: dict[str, Any], config: dict[str, Any], task: str = CHAT, **kw: Any) -> Any:
    return ask(OpenAIProvider, method, body, model="gpt-4o-mini", task=task, config=config, **kw)


# ---- OpenAI --------------------------------------------------------------------------------------
def test_chat_answer_is_openais_with_the_endpoint_as_model(fake: FakeOpenAI) -> None:
    answer = ask_openai("chat", {**HELLO, "temperature": 0.2, "model": "ignored"}, openai_config(fake))
    parsed = ChatCompletion.model_validate(answer)
    assert parsed.model == ENDPOINT
    assert parsed.choices[0].message.content == "You said: hello there"
    assert answer["choices"][0]["finishReason"] == "stop"  # databricks-sdk reads the camelCase key
    sent = fake.last("/v1/chat/completions")
    assert sent.json() == {**HELLO, "temperature": 0.2, "model": "gpt-4o-mini"}
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"


def test_organization_header_and_extra_params(fake: FakeOpenAI) -> None:
    config = openai_config(fake, openai_organization="org-42")
    ask_openai("chat", {**HELLO, "extra_params": {"seed": 7}, "client_request_id": "r1"}, config)
    sent = fake.last("/v1/chat/completions")
    assert sent.headers["openai-organization"] == "org-42"
    assert sent.json() == {**HELLO, "seed": 7, "model": "gpt-4o-mini"}


def test_tools_tool_choice_and_response_format_pass_through(fake: FakeOpenAI) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    answer = ask_openai("chat", {**HELLO, "tools": [tool], "tool_choice": "auto"}, openai_config(fake))
    call = ChatCompletion.model_validate(answer).choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    assert fake.last().json()["tool_choice"] == "auto"
    json_mode = ask_openai("chat", {**HELLO, "response_format": {"type": "json_object"}}, openai_config(fake))
    assert json_mode["choices"][0]["message"]["content"] == '{"said":"hello there"}'


def test_chat_stream_asks_for_usage_and_names_the_endpoint(fake: FakeOpenAI) -> None:
    chunks = ask_openai("chat_stream", HELLO, openai_config(fake))
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert {c.model for c in parsed} == {ENDPOINT}
    assert "".join(c.choices[0].delta.content or "" for c in parsed if c.choices) == "You said: hello there"
    assert parsed[-1].usage is not None and parsed[-1].usage.total_tokens == 6
    assert fake.last().json()["stream_options"] == {"include_usage": True}


def test_completions_and_stream(fake: FakeOpenAI) -> None:
    answer = ask_openai("completions", {"prompt": "a b c", "max_tokens": 2}, openai_config(fake), COMPLETIONS)
    parsed = Completion.model_validate(answer)
    assert (parsed.model, parsed.choices[0].text, parsed.choices[0].finish_reason) == (
        ENDPOINT,
        "Completed: a",
        "length",
    )
    chunks = ask_openai("completions_stream", {"prompt": "x"}, openai_config(fake), COMPLETIONS)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Completed: x"


def test_embeddings_come_back_as_floats_in_input_order(fake: FakeOpenAI) -> None:
    body = {"input": ["one", "two"], "encoding_format": "base64", "dimensions": 4}
    answer = ask_openai("embeddings", body, openai_config(fake), EMBEDDINGS)
    parsed = CreateEmbeddingResponse.model_validate(answer)
    assert (parsed.model, [d.index for d in parsed.data]) == (ENDPOINT, [0, 1])
    assert all(len(d.embedding) == 4 for d in parsed.data)
    assert "encoding_format" not in fake.last().json()  # the gateway encodes, upstream sends floats


def test_default_base_url_comes_from_the_server_settings(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BASE_URLS, "openai", f"{fake.url}/v1")
    answer = ask_openai("chat", HELLO, {"openai_api_key_plaintext": API_KEY})
    assert answer["model"] == ENDPOINT
    assert fake.last().path == "/v1/chat/completions"


def test_keys_are_resolved_per_request_so_rotation_applies(fake: FakeOpenAI) -> None:
    secrets = {("llm", "openai"): "sk-old"}
    config = {"openai_api_key": "{{secrets/llm/openai}}", "openai_api_base": f"{fake.url}/v1"}
    with pytest.raises(PermissionDenied, match="Incorrect API key"):
        ask_openai("chat", HELLO, config, secrets=secrets)
    secrets[("llm", "openai")] = API_KEY
    assert ask_openai("chat", HELLO, config, secrets=secrets)["model"] == ENDPOINT


def test_missing_credentials_or_bad_api_type_are_invalid_state(fake: FakeOpenAI) -> None:
    with pytest.raises(InvalidState, match="no credentials"):
        ask_openai("chat", HELLO, {"openai_api_base": fake.url})
    with pytest.raises(InvalidState, match="openai_api_type"):
        ask_openai("chat", HELLO, openai_config(fake, openai_api_type="bogus"))
    with pytest.raises(InvalidState, match="openai_deployment_name"):
        ask_openai("chat", HELLO, {**azure_config(fake), "openai_deployment_name": None})


# ---- Azure OpenAI and Entra ----------------------------------------------------------------------
def test_azure_key_goes_in_the_api_key_header_and_the_deployment_in_the_path(fake: FakeOpenAI) -> None:
    answer = ask_openai("chat", HELLO, azure_config(fake))
    assert answer["choices"][0]["message"]["content"] == "You said: hello there"
    sent = fake.last()
    assert sent.path == "/openai/deployments/my-gpt/chat/completions"
    assert (sent.query, sent.headers["api-key"]) == ({"api-version": "2024-06-01"}, AZURE_KEY)
    assert "authorization" not in sent.headers and "model" not in sent.json()
    ask_openai("embeddings", {"input": "x"}, azure_config(fake), EMBEDDINGS)
    assert fake.last().path == "/openai/deployments/my-gpt/embeddings"
    chunks = ask_openai("completions_stream", {"prompt": "p"}, azure_config(fake), COMPLETIONS)
    assert fake.last().path == "/openai/deployments/my-gpt/completions" and chunks


def test_azuread_sends_the_key_as_a_bearer_token(fake: FakeOpenAI) -> None:
    config = azure_config(fake, openai_api_type="azuread", openai_api_key_plaintext=AZURE_AD_TOKEN)
    ask_openai("chat", HELLO, config)
    assert fake.last().headers["authorization"] == f"Bearer {AZURE_AD_TOKEN}"


def test_entra_client_credentials_token_is_fetched_once_and_reused(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BASE_URLS, "entra", fake.url)
    monkeypatch.setattr(openai_module, "ENTRA_TOKENS", openai_module.EntraTokens())
    before = fake.token_requests
    secrets = {("azure", "entra"): ENTRA[2]}
    config = entra_config(fake)

    async def twice() -> list[Any]:
        async with httpx.AsyncClient() as http:
            ctx = ProviderContext(ENDPOINT, "gpt", CHAT, config, resolver(secrets), http, 5.0, BASE_URLS)
            provider = OpenAIProvider(ctx)
            return [await provider.chat(HELLO), await provider.chat(HELLO)]

    answers = asyncio.run(twice())
    assert [a["choices"][0]["message"]["content"] for a in answers] == ["You said: hello there"] * 2
    assert fake.token_requests - before == 1
    token = fake.last("/token").body.decode()
    assert "grant_type=client_credentials" in token and "cognitiveservices.azure.com%2F.default" in token
    assert fake.last("/chat/completions").headers["authorization"].startswith("Bearer ")


def test_entra_refusal_is_permission_denied_with_entras_reason(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BASE_URLS, "entra", fake.url)
    with pytest.raises(PermissionDenied, match="AADSTS7000215"):
        ask_openai("chat", HELLO, entra_config(fake), secrets={("azure", "entra"): "wrong"})


# ---- provider errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (400, BadRequest, "BAD_REQUEST"),
        (401, PermissionDenied, "PERMISSION_DENIED"),
        (429, RequestLimitExceeded, "REQUEST_LIMIT_EXCEEDED"),
        (500, BadGateway, "BAD_GATEWAY"),
        (503, TemporarilyUnavailable, "TEMPORARILY_UNAVAILABLE"),
    ],
)
def test_provider_errors_become_ours_with_the_providers_message(
    fake: FakeOpenAI, status: int, error: type[Exception], code: str
) -> None:
    fake.faults.fail(status, f"upstream says {status}", headers={"retry-after": "7"})
    with pytest.raises(error) as caught:
        ask_openai("chat", HELLO, openai_config(fake))
    assert caught.value.error_code == code  # type: ignore[attr-defined]
    assert f"upstream says {status}" in str(caught.value) and "'openai'" in str(caught.value)
    if status in (429, 503):
        assert caught.value.retry_after == 7  # type: ignore[attr-defined]


def test_a_slow_provider_is_deadline_exceeded(fake: FakeOpenAI) -> None:
    fake.faults.slow(1.0)
    with pytest.raises(DeadlineExceeded, match=r"within 0\.2s"):
        ask_openai("chat", HELLO, openai_config(fake), timeout=0.2)


def test_an_unreachable_provider_is_bad_gateway() -> None:
    config = {"openai_api_key_plaintext": API_KEY, "openai_api_base": f"http://127.0.0.1:{free_port()}/v1"}
    with pytest.raises(BadGateway, match="Could not reach provider 'openai'"):
        ask_openai("chat", HELLO, config)


def test_a_stream_cut_mid_way_is_bad_gateway(fake: FakeOpenAI) -> None:
    fake.break_stream_after = 2
    with pytest.raises(BadGateway, match="broke off"):
        ask_openai("chat_stream", HELLO, openai_config(fake))


# ---- custom (any OpenAI-compatible server) -------------------------------------------------------
def test_custom_base_url_of() -> None:
    assert base_url_of("http://h:8000/v1/") == "http://h:8000/v1"
    assert base_url_of("http://h:8000/v1/chat/completions") == "http://h:8000/v1"
    assert base_url_of("http://h/v1/embeddings") == "http://h/v1"


def test_custom_provider_with_bearer_and_api_key_auth(fake: FakeOpenAI) -> None:
    config = {"custom_provider_url": f"{fake.url}/v1", "bearer_token_auth": {"token": "{{secrets/s/k}}"}}
    answer = ask(
        CustomProvider, "chat", HELLO, model="llama", task=CHAT, config=config, secrets={("s", "k"): API_KEY}
    )
    assert answer["model"] == ENDPOINT and fake.last().json()["model"] == "llama"

    chunks = ask(
        CustomProvider,
        "chat_stream",
        HELLO,
        model="llama",
        task=CHAT,
        config=config,
        secrets={("s", "k"): API_KEY},
    )
    assert "stream_options" not in fake.last().json()  # only what the caller sent
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == "You said: hello there"
    )

    keyed = {
        "custom_provider_url": f"{fake.url}/v1/chat/completions",
        "api_key_auth": {"key": "x-api-key", "value_plaintext": "v1"},
    }
    with pytest.raises(
        PermissionDenied
    ):  # the fake wants a bearer token: the header went, the key was refused
        ask(CustomProvider, "embeddings", {"input": "x"}, model="e", task=EMBEDDINGS, config=keyed)
    assert fake.last().headers["x-api-key"] == "v1" and fake.last().path == "/v1/embeddings"
