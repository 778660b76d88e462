"""Browser sessions: a sign-in cookie that stands for a bearer token, with CSRF checks on writes.

Signing in (``POST /api/2.0/modelport/session`` with a token, :mod:`modelport.api.control.session`)
creates a new token of the same principal, short-lived (``--session-hours``, never beyond the
token signed in with) and commented ``browser session``, and sets it as the cookie
``modelport_session`` (HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS). Signing out deletes
that token; deleting it like any token (``/api/2.0/token/delete``, ``modelport tokens delete``)
ends the session too, within the same delay as any revoked token.

:class:`SessionCookies` runs before everything else that authenticates: a request with no
``Authorization`` header and a session cookie gets ``Authorization: Bearer <the cookie>`` added
to its headers, so the API, the data plane, MLflow's guard and the audit log all see an ordinary
bearer token and apply the same permissions. A request that sends its own ``Authorization``
header is never touched (the header wins; a page on another site cannot set it).

Writes (POST, PUT, PATCH, DELETE) authenticated by the cookie must also show they come from a
page of this server, else 403 ``PERMISSION_DENIED``; any one of:

- the header ``X-CSRF-Token`` equal to the cookie ``modelport_csrf`` that sign-in sets beside the
  session (readable by the UI's script; it is derived from the session, so a cookie planted by
  another site cannot match): modelport's UI sends it;
- ``Sec-Fetch-Site: same-origin``, which browsers set and pages cannot;
- an ``Origin`` header naming this server's own host and port (MLflow's UI, which sends neither
  of the above, is checked this way).

SameSite=Strict already keeps the cookie off requests that start on another site; these checks
are the second lock (the OWASP "defense in depth" advice for cookie sessions).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.types import Receive, Scope, Send

from modelport.api.errors import send_error
from modelport.errors import PermissionDenied

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SessionCookies",
    "cookie_value",
    "cross_site",
    "csrf_for",
    "is_same_origin",
]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "modelport_session"
CSRF_COOKIE = "modelport_csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_for(session: str) -> str:
    """The CSRF value of a session: derived from it, so no other value passes."""
    return hashlib.sha256(b"modelport-csrf:" + session.encode()).hexdigest()[:40]


def cookie_value(raw: str, name: str) -> str | None:
    """One cookie's value from a ``Cookie`` header (the first of that name)."""
    for part in raw.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"') or None
    return None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", ())}


def is_same_origin(headers: dict[bytes, bytes]) -> bool:
    """True when the browser says the request starts on a page of this server."""
    if headers.get(b"sec-fetch-site") == b"same-origin":
        return True
    origin = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1").lower()
    if not origin or origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host


def cross_site(headers: dict[bytes, bytes]) -> bool:
    """True when the browser says the request comes from another site's page (sign-in refuses it:
    a page elsewhere must not sign a visitor in as someone else)."""
    site = headers.get(b"sec-fetch-site")
    if site is not None and site not in (b"same-origin", b"none"):
        return True
    return b"origin" in headers and not is_same_origin(headers)


class SessionCookies:
    """Wraps an ASGI handler: turns a session cookie into a bearer token (module docstring)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("headers", ())
        cookie = b""
        for key, value in raw:
            if key == b"authorization":
                await self._handler(scope, receive, send)
                return
            if key == b"cookie":
                cookie = value
        session = cookie_value(cookie.decode("latin-1"), SESSION_COOKIE) if cookie else None
        if session is None:
            await self._handler(scope, receive, send)
            return
        if scope.get("method", "GET") not in _SAFE and not self._proven(scope, session):
            exc = PermissionDenied(
                "Cross-site request refused: a write signed in with the session cookie needs the "
                "header 'X-CSRF-Token' (the value of the cookie 'modelport_csrf') or to come from "
                "a page of this server."
            )
            await send_error(send, exc, scope.get("path", ""))
            return
        # in place, not a copy: the layers outside read what the inside writes to the scope (the
        # caller and route for the audit log and metrics)
        scope["headers"] = [*raw, (b"authorization", b"Bearer " + session.encode("latin-1"))]
        scope["modelport.session"] = session
        await self._handler(scope, receive, send)

    @staticmethod
    def _proven(scope: Scope, session: str) -> bool:
        headers = _headers(scope)
        sent = headers.get(CSRF_HEADER.encode())
        if sent is not None:
            return hmac.compare_digest(sent.decode("latin-1"), csrf_for(session))
        return is_same_origin(headers)
