"""Image parts of chat requests (``spec/images.py``): reading, limits, refusals, on plain data."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from modelport.errors import InvalidParameterValue
from modelport.spec.images import ImageLimits, check_images, image_of, media_type_of_url, refuse_images
from modelport.spec.llm import CHAT, check_request

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
DATA_URL = f"data:image/png;base64,{PNG}"


def _image(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def _chat(*parts: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "be brief"}, {"role": role, "content": list(parts)}]}


def test_a_data_url_is_read_with_its_media_type_and_payload() -> None:
    image = image_of(_image(DATA_URL, detail="low"), "messages[0].content[1]")
    assert (image.media_type, image.data, image.detail, image.inline) == ("image/png", PNG, "low", True)
    assert image.where == "messages[0].content[1]"


def test_an_https_url_is_read_with_the_media_type_of_its_extension() -> None:
    image = image_of(_image("https://example.com/a/cat.WEBP?size=2#x"), "p")
    assert (image.media_type, image.data, image.inline) == ("image/webp", None, False)
    assert media_type_of_url("https://example.com/photo") == "image/jpeg"
    assert media_type_of_url("https://example.com/x.png") == "image/png"


@pytest.mark.parametrize(
    ("part", "match"),
    [
        ({"type": "image_url"}, r"messages\[1\]\.content\[0\]\.image_url must be an object"),
        ({"type": "image_url", "image_url": "https://x.io/a.png"}, "must be an object"),
        (_image(""), r"image_url\.url is required"),
        (_image("http://example.com/cat.png"), "must be an https:// or gs:// URL or a data URL"),
        (_image("file:///etc/passwd"), "must be an https:// or gs:// URL"),
        (_image("https:///no-host.png"), "must be an https://"),
        (_image("data:image/png," + PNG), "without ';base64,'"),
        (_image("data:text/plain;base64,aGk="), "media type 'text/plain'"),
        (_image("data:;base64,aGk="), r"media type '\(none\)'"),
        (_image("data:image/png;base64,"), "with no data"),
        (_image("data:image/png;base64,not base64!"), "not valid base64"),
        (_image("data:image/png;base64,aGk"), "not valid base64"),  # missing padding
        (_image(DATA_URL, detail="huge"), "detail must be one of auto, low, high"),
    ],
)
def test_malformed_image_parts_are_400s_naming_the_part(part: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidParameterValue, match=match) as caught:
        check_images(_chat(part), ImageLimits())
    assert "messages[1].content[0]" in str(caught.value)


def test_images_are_allowed_in_user_messages_only() -> None:
    with pytest.raises(InvalidParameterValue, match=r"messages\[1\]\.content\[0\].*role 'assistant'"):
        check_images(_chat(_image(DATA_URL), role="assistant"), ImageLimits())


def test_the_count_limit_names_the_first_image_too_many() -> None:
    body = _chat({"type": "text", "text": "three"}, *[_image(DATA_URL)] * 3)
    assert len(check_images(body, ImageLimits(max_images=3))) == 3
    with pytest.raises(
        InvalidParameterValue, match=r"messages\[1\]\.content\[3\] is one image too many.*at most 2"
    ):
        check_images(body, ImageLimits(max_images=2))


def test_the_size_limit_counts_decoded_bytes() -> None:
    body = _chat(_image(DATA_URL))
    assert [i.media_type for i in check_images(body, ImageLimits(max_bytes=70))] == ["image/png"]
    with pytest.raises(InvalidParameterValue, match=r"image of 70 bytes: at most 69 bytes"):
        check_images(body, ImageLimits(max_bytes=69))


def test_a_payload_far_over_the_limit_is_refused_without_decoding() -> None:
    big = base64.b64encode(b"\x89PNG" + b"\0" * 10_000).decode()
    with pytest.raises(InvalidParameterValue, match=r"at most 100 bytes"):
        check_images(_chat(_image(f"data:image/png;base64,{big}")), ImageLimits(max_bytes=100))


def test_check_request_checks_images_of_chat_requests_when_given_limits() -> None:
    body = _chat(*[_image(DATA_URL)] * 2)
    check_request(body, CHAT)  # no limits: not checked here
    check_request(body, CHAT, images=ImageLimits(max_images=2))
    with pytest.raises(InvalidParameterValue, match="at most 1 images"):
        check_request(body, CHAT, images=ImageLimits(max_images=1))


def test_refuse_images_names_the_first_image_part() -> None:
    refuse_images(_chat({"type": "text", "text": "no images here"}), "model 'm'")
    refuse_images({"messages": "not a list"}, "model 'm'")  # its own check says what is wrong
    body = _chat({"type": "text", "text": "look"}, _image("https://example.com/cat.png"))
    with pytest.raises(
        InvalidParameterValue,
        match=r"messages\[1\]\.content\[1\] is an image, but AI21 model 'jamba' takes no images",
    ):
        refuse_images(body, "AI21 model 'jamba'")
