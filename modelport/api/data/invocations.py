"""``POST /serving-endpoints/{name}/invocations`` and the per-entity variant (compat-api.md §B)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from modelport.api.data.streaming import EventStreamResponse, send_events
from modelport.api.errors import error_response, internal_error_response
from modelport.api.services import Services, caller_of, services_of
from modelport.errors import MalformedRequest, ModelportError
from modelport.gateway.dataplane import Answer
from modelport.spec.identity import Caller

log = logging.getLogger("modelport.api")

MAX_QUERY_BYTES = 16 * 1024 * 1024
_TOO_LARGE = f"Request body is larger than the {MAX_QUERY_BYTES // (1024 * 1024)} MB limit of a query."


async def request_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_QUERY_BYTES:
        raise MalformedRequest(_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_QUERY_BYTES:
            raise MalformedRequest(_TOO_LARGE)
        chunks.append(chunk)
    return _check_body(b"".join(chunks))


def _check_body(body: bytes) -> bytes:
    if not body.strip():
        raise MalformedRequest('Request body is empty; send a JSON object such as {"dataframe_split": ...}.')
    return body


async def invocations(request: Request) -> Response:
    caller = caller_of(request)
    body = await request_body(request)
    served = request.path_params.get("served")
    answer = await services_of(request).dataplane.query(
        caller, str(request.path_params["name"]), body, str(served) if served is not None else None
    )
    if answer.stream is not None:
        return EventStreamResponse(answer)
    return Response(answer.body, media_type="application/json", headers={"served-model-name": answer.served})


routes = [
    Route("/serving-endpoints/{name}/invocations", invocations, methods=["POST"]),
    Route("/serving-endpoints/{name}/served-models/{served}/invocations", invocations, methods=["POST"]),
]


# ---- the fast lane ---------------------------------------------------------------------------
# Queries are the hot path: ``api/app.py`` hands POSTs to these paths straight to
# :func:`serve_query`, skipping Starlette's routing, request objects and middleware (about a
# tenth of a millisecond a query). Same answers and errors as :func:`invocations`, which
# still serves them before the services are up.
QUERY_PATH = re.compile(r"^/serving-endpoints/([^/]+)(?:/served-models/([^/]+))?/invocations$")


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit() and int(value) > MAX_QUERY_BYTES:
            raise MalformedRequest(_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedRequest("The client closed the connection before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_QUERY_BYTES:
            raise MalformedRequest(_TOO_LARGE)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return _check_body(chunks[0] if len(chunks) == 1 else b"".join(chunks))


async def serve_query(
    services: Services, scope: Scope, receive: Receive, send: Send, name: str, served: str | None
) -> None:
    async def call(caller: Caller, body: bytes) -> Answer:
        return await services.dataplane.query(caller, name, body, served)

    await serve(services, scope, receive, send, call)


async def serve(
    services: Services,
    scope: Scope,
    receive: Receive,
    send: Send,
    call: Callable[[Caller, bytes], Awaitable[Answer]],
) -> None:
    """Authenticate, read the body, ``call`` the data plane, send its answer (JSON or SSE)."""
    try:
        authorization = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value.decode("latin-1")
                break
        caller = await services.auth.authenticate_async(authorization)
        body = await _read_body(scope, receive)
        answer = await call(caller, body)
    except ModelportError as exc:
        response = error_response(exc)
        if exc.status == 501:  # the openai client retries 5xx unless told not to
            response.headers["x-should-retry"] = "false"
        await response(scope, receive, send)
        return
    except Exception:
        log.exception("unhandled error", extra={"path": scope["path"]})
        await internal_error_response()(scope, receive, send)
        return
    if answer.stream is not None:
        await send_events(receive, send, answer)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer.body)).encode()),
                (b"served-model-name", answer.served.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})
