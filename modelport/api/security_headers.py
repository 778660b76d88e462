"""Security headers on the answers: every answer but a query's gets ``X-Content-Type-Options:
nosniff``; the serving UI's pages (``/`` and ``/ui/...``) also get a Content-Security-Policy
without inline scripts or styles, no framing (``frame-ancestors 'none'`` and ``X-Frame-Options:
DENY``) and ``Referrer-Policy: no-referrer``.

Queries (``/serving-endpoints/...``) are passed through untouched: the wrapper costs a few
microseconds a request, and a JSON answer that needs a bearer token gains little from nosniff (a
page elsewhere cannot load it with the token).

MLflow's UI under ``/mlflow/`` gets its own policy (:data:`MLFLOW_UI_POLICY`): scripts only from
this server too, but inline styles allowed, which its React build needs.

The UI's scripts and styles are files under ``/ui/`` (``ui/static``): the policy allows only
those, so a script injected into a page (an endpoint's name, a model's answer) does not run. The
UI sets element styles through the CSSOM (``el.style``), which the policy allows, never through
``style`` attributes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "MLFLOW_UI_POLICY", "SecurityHeaders"]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: MLflow's UI (``/mlflow/``) is a built React app that injects its styles at run time (emotion)
#: and draws charts into blob: and data: images: styles inline are allowed there, scripts still
#: only from files of this server.
MLFLOW_UI_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_QUERIES = "/serving-endpoints/"
_UI = [
    _NOSNIFF,
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


_MLFLOW_UI = [
    _NOSNIFF,
    (b"content-security-policy", MLFLOW_UI_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def _is_ui(path: str) -> bool:
    return path == "/" or path == "/ui" or path.startswith("/ui/")


def _headers_for(path: str) -> list[tuple[bytes, bytes]]:
    if _is_ui(path):
        return _UI
    if path == "/mlflow" or path.startswith("/mlflow/"):
        return _MLFLOW_UI
    return [_NOSNIFF]


class SecurityHeaders:
    """Wraps an ASGI handler: adds the headers above to each answer's start."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith(_QUERIES):
            await self._handler(scope, receive, send)
            return
        added = _headers_for(path)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        await self._handler(scope, receive, with_headers)
