"""Reading request bodies (the one reader, for every route): size-limited, JSON objects validated
into spec models."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import Receive, Scope

from modelport.control.render import MASK, mask_credentials
from modelport.errors import InvalidParameterValue, MalformedRequest, RequestTooLarge

__all__ = ["MAX_BODY", "json_object", "parse", "read_body", "validate"]

#: The largest request body of any route (queries included).
MAX_BODY = 16 * 1024 * 1024
M = TypeVar("M", bound=BaseModel)


async def read_body(
    scope: Scope, receive: Receive, limit: int = MAX_BODY, *, what: str = "a request"
) -> bytes:
    """The whole body of a request, refused past ``limit`` bytes (by its ``content-length`` at once)
    with 413 ``REQUEST_TOO_LARGE``."""
    too_large = RequestTooLarge(
        f"Request body is larger than the {limit // (1024 * 1024)} MB limit of {what}."
    )
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedRequest("The client closed the connection before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object; ``{}`` for an empty body when not ``required``."""
    raw = await read_body(request.scope, request.receive)
    if not raw.strip():
        if required:
            raise MalformedRequest("Request body is empty; send a JSON object.")
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"Request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise MalformedRequest(f"Request body must be a JSON object, not {type(data).__name__}.")
    return data


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    # The input may hold an inline credential (a ``*_plaintext`` field): never echo one.
    given = mask_credentials(first.get("input"))
    shown = orjson.dumps(given).decode()[:80] if given is not None else "nothing"
    if any(str(p).endswith("_plaintext") for p in first["loc"]):
        shown = MASK
    more = len(err.errors()) - 1
    extra = f" ({more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"Invalid value for '{where}': {first['msg']} (got {shown}).{extra}"


def validate(model: type[M], data: dict[str, Any]) -> M:
    """Translate pydantic's errors into the API's error at the boundary."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise InvalidParameterValue(_describe(err)) from None


async def parse(request: Request, model: type[M], *, required: bool = True) -> M:
    return validate(model, await json_object(request, required=required))
