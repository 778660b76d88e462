"""The one place that turns exceptions into HTTP error responses.

A :class:`ModelportError` becomes ``{"error_code", "message"}`` with its status (and
``Retry-After`` when it has one). Anything else is a bug: it is logged with its
traceback and the client gets a generic 500 that carries the request id, never the trace.
"""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from modelport.errors import EndpointNotFound, MethodNotAllowed, ModelportError
from modelport.log_format import request_id_var

__all__ = ["error_response", "handle_exception", "handle_http_exception", "internal_error_response"]

log = logging.getLogger("modelport.api")


def error_response(exc: ModelportError) -> Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return Response(
        orjson.dumps(exc.to_body()), status_code=exc.status, headers=headers, media_type="application/json"
    )


def internal_error_response() -> Response:
    rid = request_id_var.get() or "unknown"
    body = {
        "error_code": "INTERNAL_ERROR",
        "message": f"Internal error while handling the request (request id {rid}); see the server log.",
    }
    return Response(orjson.dumps(body), status_code=500, media_type="application/json")


async def handle_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ModelportError):
        return error_response(exc)
    log.exception("unhandled error", extra={"path": request.url.path})
    return internal_error_response()


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(EndpointNotFound(f"No API found for '{request.method} {request.url.path}'."))
    if exc.status_code == 405:
        return error_response(
            MethodNotAllowed(f"Method {request.method} is not allowed for '{request.url.path}'.")
        )
    return error_response(ModelportError(str(exc.detail)))
