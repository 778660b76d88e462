"""The endpoint event log: ``GET /api/2.0/serving-endpoints/{name}/events`` (CAN_VIEW).

Query parameters: ``max_results`` (1 to 1000, default 100), ``page_token`` (the
``next_page_token`` of the previous page), ``kind`` (repeatable, or a comma list: only these
kinds; an unknown kind is refused with 400 naming the known ones). Answers
``{"events": [{"id", "timestamp" (ms), "kind", "message", "actor", "config_version",
"served_entity", "details"}], "next_page_token"}``, newest first; ``next_page_token`` is null
on the last page. The events themselves: ``store/events.py``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.responses import json_response
from modelport.api.services import Services, caller_of, services_of
from modelport.errors import InvalidParameterValue
from modelport.spec.identity import Caller
from modelport.spec.permissions import PermissionLevel
from modelport.store.events import KINDS, EventRecord

__all__ = ["PATH", "decode_token", "encode_token", "routes"]

PATH = "/api/2.0/serving-endpoints/{name}/events"
DEFAULT_RESULTS = 100
MAX_RESULTS = 1000
_TOKEN_PREFIX = "ev1:"


def encode_token(last_id: int) -> str:
    """The page token that continues after the event ``last_id`` (opaque to clients)."""
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    """The event id a page token continues after; InvalidParameterValue when it is not one."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if text.startswith(_TOKEN_PREFIX):
            value = int(text[len(_TOKEN_PREFIX) :])
            if value > 0:
                return value
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidParameterValue(f"page_token '{token}' is not a token this endpoint's events returned.")


def _max_results(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_RESULTS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_RESULTS:
        raise InvalidParameterValue(f"max_results must be an integer from 1 to {MAX_RESULTS}, not '{raw}'.")
    return value


def _kinds(raw: list[str]) -> list[str] | None:
    kinds = [k.strip().upper() for value in raw for k in value.split(",") if k.strip()]
    unknown = sorted({k for k in kinds if k not in KINDS})
    if unknown:
        raise InvalidParameterValue(
            f"kind {', '.join(unknown)} is not an event kind; the kinds are: {', '.join(KINDS)}."
        )
    return kinds or None


def render(event: EventRecord) -> dict[str, Any]:
    """One event as the route answers it."""
    return {
        "id": event.id,
        "timestamp": event.ts_ms,
        "kind": event.kind,
        "message": event.message,
        "actor": event.actor,
        "config_version": event.config_version,
        "served_entity": event.served_entity,
        "details": event.details,
    }


def _page(
    services: Services, caller: Caller, name: str, limit: int, before: int | None, kinds: list[str] | None
) -> dict[str, Any]:
    endpoint, _ = services.endpoints.authorized(caller, name, PermissionLevel.CAN_VIEW)
    events = services.db.events.page(endpoint.id, before_id=before, limit=limit + 1, kinds=kinds)
    more = len(events) > limit
    events = events[:limit]
    return {
        "events": [render(e) for e in events],
        "next_page_token": encode_token(events[-1].id) if more else None,
    }


async def list_events(request: Request) -> Response:
    caller = caller_of(request)
    params = request.query_params
    limit = _max_results(params.get("max_results"))
    token = params.get("page_token")
    before = decode_token(token) if token else None
    kinds = _kinds(params.getlist("kind"))
    name = str(request.path_params["name"])
    return json_response(
        await run_in_threadpool(_page, services_of(request), caller, name, limit, before, kinds)
    )


routes: list[Route] = [Route(PATH, list_events, methods=["GET"])]
