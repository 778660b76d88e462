"""HTTP to the providers, and every way it fails turned into one of our errors.

A provider's non-2xx answer becomes our error by :func:`provider_error`; a failure of the
transport itself (no connection, a broken stream, no answer in time) by
:func:`translate_transport_errors`, the one place that maps httpx's exceptions. The caller
sees the provider's own message with the provider named, never a bare 500.

==============================  =========================================================
provider answer                 modelport answer
==============================  =========================================================
400, 404, 413, 422              400 ``BAD_REQUEST`` (the provider's message)
401, 403                        403 ``PERMISSION_DENIED`` (the endpoint's credentials)
429                             429 ``REQUEST_LIMIT_EXCEEDED`` + ``Retry-After``
503, 529 (overloaded)           503 ``TEMPORARILY_UNAVAILABLE`` + ``Retry-After``
other 5xx, unreadable answer,   502 ``BAD_GATEWAY``
connection refused or broken
no answer within the timeout    504 ``DEADLINE_EXCEEDED``
==============================  =========================================================
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from modelport.errors import (
    BadGateway,
    BadRequest,
    DeadlineExceeded,
    ModelportError,
    PermissionDenied,
    RequestLimitExceeded,
    TemporarilyUnavailable,
)

if TYPE_CHECKING:
    from modelport.entities.providers.base import ProviderContext

__all__ = ["iter_sse", "json_of", "provider_error", "send", "translate_transport_errors"]

#: What a block that reads a provider's streamed answer says when the stream fails.
_STREAM_TIMEOUT = "The provider stopped sending its stream (timeout)."
_STREAM_BROKEN = "The provider's stream broke off"


@contextmanager
def translate_transport_errors(
    timeout: str = _STREAM_TIMEOUT, failure: str = _STREAM_BROKEN
) -> Iterator[None]:
    """Raise the httpx errors of the block as ours: a timeout (connect, read, write or pool)
    as :class:`DeadlineExceeded` (504) saying ``timeout``; any other transport or protocol
    error (refused, reset, a malformed answer) as :class:`BadGateway` (502) saying
    ``failure``, then ``": "`` and httpx's words. The defaults speak of a streamed answer
    that stopped coming. httpx's exception is not chained (its traceback names our request
    internals, not the caller's mistake)."""
    try:
        yield
    except httpx.TimeoutException:
        raise DeadlineExceeded(timeout) from None
    except httpx.HTTPError as exc:
        raise BadGateway(f"{failure}: {exc}") from None


def _message_of(body: bytes) -> str:
    """The human part of a provider's error body (OpenAI, Anthropic, Cohere, AWS, Google shapes)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace").strip()[:500]
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "Message", "detail"):
            if data.get(key):
                return str(data[key])
    return body.decode("utf-8", errors="replace").strip()[:500]


def _retry_after(headers: Mapping[str, str]) -> int:
    for key in ("retry-after", "x-ratelimit-reset-requests"):
        value = headers.get(key)
        if value:
            try:
                return max(1, int(float(value)))
            except ValueError:
                continue
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(1, int(float(ms) / 1000 + 0.999))
        except ValueError:
            pass
    return 1


def provider_error(provider: str, status: int, body: bytes, headers: Mapping[str, str]) -> ModelportError:
    """Our error for a provider's non-2xx answer (see the module docstring's table)."""
    detail = _message_of(body) or f"HTTP {status}"
    what = f"Provider '{provider}' answered HTTP {status}: {detail}"
    if status in (400, 404, 413, 422):
        return BadRequest(what)
    if status in (401, 403):
        return PermissionDenied(f"{what} (check the credentials configured on the endpoint)")
    if status == 429:
        return RequestLimitExceeded(what, retry_after=_retry_after(headers))
    if status in (503, 529):
        return TemporarilyUnavailable(what, retry_after=_retry_after(headers))
    return BadGateway(what)


async def send(
    ctx: ProviderContext,
    provider: str,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    content: bytes | None = None,
    stream: bool = False,
) -> httpx.Response:
    """One request to the provider; non-2xx answers and transport failures raise our errors.

    With ``stream=True`` the response is returned unread (the caller iterates and closes it).
    """
    data = orjson.dumps(json) if json is not None else content
    hdrs = dict(headers or {})
    if data is not None:
        hdrs = {"content-type": "application/json", **hdrs}
    request = ctx.http.build_request(method, url, headers=hdrs, content=data, timeout=ctx.timeout)
    host = request.url.host
    with translate_transport_errors(
        f"Provider '{provider}' did not answer within {ctx.timeout:g}s ({host}).",
        f"Could not reach provider '{provider}' at {host}",
    ):
        response = await ctx.http.send(request, stream=stream)
    if response.status_code >= 400:
        body = await response.aread()
        await response.aclose()
        raise provider_error(provider, response.status_code, body, response.headers)
    return response


def json_of(provider: str, response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise BadGateway(
            f"Provider '{provider}' answered with something that is not JSON: {response.text[:200]!r}"
        ) from None


async def iter_sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` pairs of a ``text/event-stream`` body (multi-line data joined by
    newlines; comments skipped). Closes the response when done."""
    event, data = "", []
    try:
        with translate_transport_errors():
            async for line in response.aiter_lines():
                if not line:
                    if data:
                        yield event or "message", "\n".join(data)
                    event, data = "", []
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
            if data:
                yield event or "message", "\n".join(data)
    finally:
        await response.aclose()
