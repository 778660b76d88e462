"""What every HTTP request goes through, whatever answers it: path normalisation, the request id,
the server's request metrics and the access log.

The request id is the client's ``x-request-id`` (up to 128 characters) or a new one; it is echoed
in the answer's ``x-request-id`` header and set in :data:`~modelport.log_format.request_id_var`
for everything logged while the request is handled. The access log line is handed to the
logging queue (``log_format.py``), never written on the event loop.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

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

    ``metrics`` returns the server's metrics once the services are up (None before).
    """

    def __init__(self, handler: Handler, metrics: Callable[[], Metrics | None]) -> None:
        self._handler = handler
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/") and not path.startswith("/ui/"):
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

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self._handler(scope, receive, send_with_id)
        finally:
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
