"""``image_url`` parts in each provider's wire format, and the 400s of models that take no
images: the pure translators, on plain data (no sockets)."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from modelport.entities.foundation.requests import parse
from modelport.entities.providers import ai21, cohere, gemini
from modelport.entities.providers.anthropic import messages_request
from modelport.entities.providers.base import ProviderContext
from modelport.entities.providers.bedrock_formats import family_for
from modelport.entities.providers.custom import CustomProvider
from modelport.entities.providers.openai import OpenAIProvider
from modelport.errors import InvalidParameterValue
from modelport.spec.llm import CHAT

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
DATA_URL = f"data:image/png;base64,{PNG}"
CAT = "https://example.com/pets/cat.jpg"


def _chat(*parts: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "what is this?"}, *parts]},
        ]
    }


def _image(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


BOTH = _chat(_image(DATA_URL, detail="high"), _image(CAT))


# ---- OpenAI, Azure OpenAI and OpenAI-compatible servers: as they are ------------------------------
@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (OpenAIProvider, {"openai_api_key": "k"}),
        (
            OpenAIProvider,
            {
                "openai_api_type": "azure",
                "openai_api_key": "k",
                "openai_api_base": "https://x.openai.azure.com",
                "openai_deployment_name": "gpt-4o",
                "openai_api_version": "2024-06-01",
            },
        ),
        (CustomProvider, {"custom_provider_url": "http://127.0.0.1:9/v1"}),
    ],
    ids=["openai", "azure", "custom"],
)
def test_openai_wires_send_image_parts_as_they_are(cls: type, config: dict[str, Any]) -> None:
    ctx = ProviderContext(
        endpoint="ep",
        model="gpt-4o",
        task=CHAT,
        config=config,
        resolve=lambda scope, key: "",
        http=httpx.AsyncClient(),
        timeout=5.0,
    )
    body = copy.deepcopy(BOTH)
    assert cls(ctx)._body(body)["messages"] == BOTH["messages"]


# ---- Anthropic and Claude on Bedrock --------------------------------------------------------------
def test_anthropic_gets_base64_and_url_sources() -> None:
    content = messages_request(BOTH)["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": CAT}},
    ]


def test_anthropic_refuses_media_types_it_does_not_take() -> None:
    with pytest.raises(InvalidParameterValue, match=r"messages\[1\]\.content\[1\].*image/bmp"):
        messages_request(_chat(_image("data:image/bmp;base64,Qk0=")))


def test_claude_on_bedrock_gets_base64_sources_and_refuses_urls() -> None:
    claude = family_for("amazon-bedrock", "anthropic", "anthropic.claude-3-5-sonnet-20240620-v1:0")
    body = claude.chat_body(_chat(_image(DATA_URL)))
    assert body["anthropic_version"] == "bedrock-2023-05-31"
    assert body["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    with pytest.raises(
        InvalidParameterValue, match=r"messages\[1\]\.content\[2\] is an image URL.*do not fetch"
    ):
        claude.chat_body(BOTH)


# ---- Gemini (Vertex AI and the Gemini API) --------------------------------------------------------
def test_gemini_gets_inline_data_and_file_data() -> None:
    body = _chat(
        _image(DATA_URL),
        _image(CAT),
        _image("https://example.com/chart.png?v=2"),
        _image("gs://bucket/scan.webp"),
    )
    parts = gemini.chat_to_gemini(body)["contents"][0]["parts"]
    assert parts == [
        {"text": "what is this?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": CAT}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/chart.png?v=2"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/scan.webp"}},
    ]


def test_gemini_names_a_malformed_image_part() -> None:
    with pytest.raises(InvalidParameterValue, match=r"messages\[1\]\.content\[1\]\.image_url\.url must be"):
        gemini.chat_to_gemini(_chat(_image("ftp://example.com/cat.png")))


# ---- models that take no images -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("translate", "who"),
    [
        (lambda body: ai21.chat_to_ai21(body, "jamba-mini"), "AI21 model 'jamba-mini'"),
        (lambda body: cohere.chat_to_cohere(body, "command-r"), "Cohere model 'command-r'"),
        (
            lambda body: family_for("amazon-bedrock", "amazon", "us.amazon.nova-lite-v1:0").chat_body(body),
            "Bedrock model 'us.amazon.nova-lite-v1:0'",
        ),
        (
            lambda body: family_for("amazon-bedrock", "amazon", "amazon.titan-text-express-v1").chat_body(
                body
            ),
            "Bedrock model 'amazon.titan-text-express-v1'",
        ),
        (
            lambda body: family_for("amazon-bedrock", "cohere", "cohere.command-r-v1:0").chat_body(body),
            "Bedrock model 'cohere.command-r-v1:0'",
        ),
        (
            lambda body: family_for("amazon-bedrock", "ai21labs", "ai21.jamba-1-5-mini-v1:0").chat_body(body),
            "Bedrock model 'ai21.jamba-1-5-mini-v1:0'",
        ),
    ],
    ids=["ai21", "cohere", "bedrock-nova", "bedrock-titan", "bedrock-cohere", "bedrock-jamba"],
)
def test_models_without_images_refuse_them_naming_the_part(translate: Any, who: str) -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        translate(_chat(_image(DATA_URL)))
    message = str(caught.value)
    assert message.startswith("messages[1].content[1] is an image, but ") and who in message
    assert "takes no images" in message


def test_cohere_vision_models_get_image_parts_as_they_are() -> None:
    out = cohere.chat_to_cohere(copy.deepcopy(BOTH), "command-a-vision-07-2025")
    assert out["messages"][1]["content"][1:] == [
        {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "high"}},
        {"type": "image_url", "image_url": {"url": CAT}},
    ]


def test_the_local_engine_refuses_images_naming_the_part() -> None:
    with pytest.raises(
        InvalidParameterValue, match=r"messages\[1\]\.content\[1\] is an image.*reads text only"
    ):
        parse(_chat(_image(DATA_URL)), CHAT)
