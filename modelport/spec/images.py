"""Image content parts of chat requests (``image_url``): reading, checking, limits. No I/O.

A chat message's ``content`` may be a list of parts; an image is OpenAI's part
``{"type": "image_url", "image_url": {"url": ..., "detail"?: "auto" | "low" | "high"}}``
whose ``url`` is either an ``https://`` URL (or a ``gs://`` URI, which only Gemini and
Vertex AI read) or a data URL (``data:image/png;base64,<base64>``). Images are allowed
in ``user`` messages only (as OpenAI allows them). The server never fetches an image URL
itself: a provider that cannot fetch one (Bedrock) is sent data URLs only.

- :func:`check_images` checks every image part of a request against :class:`ImageLimits`
  (how many, how big once decoded) and that each is well formed (``spec/llm.py``'s
  ``check_request`` calls it for chat requests of external models);
- :func:`image_of` reads one part as an :class:`Image`, which providers translate into
  their own wire format (``entities/providers``);
- :func:`refuse_images` is the 400 of a model that takes no images, naming the first part.

Every mistake is an :class:`~modelport.errors.InvalidParameterValue` naming the part as
``messages[i].content[j]``.
"""

from __future__ import annotations

import binascii
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from modelport.errors import InvalidParameterValue

__all__ = [
    "DETAILS",
    "MAX_IMAGES",
    "MAX_IMAGE_BYTES",
    "URL_SCHEMES",
    "Image",
    "ImageLimits",
    "check_images",
    "image_of",
    "image_parts",
    "media_type_of_url",
    "refuse_images",
]

#: Default limits: bytes of one image once decoded, and images in one request.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGES = 20
#: Schemes of image URLs a request may hold (each provider takes those it can fetch).
URL_SCHEMES = ("https", "gs")
#: The values ``image_url.detail`` may take (OpenAI's).
DETAILS = ("auto", "low", "high")
#: Media types of image URLs by file extension; an URL without a known one is ``image/jpeg``.
_EXTENSIONS = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
_MEDIA_TYPE = re.compile(r"image/[a-z0-9][a-z0-9.+-]*")


@dataclass(frozen=True)
class ImageLimits:
    """How many images one request may hold and how big each may be (decoded bytes)."""

    max_bytes: int = MAX_IMAGE_BYTES
    max_images: int = MAX_IMAGES


@dataclass(frozen=True)
class Image:
    """One ``image_url`` part, read: where it is, what it is, and its bytes if inline."""

    where: str  # "messages[i].content[j]", for messages about it
    url: str  # as the caller gave it
    media_type: str  # of a data URL as given; of an https URL guessed from its extension
    data: str | None  # the base64 payload of a data URL; None for an https URL
    detail: str | None  # image_url.detail as given

    @property
    def inline(self) -> bool:
        """Whether the image came as a data URL (its bytes are in :attr:`data`)."""
        return self.data is not None


def media_type_of_url(url: str) -> str:
    """The media type an image URL's file extension says (query and fragment ignored);
    ``image/jpeg`` when it says none."""
    path = urlsplit(url).path
    return _EXTENSIONS.get(posixpath.splitext(path)[1].lower(), "image/jpeg")


def _data_url(url: str, where: str) -> tuple[str, str]:
    """``(media type, base64 payload)`` of a data URL, or the 400 that says what is wrong."""
    head, comma, payload = url.partition(",")
    params = head[len("data:") :].split(";")
    media_type = params[0].strip().lower()
    if not comma or params[-1].strip().lower() != "base64":
        raise InvalidParameterValue(
            f"{where}.image_url.url is a data URL without ';base64,': send images as "
            "data:<media type>;base64,<data>."
        )
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise InvalidParameterValue(
            f"{where}.image_url.url is a data URL of media type {media_type or '(none)'!r}: "
            "an image's must be image/... (image/png, image/jpeg, image/gif, image/webp)."
        )
    if not payload:
        raise InvalidParameterValue(f"{where}.image_url.url is a data URL with no data.")
    return media_type, payload


def image_of(part: Mapping[str, Any], where: str, *, schemes: tuple[str, ...] = ("https",)) -> Image:
    """Read the ``image_url`` part ``part`` found at ``where`` (its shape and URL checked,
    its data not decoded). A URL that is no data URL must have one of ``schemes``
    (Gemini and Vertex AI read ``gs://`` URIs too)."""
    image = part.get("image_url")
    if not isinstance(image, Mapping):
        raise InvalidParameterValue(f"{where}.image_url must be an object with 'url'.")
    url = image.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidParameterValue(f"{where}.image_url.url is required: an https:// URL or a data URL.")
    detail = image.get("detail")
    if detail is not None and detail not in DETAILS:
        raise InvalidParameterValue(
            f"{where}.image_url.detail must be one of {', '.join(DETAILS)}; got {detail!r}."
        )
    if url[:5].lower() == "data:":
        media_type, payload = _data_url(url, where)
        return Image(where, url, media_type, payload, detail)
    split = urlsplit(url)
    if split.scheme.lower() not in schemes or not split.netloc:
        kinds = " or ".join(f"{scheme}://" for scheme in schemes)
        raise InvalidParameterValue(
            f"{where}.image_url.url must be an {kinds} URL or a data URL "
            f"(data:image/png;base64,...); got {url[:60]!r}."
        )
    return Image(where, url, media_type_of_url(url), None, detail)


def image_parts(body: Mapping[str, Any]) -> Iterator[tuple[int, int, Mapping[str, Any]]]:
    """``(i, j, part)`` of every ``image_url`` part of ``body``'s messages, in order (a body
    whose ``messages`` is not a list has none: its own check says what is wrong)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, Mapping) and part.get("type") == "image_url":
                yield i, j, part


def _decoded_size(image: Image, limit: int) -> int:
    assert image.data is not None
    # Base64 holds 3 bytes in 4 characters: a payload much longer than the limit is refused
    # before it is decoded.
    if len(image.data) > (limit // 3 + 2) * 4:
        return len(image.data) * 3 // 4 - (len(image.data) - len(image.data.rstrip("=")))
    try:
        return len(binascii.a2b_base64(image.data, strict_mode=True))
    except binascii.Error as exc:
        raise InvalidParameterValue(
            f"{image.where}.image_url.url is a data URL whose data is not valid base64 ({exc})."
        ) from None


def check_images(body: Mapping[str, Any], limits: ImageLimits) -> list[Image]:
    """Every image part of chat ``body``, checked: well formed, in a user message, at most
    ``limits.max_images`` of them and none bigger than ``limits.max_bytes`` decoded."""
    found: list[Image] = []
    messages = body.get("messages")
    for i, j, part in image_parts(body):
        where = f"messages[{i}].content[{j}]"
        role = messages[i].get("role")  # type: ignore[index]
        if role != "user":
            raise InvalidParameterValue(
                f"{where} is an image in a message of role {role!r}: "
                "images are allowed in user messages only."
            )
        if len(found) == limits.max_images:
            raise InvalidParameterValue(
                f"{where} is one image too many: a request may hold at most {limits.max_images} images."
            )
        image = image_of(part, where, schemes=URL_SCHEMES)
        if image.inline:
            size = _decoded_size(image, limits.max_bytes)
            if size > limits.max_bytes:
                raise InvalidParameterValue(
                    f"{where} is an image of {size} bytes: at most {limits.max_bytes} bytes "
                    "(decoded) are allowed per image."
                )
        found.append(image)
    return found


def refuse_images(body: Mapping[str, Any], model: str) -> None:
    """The 400 for a chat ``body`` with an image part sent to ``model`` (a description such
    as ``"AI21 model 'jamba-mini'"``), which takes no images; nothing when it has none."""
    for i, j, _ in image_parts(body):
        raise InvalidParameterValue(
            f"messages[{i}].content[{j}] is an image, but {model} takes no images: send text parts only."
        )
