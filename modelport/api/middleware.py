"""What every HTTP request goes through, whatever answers it: path normalisation, the request id,
the server's request metrics, the access log and the audit log.

The request id is the client's ``x-request-id`` (up to 128 characters) or a new one; it is echoed
in the answer's ``x-request-id`` header and set in :data:`~modelport.log_format.request_id_var`
for everything logged while the request is handled. The access log line is handed to the
logging queue (``log_format.py``), never written on the event loop.

Writes outside the data plane, secret reads and every 401 and 403 get a row in ``system.access.audit``
(``api/audit.py`` says which and what), appended to the tables' spool just before the last
part of the answer is sent; for those requests the JSON body (up to 64 KiB) and an error
answer (up to 8 KiB) are kept while they pass, for the identifiers and error code they hold.
A write (or secret read) is refused with 503 ``TEMPORARILY_UNAVAILABLE`` when the spool could keep no row (its
disk full and its memory bound reached), so no change goes unaudited.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from modelport.api.audit import (
    MAX_CAPTURED_BODY,
    MAX_CAPTURED_ERROR,
    always_audited,
    audit_record,
    audited,
    is_query,
)
from modelport.api.errors import send_error
from modelport.api.services import Services
from modelport.errors import ModelportError
from modelport.log_format import request_id_var
from modelport.metrics import Metrics

__all__ = ["Observed", "route_label"]

log = logging.getLogger("modelport.server")

#: Paths polled by machines: their access lines are logged at debug level.
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics", "/.well-known/databricks-config"})

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


def route_label(scope: Scope) -> str:
    """The metrics label of the route that answered (set in ``scope["route_label"]`` or by Starlette)."""
    label = scope.get("route_label")
    if label is not None:
        return str(label)
    return getattr(scope.get("endpoint"), "__name__", "unmatched")


class Observed:
    """Wraps the app's HTTP handler: request id, metrics and the access log for each request.

    ``metrics`` returns the server's metrics once the services are up (None before);
    ``services`` the services (None before), whose tables take the audit rows.
    """

    def __init__(
        self,
        handler: Handler,
        metrics: Callable[[], Metrics | None],
        services: Callable[[], Services | None] = lambda: None,
    ) -> None:
        self._handler = handler
        self._metrics = metrics
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/") and not path.startswith(("/ui/", "/mlflow/")):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        rid = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                rid = value.decode("latin-1")[:128]
                break
        rid = rid or uuid.uuid4().hex
        token = request_id_var.set(rid)
        status = 500
        start = time.perf_counter()
        # A query (the hot path) pays for one prefix check here and a few comparisons below.
        always = not is_query(scope["path"]) and always_audited(scope["method"], scope["path"])
        body: bytearray | None = bytearray() if always and _is_json(scope) else None
        answer: bytearray | None = None
        if body is not None:
            receive = _kept(receive, body)

        recorded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answer, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode("latin-1"))]
                if status >= 400 and (always or status in (401, 403)):
                    answer = bytearray()
            elif message["type"] == "http.response.body":
                if answer is not None and len(answer) < MAX_CAPTURED_ERROR:
                    answer += message.get("body", b"")[:MAX_CAPTURED_ERROR]
                if not recorded and not message.get("more_body") and (always or status in (401, 403)):
                    # In the spool before the answer ends: a kill -9 after the client has it loses no row.
                    recorded = True
                    self._audit(scope, rid, status, body, answer)
            await send(message)

        try:
            services = self._services() if always else None
            try:
                if services is not None:
                    services.tables.check_room()  # a always whose audit row could not be kept: 503
            except ModelportError as exc:
                await send_error(send_with_id, exc, scope["path"])
            else:
                await self._handler(scope, receive, send_with_id)
        finally:
            if not recorded and (always or status in (401, 403)):
                self._audit(scope, rid, status, body, answer)
            elapsed = time.perf_counter() - start
            route = route_label(scope)
            metrics = self._metrics()
            if metrics is not None:
                metrics.http_requests.labels(scope["method"], route, str(status)).inc()
                metrics.http_latency.labels(scope["method"], route).observe(elapsed)
            log.log(
                logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO,
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)

    def _audit(
        self, scope: Scope, rid: str, status: int, body: bytearray | None, answer: bytearray | None
    ) -> None:
        services = self._services()
        if services is None or not audited(scope["method"], scope["path"], status):
            return
        try:
            record = audit_record(
                scope,
                rid,
                status,
                bytes(body) if body and len(body) <= MAX_CAPTURED_BODY else None,
                bytes(answer) if answer else None,
                services.workspace_id,
            )
            services.tables.record_audit(record)
        except Exception:  # the answer is sent; a lost audit row is logged, never raised
            log.warning("audit: could not record %s %s", scope["method"], scope["path"], exc_info=True)


def _is_json(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return b"json" in value
    return False


def _kept(receive: Receive, body: bytearray) -> Receive:
    """``receive`` that also appends the request's body to ``body``, up to just past
    :data:`MAX_CAPTURED_BODY` (a longer body is not read for names)."""

    async def receive_kept() -> Message:
        message = await receive()
        if message["type"] == "http.request" and len(body) <= MAX_CAPTURED_BODY:
            body.extend(message.get("body", b"")[: MAX_CAPTURED_BODY + 1 - len(body)])
        return message

    return receive_kept
