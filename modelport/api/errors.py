"""The one place that turns exceptions into HTTP error responses, for every route.

A :class:`ModelportError` becomes ``{"error_code", "message"}`` with its status, ``Retry-After``
when it has one, and ``x-should-retry: false`` on a 501 (the openai client retries every 5xx
unless told not to). Anything else is a bug: it is logged with its traceback and the client gets
a generic 500 that carries the request id, never the trace. One family of foreign errors has a
meaning for the client and is translated here (:func:`translated`): the metadata store
unreachable (``store/connectivity.py``) becomes 503 ``TEMPORARILY_UNAVAILABLE`` with
``Retry-After``. The Starlette routes get a
:class:`~starlette.responses.Response` (:func:`error_response`); the data plane's raw ASGI path
sends the same bytes (:func:`send_error`); a stream that fails after it began sends the same body
as its last event (:func:`error_event_body`).
"""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Send

from modelport.errors import EndpointNotFound, MethodNotAllowed, ModelportError, TemporarilyUnavailable
from modelport.log_format import request_id_var
from modelport.store.connectivity import RETRY_AFTER_SECONDS, is_unreachable

__all__ = [
    "error_event_body",
    "error_headers",
    "error_response",
    "handle_exception",
    "handle_http_exception",
    "internal_error",
    "internal_error_response",
    "send_error",
    "translated",
]

log = logging.getLogger("modelport.api")


def internal_error(what: str = "handling the request") -> ModelportError:
    """The error a client gets for a bug of ours: a generic message with the request id."""
    rid = request_id_var.get() or "unknown"
    return ModelportError(f"Internal error while {what} (request id {rid}); see the server log.")


def translated(exc: BaseException) -> BaseException:
    """``exc``, or the :class:`ModelportError` a foreign error means for the client: the metadata
    store unreachable is a 503 with ``Retry-After`` (logged in one line, no traceback)."""
    if not isinstance(exc, ModelportError) and is_unreachable(exc):
        log.warning("metadata store unreachable: %s", str(exc).splitlines()[0] if str(exc) else type(exc))
        return TemporarilyUnavailable(
            "The metadata store is unreachable; retry later.", retry_after=RETRY_AFTER_SECONDS
        )
    return exc


def error_headers(exc: ModelportError) -> dict[str, str]:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.status == 501:
        headers["x-should-retry"] = "false"
    return headers


def error_response(exc: ModelportError) -> Response:
    return Response(
        orjson.dumps(exc.to_body()),
        status_code=exc.status,
        headers=error_headers(exc),
        media_type="application/json",
    )


def internal_error_response() -> Response:
    return error_response(internal_error())


async def send_error(
    send: Send, exc: BaseException, path: str = "", headers: dict[str, str] | None = None
) -> None:
    """Send the error answer of ``exc`` on a raw ASGI ``send`` (logging what is not ours), with
    ``headers`` besides its own (a 405's ``Allow``)."""
    exc = translated(exc)
    if not isinstance(exc, ModelportError):
        log.error("unhandled error", exc_info=exc, extra={"path": path})
        exc = internal_error()
    body = orjson.dumps(exc.to_body())
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in {**error_headers(exc), **(headers or {})}.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def error_event_body(exc: BaseException) -> dict[str, object]:
    """The ``{"error": {...}}`` event that ends a stream that failed after it began."""
    exc = translated(exc)
    if not isinstance(exc, ModelportError):
        log.error("unhandled error while streaming", exc_info=exc)
        exc = internal_error("streaming the answer")
    return {"error": exc.to_body()}


async def handle_exception(request: Request, exc: Exception) -> Response:
    ours = translated(exc)
    if isinstance(ours, ModelportError):
        return error_response(ours)
    log.exception("unhandled error", extra={"path": request.url.path})
    return internal_error_response()


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(EndpointNotFound(f"No API found for '{request.method} {request.url.path}'."))
    if exc.status_code == 405:
        response = error_response(
            MethodNotAllowed(f"Method {request.method} is not allowed for '{request.url.path}'.")
        )
        allow = (exc.headers or {}).get("Allow")
        if allow:  # RFC 9110: a 405 lists the methods the path takes
            response.headers["Allow"] = allow
        return response
    return error_response(ModelportError(str(exc.detail)))
