"""The fake OpenAI server answers what the official ``openai`` package expects, byte for byte
where it matters: its bodies validate against the package's types, and its clients
(``OpenAI``, ``AzureOpenAI``) work against it unchanged, streaming and errors included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.fakes.openai_server import API_KEY, AZURE_AD_TOKEN, AZURE_KEY, ENTRA, FakeOpenAI

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(fake: FakeOpenAI) -> None:
    fake.reset()


@pytest.fixture
def client(fake: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{fake.url}/v1", api_key=API_KEY, max_retries=0)


def post(fake: FakeOpenAI, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{fake.url}{path}", json=body, headers={"authorization": f"Bearer {API_KEY}", **headers}, timeout=10
    )


def sse_events(response: httpx.Response) -> list[Any]:
    """The data of each event; asserts the exact ``data: ...\\n\\n`` framing and the final [DONE]."""
    text = response.text
    assert text.endswith("data: [DONE]\n\n")
    blocks = text.split("\n\n")[:-1]
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), blocks
    return [orjson.loads(b[6:]) for b in blocks[:-1]]


def test_raw_bodies_validate_against_the_openai_types(fake: FakeOpenAI) -> None:
    chat = post(fake, "/v1/chat/completions", CHAT).json()
    ChatCompletion.model_validate(chat)
    assert chat["choices"][0]["message"]["content"] == "You said: hello there"
    assert chat["usage"] == {**chat["usage"], "prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}

    completion = post(fake, "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "a b"}).json()
    Completion.model_validate(completion)
    assert completion["choices"][0]["text"] == "Completed: a b"

    embeddings = post(fake, "/v1/embeddings", {"model": "text-embedding-3-small", "input": ["x", "y"]}).json()
    CreateEmbeddingResponse.model_validate(embeddings)
    assert [len(d["embedding"]) for d in embeddings["data"]] == [8, 8]

    stream = post(
        fake, "/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert stream.headers["content-type"].startswith("text/event-stream")
    chunks = [ChatCompletionChunk.model_validate(c) for c in sse_events(stream)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: hello there"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])

    plain = sse_events(post(fake, "/v1/completions", {"model": "m", "prompt": "a b", "stream": True}))
    # OpenAI's streamed completion chunks carry finish_reason null, which the Completion type
    # (used by the client without validation for chunks) does not admit; the last one validates.
    assert [c["choices"][0]["text"] for c in plain] == ["Completed:", " a", " b", ""]
    assert Completion.model_validate(plain[-1]).choices[0].finish_reason == "stop"
    assert all("usage" not in c for c in plain)


def test_the_openai_client_works_against_it(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == "You said: hi"
    streamed = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: one two"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4

    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x y z", max_tokens=2)
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == ("Completed: x", "length")

    # The client asks for base64 unless told otherwise and decodes it: same vector as floats.
    b64 = client.embeddings.create(model="text-embedding-3-small", input="same")
    floats = client.embeddings.create(model="text-embedding-3-small", input="same", encoding_format="float")
    assert b64.data[0].embedding == floats.data[0].embedding


def test_tools_and_json_mode(client: openai.OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    chat = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "find it"}],
        tools=[tool],  # type: ignore[list-item]
    )
    call = chat.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (chat.choices[0].finish_reason, call.function.name) == ("tool_calls", "lookup")  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"text": "find it"}  # type: ignore[union-attr]
    streamed = list(
        client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            tools=[tool],
            stream=True,  # type: ignore[list-item]
        )
    )
    assert streamed[-1].choices[0].finish_reason == "tool_calls"
    json_mode = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], response_format={"type": "json_object"}
    )
    assert orjson.loads(json_mode.choices[0].message.content or "") == {"said": "q"}


def test_azure_clients_with_key_ad_token_and_entra(fake: FakeOpenAI) -> None:
    messages = [{"role": "user", "content": "azure"}]
    with_key = openai.AzureOpenAI(
        azure_endpoint=fake.url, api_key=AZURE_KEY, api_version="2024-06-01", max_retries=0
    )
    answer = with_key.chat.completions.create(model="my-deployment", messages=messages)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: azure"
    assert answer.model == "my-deployment"
    seen = fake.last("/chat/completions")
    assert seen.path == "/openai/deployments/my-deployment/chat/completions"
    assert (seen.query, seen.headers["api-key"]) == ({"api-version": "2024-06-01"}, AZURE_KEY)

    ad = openai.AzureOpenAI(
        azure_endpoint=fake.url, azure_ad_token=AZURE_AD_TOKEN, api_version="2024-06-01", max_retries=0
    )
    assert ad.embeddings.create(model="emb", input="x").data[0].index == 0

    tenant, client_id, secret = ENTRA
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    form["scope"] = "https://cognitiveservices.azure.com/.default"
    token = httpx.post(f"{fake.url}/{tenant}/oauth2/v2.0/token", data=form).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3599
    entra = openai.AzureOpenAI(
        azure_endpoint=fake.url, azure_ad_token=token["access_token"], api_version="2024-06-01", max_retries=0
    )
    assert entra.completions.create(model="d", prompt="p").choices[0].text == "Completed: p"

    bad = httpx.post(f"{fake.url}/{tenant}/oauth2/v2.0/token", data={**form, "client_secret": "wrong"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    with pytest.raises(openai.AuthenticationError):
        openai.AzureOpenAI(
            azure_endpoint=fake.url, api_key="wrong", api_version="2024-06-01", max_retries=0
        ).chat.completions.create(model="d", messages=messages)  # type: ignore[arg-type]
    missing_version = httpx.post(
        f"{fake.url}/openai/deployments/d/chat/completions", json=CHAT, headers={"api-key": AZURE_KEY}
    )
    assert missing_version.status_code == 404


def test_errors_are_openai_errors(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        openai.OpenAI(base_url=f"{fake.url}/v1", api_key="sk-wrong", max_retries=0).chat.completions.create(
            **CHAT  # type: ignore[arg-type]
        )
    assert auth.value.code == "invalid_api_key"

    fake.faults.fail(429, "Rate limit reached for requests", headers={"retry-after": "7"})
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(**CHAT)  # type: ignore[arg-type]
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body == {
        "message": "Rate limit reached for requests",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }

    fake.faults.fail(500, "The server had an error")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**CHAT)  # type: ignore[arg-type]

    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(model="m", messages=[])
    assert missing.value.param == "messages"

    fake.faults.slow(0.5)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.1).chat.completions.create(**CHAT)  # type: ignore[arg-type]


def test_a_stream_can_be_cut_mid_way(fake: FakeOpenAI) -> None:
    fake.break_stream_after = 2
    with (
        httpx.stream(
            "POST",
            f"{fake.url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"authorization": f"Bearer {API_KEY}"},
        ) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        for _ in response.iter_bytes():
            pass
