"""Images in chat requests end to end: a real ``modelport serve`` in front of the provider
fakes, queried with the official ``openai`` client and over ``/invocations``.

An ``image_url`` part (a tiny PNG as a data URL, and an https URL) must reach each provider
in its own wire format: OpenAI and Azure OpenAI as it is, Anthropic as ``image`` blocks,
Gemini (Vertex AI and the Gemini API) as ``inlineData`` / ``fileData`` parts, Claude on
Bedrock as base64 ``image`` blocks (an URL there is our 400). Each fake checks the shape as
its real API does and records what it got; the tests read both. The module's server has
small image limits (``--max-image-bytes``, ``--max-images-per-request``) so the limits are
tested with small bodies; models that take no images answer 400 naming the part.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import anthropic_server, vertex_server
from tests.fakes.openai_server import API_KEY, AZURE_KEY, image_urls
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.providers import CLAUDE, ProviderFakes, bedrock_model, create_external

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
DATA_URL = f"data:image/png;base64,{PNG}"
CAT = "https://images.example.com/pets/cat.jpg"
#: The server's limits: 70 bytes is the PNG above, decoded.
MAX_IMAGE_BYTES = 256
MAX_IMAGES = 3


def _image(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def _messages(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, *parts]}]


def _endpoints(fakes: ProviderFakes) -> dict[str, dict[str, Any]]:
    chat = "llm/v1/chat"
    azure = {
        "openai_api_type": "azure",
        "openai_api_key_plaintext": AZURE_KEY,
        "openai_api_base": fakes.openai.url,
        "openai_deployment_name": "gpt-4o-vision",
        "openai_api_version": "2024-06-01",
    }
    vertex = {
        "project_id": "proj-1",
        "region": "us-central1",
        "private_key_plaintext": json.dumps(fakes.google.new_service_account()),
    }
    return {
        "mm-openai": {
            "provider": "openai",
            "name": "gpt-4o",
            "task": chat,
            "openai_config": {"openai_api_key_plaintext": API_KEY},
        },
        "mm-azure": {"provider": "openai", "name": "gpt-4o", "task": chat, "openai_config": azure},
        "mm-claude": {"provider": "anthropic", "name": "claude-opus-4-7", "task": chat, **CLAUDE},
        "mm-vertex": {
            "provider": "google-cloud-vertex-ai",
            "name": "gemini-2.0-flash",
            "task": chat,
            "google_cloud_vertex_ai_config": vertex,
        },
        "mm-gemini": {
            "provider": "palm",
            "name": "gemini-2.0-flash",
            "task": chat,
            "palm_config": {"palm_api_key_plaintext": vertex_server.API_KEY},
        },
        "mm-br-claude": bedrock_model("anthropic", "anthropic.claude-3-5-sonnet-20240620-v1:0", chat),
        "mm-ai21": {
            "provider": "ai21labs",
            "name": "jamba-mini",
            "task": chat,
            "ai21labs_config": {"ai21labs_api_key_plaintext": "ai21-test-key"},
        },
        "mm-br-nova": bedrock_model("amazon", "us.amazon.nova-lite-v1:0", chat),
    }


@pytest.fixture(scope="module")
def fakes() -> Iterator[ProviderFakes]:
    started = ProviderFakes()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def mm_server(fakes: ProviderFakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("modelport-multimodal"),
        env=fakes.env(),
        extra_args=[
            "--max-image-bytes",
            str(MAX_IMAGE_BYTES),
            "--max-images-per-request",
            str(MAX_IMAGES),
        ],
    ).start()
    try:
        with httpx.Client(
            base_url=proc.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        ) as http:
            for name, ext in _endpoints(fakes).items():
                create_external(http, name, ext)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(mm_server: ServerProcess, fakes: ProviderFakes) -> openai.OpenAI:
    fakes.reset()
    return openai.OpenAI(base_url=f"{mm_server.url}/serving-endpoints", api_key=ADMIN_TOKEN, max_retries=0)


@pytest.fixture
def http(mm_server: ServerProcess, fakes: ProviderFakes) -> Iterator[httpx.Client]:
    fakes.reset()
    with httpx.Client(
        base_url=mm_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as client:
        yield client


def _bad_request(client: openai.OpenAI, endpoint: str, messages: list[dict[str, Any]]) -> str:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=endpoint, messages=messages)  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict) and body.get("error_code") == "INVALID_PARAMETER_VALUE", body
    return str(body["message"])


# ---- each provider gets its own wire format -------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["mm-openai", "mm-azure"])
def test_openai_and_azure_get_image_parts_as_they_are(
    endpoint: str, client: openai.OpenAI, fakes: ProviderFakes
) -> None:
    messages = _messages(_image(DATA_URL, detail="low"), _image(CAT))
    answer = client.chat.completions.create(model=endpoint, messages=messages)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: what is this? [image_url] [image_url]"
    sent = json.loads(fakes.openai.last("/chat/completions").body)
    assert image_urls(sent) == [{"url": DATA_URL, "detail": "low"}, {"url": CAT}]
    assert sent["messages"] == messages


def test_anthropic_gets_base64_and_url_image_blocks(client: openai.OpenAI, fakes: ProviderFakes) -> None:
    answer = client.chat.completions.create(
        model="mm-claude",
        messages=_messages(_image(DATA_URL), _image(CAT)),  # type: ignore[arg-type]
    )
    assert answer.choices[0].message.content == "You said: what is this? [image base64] [image url]"
    assert anthropic_server.image_blocks(fakes.anthropic.last) == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": CAT}},
    ]


def test_anthropic_streams_an_answer_about_an_image(client: openai.OpenAI, fakes: ProviderFakes) -> None:
    chunks = client.chat.completions.create(
        model="mm-claude",
        messages=_messages(_image(DATA_URL)),  # type: ignore[arg-type]
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: what is this? [image base64]"
    assert fakes.anthropic.last["stream"] is True
    assert len(anthropic_server.image_blocks(fakes.anthropic.last)) == 1


def test_the_anthropic_fake_refuses_an_image_whose_data_is_not_its_media_type(fakes: ProviderFakes) -> None:
    """The fake is as strict as the API: the server cannot be passing a wrong shape unnoticed."""
    gif_labelled_png = {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": PNG}}
    body = {
        "model": "claude-opus-4-7",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": [gif_labelled_png]}],
    }
    headers = {"x-api-key": anthropic_server.API_KEY, "anthropic-version": anthropic_server.VERSION}
    refused = httpx.post(f"{fakes.anthropic.url}/v1/messages", json=body, headers=headers)
    assert refused.status_code == 400 and "does not match the provided media type" in refused.text
    unknown = {**body, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}
    refused = httpx.post(f"{fakes.anthropic.url}/v1/messages", json=unknown, headers=headers)
    assert refused.status_code == 400 and "Input tag 'image_url'" in refused.text


@pytest.mark.parametrize(("endpoint", "route"), [("mm-vertex", "vertex"), ("mm-gemini", "gemini")])
def test_gemini_gets_inline_data_and_file_data(
    endpoint: str, route: str, client: openai.OpenAI, fakes: ProviderFakes
) -> None:
    answer = client.chat.completions.create(
        model=endpoint,
        messages=_messages(_image(DATA_URL), _image(CAT)),  # type: ignore[arg-type]
    )
    assert answer.choices[0].message.content == f"echo: [fileData image/jpeg {CAT}]"
    sent = fakes.google.requests[-1]
    assert sent["route"] == route
    assert vertex_server.image_parts(sent["json"]) == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": CAT}},
    ]


def test_claude_on_bedrock_gets_base64_image_blocks(http: httpx.Client, fakes: ProviderFakes) -> None:
    got = http.post(
        "/serving-endpoints/mm-br-claude/invocations", json={"messages": _messages(_image(DATA_URL))}
    )
    assert got.status_code == 200, got.text
    assert got.json()["choices"][0]["message"]["content"] == "You said: what is this? [image base64]"
    assert fakes.bedrock.received[-1].path.endswith("/invoke")
    assert anthropic_server.image_blocks(fakes.bedrock.last) == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    ]


def test_an_image_url_for_claude_on_bedrock_is_a_400_and_never_fetched(
    client: openai.OpenAI, fakes: ProviderFakes
) -> None:
    message = _bad_request(client, "mm-br-claude", _messages(_image(CAT)))
    assert message.startswith("messages[0].content[1] is an image URL") and "data URL" in message
    assert fakes.bedrock.received == []


# ---- limits and refusals --------------------------------------------------------------------------
def test_an_image_over_the_size_limit_is_a_400(client: openai.OpenAI, fakes: ProviderFakes) -> None:
    big = base64.b64encode(base64.b64decode(PNG) + b"\0" * MAX_IMAGE_BYTES).decode()
    message = _bad_request(client, "mm-openai", _messages(_image(f"data:image/png;base64,{big}")))
    assert f"messages[0].content[1] is an image of {70 + MAX_IMAGE_BYTES} bytes" in message
    assert f"at most {MAX_IMAGE_BYTES} bytes" in message
    assert fakes.openai.requests == []


def test_more_images_than_allowed_is_a_400(client: openai.OpenAI, fakes: ProviderFakes) -> None:
    answer = client.chat.completions.create(
        model="mm-claude",
        messages=_messages(*[_image(DATA_URL)] * MAX_IMAGES),  # type: ignore[arg-type]
    )
    assert answer.choices[0].message.content is not None
    too_many = _messages(*[_image(DATA_URL)] * (MAX_IMAGES + 1))
    message = _bad_request(client, "mm-claude", too_many)
    assert message.startswith(f"messages[0].content[{MAX_IMAGES + 1}] is one image too many")
    assert len(fakes.anthropic.received) == 1


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("data:text/plain;base64,aGk=", "media type 'text/plain'"),
        ("http://images.example.com/cat.jpg", "must be an https:// or gs:// URL"),
    ],
)
def test_malformed_image_parts_are_400s(
    url: str, says: str, client: openai.OpenAI, fakes: ProviderFakes
) -> None:
    message = _bad_request(client, "mm-vertex", _messages(_image(url)))
    assert message.startswith("messages[0].content[1]") and says in message
    assert fakes.google.requests == []


@pytest.mark.parametrize(
    ("endpoint", "model"),
    [("mm-ai21", "AI21 model 'jamba-mini'"), ("mm-br-nova", "Bedrock model 'us.amazon.nova-lite-v1:0'")],
)
def test_a_model_that_takes_no_images_is_a_400_naming_the_part(
    endpoint: str, model: str, client: openai.OpenAI, fakes: ProviderFakes
) -> None:
    message = _bad_request(client, endpoint, _messages(_image(DATA_URL)))
    assert message.startswith(f"messages[0].content[1] is an image, but {model}")
    assert "takes no images" in message
    assert fakes.ai21.requests == [] and fakes.bedrock.received == []
