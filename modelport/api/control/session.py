"""Browser sign-in: ``/api/2.0/modelport/session`` (:mod:`modelport.api.sessions` says how the
cookie is used and checked).

- ``POST`` ``{"token": "dapi..."}``: checks the token, creates the session's own token and sets
  the cookies ``modelport_session`` (HttpOnly) and ``modelport_csrf`` (read by the UI's script);
  answers who signed in and until when. Refused with 403 when the browser says the request comes
  from another site's page.
- ``GET``: who the request is signed in as (any bearer token or session).
- ``DELETE``: signs out: deletes the session's token and clears both cookies.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.api.sessions import CSRF_COOKIE, SESSION_COOKIE, cross_site, csrf_for
from modelport.errors import InvalidParameterValue, PermissionDenied, Unauthenticated
from modelport.spec.identity import Caller

__all__ = ["routes"]


def _who(caller: Caller, expiry_ms: int | None) -> dict[str, Any]:
    return {
        "user_name": caller.name,
        "kind": caller.kind,
        "groups": sorted(caller.groups),
        "is_admin": caller.is_admin,
        "expiry_time": expiry_ms if expiry_ms is not None else -1,
    }


def _set_cookies(response: Response, session: str, max_age: int, secure: bool) -> None:
    common: dict[str, Any] = {"max_age": max_age, "path": "/", "samesite": "strict", "secure": secure}
    response.set_cookie(SESSION_COOKIE, session, httponly=True, **common)
    response.set_cookie(CSRF_COOKIE, csrf_for(session), httponly=False, **common)


def _clear_cookies(response: Response, secure: bool) -> None:
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", samesite="strict", secure=secure, httponly=httponly)


async def sign_in(request: Request) -> Response:
    headers = {k.lower(): v for k, v in request.scope.get("headers", ())}
    if cross_site(headers):
        raise PermissionDenied("Sign-in refused: the request comes from another site's page.")
    data = await json_object(request)
    token = data.get("token")
    if not isinstance(token, str) or not token.strip():
        raise InvalidParameterValue("Missing required field 'token': the access token to sign in with.")
    services = services_of(request)
    caller = await services.auth.authenticate_async(f"Bearer {token.strip()}")
    request.scope["modelport.caller"] = caller  # the audit log names who signed in
    max_seconds = int(services.settings.session_hours * 3600)
    new = await run_in_threadpool(services.identity.create_session, caller, max_seconds)
    expiry = new.record.expiry_ms
    response = json_response(_who(caller, expiry))
    max_age = max_seconds if expiry is None else max(1, (expiry - new.record.created_ms) // 1000)
    _set_cookies(response, new.value, max_age, request.url.scheme == "https")
    return response


async def whoami(request: Request) -> Response:
    caller = caller_of(request)
    services = services_of(request)
    token = (
        await run_in_threadpool(services.db.principals.get_token, caller.token_id)
        if caller.token_id
        else None
    )
    return json_response(_who(caller, token.expiry_ms if token is not None else None))


async def sign_out(request: Request) -> Response:
    response = json_response({})
    if "modelport.session" in request.scope:
        try:
            caller = caller_of(request)
        except Unauthenticated:
            pass  # the session has expired or was deleted: only the cookies are left to clear
        else:
            await run_in_threadpool(services_of(request).identity.end_session, caller)
    _clear_cookies(response, request.url.scheme == "https")
    return response


routes = [
    Route("/api/2.0/modelport/session", sign_in, methods=["POST"]),
    Route("/api/2.0/modelport/session", whoami, methods=["GET"]),
    Route("/api/2.0/modelport/session", sign_out, methods=["DELETE"]),
]
