"""Reading request bodies: JSON objects, size-limited, validated into spec models."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from modelport.control.render import MASK, mask_credentials
from modelport.errors import InvalidParameterValue, MalformedRequest

__all__ = ["MAX_CONTROL_BODY", "json_object", "parse"]

MAX_CONTROL_BODY = 16 * 1024 * 1024
M = TypeVar("M", bound=BaseModel)


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object; ``{}`` for an empty body when not ``required``."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_CONTROL_BODY:
            raise MalformedRequest(f"Request body is larger than {MAX_CONTROL_BODY // (1024 * 1024)} MB.")
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
