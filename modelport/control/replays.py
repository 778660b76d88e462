"""Replays: logged requests of an endpoint's inference table sent again to a candidate served
entity of the same endpoint, at a bounded rate, then compared with the answers logged
(``POST/GET /api/2.0/modelport/serving-endpoints/{name}/replays``).

This module validates and stores them (``db.replays``); the leader runs them
(``batch/replay_runner.py``). A request::

    {"candidate": "v4", "since": iso|ms|"1h"?, "until": ...?,
     "filter": {"served_entity_name": "v2"?, "status_code": 200?},
     "limit": 500, "rate_per_second": 50}

- ``candidate``: a served entity of the serving config (it must run to be asked);
- ``since``/``until``: the logged rows' time range (``until`` defaults to now, frozen at
  creation, so a resumed replay selects the same rows); ``since`` defaults to none;
- ``filter``: the logged rows' served entity and status code;
- ``limit``: 1 to 10,000 rows (500), the newest first; ``rate_per_second``: 0.1 to 1,000 (50).

Only live rows are replayed (``shadow_of`` and ``replay_of`` null). The endpoint must have an
inference table. Creating and cancelling need CAN_MANAGE on the endpoint; reading CAN_VIEW.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from modelport.clock import now_ms
from modelport.control.comparisons import ComparisonService, parse_time, served_names
from modelport.control.endpoints import EndpointService
from modelport.errors import InvalidParameterValue, InvalidState, ResourceDoesNotExist
from modelport.spec.identity import Caller
from modelport.spec.permissions import PermissionLevel
from modelport.store import Database
from modelport.store.records import EndpointRecord
from modelport.store.replays import ReplayRecord

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_RATE",
    "MAX_LIMIT",
    "MAX_RATE",
    "MIN_RATE",
    "ReplayService",
    "render",
]

DEFAULT_LIMIT = 500
MAX_LIMIT = 10_000
DEFAULT_RATE = 50.0
MIN_RATE = 0.1
MAX_RATE = 1_000.0
_FIELDS = {"candidate", "since", "until", "filter", "limit", "rate_per_second"}
_FILTERS = {"served_entity_name", "status_code"}


def render(record: ReplayRecord, endpoint_name: str | None = None) -> dict[str, Any]:
    """A replay as the API answers it."""
    progress = dict(record.progress or {})
    return {
        "id": record.id,
        "endpoint": endpoint_name or record.spec.get("endpoint"),
        "state": record.state,
        "candidate": record.candidate,
        "spec": {k: v for k, v in record.spec.items() if k not in ("endpoint", "table")},
        "progress": {
            "sent": progress.get("sent", 0),
            "total": progress.get("total"),
            "errors": progress.get("errors", 0),
        },
        "report": record.report,
        "created_timestamp": record.created_ms,
        "updated_timestamp": record.updated_ms,
        "creator": record.creator,
        "message": record.message,
    }


def _limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise InvalidParameterValue(
            f"Invalid value for 'limit': {value!r} (an integer from 1 to {MAX_LIMIT:,})."
        )
    return value


def _rate(value: Any) -> float:
    if value is None:
        return DEFAULT_RATE
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not MIN_RATE <= float(value) <= MAX_RATE
    ):
        raise InvalidParameterValue(
            f"Invalid value for 'rate_per_second': {value!r} (a number from {MIN_RATE} to {MAX_RATE:,.0f})."
        )
    return float(value)


def _filter(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameterValue("Invalid value for 'filter': must be an object.")
    unknown = sorted(set(value) - _FILTERS)
    if unknown:
        raise InvalidParameterValue(
            f"Invalid value for 'filter.{unknown[0]}': unknown filter (served_entity_name, status_code)."
        )
    out: dict[str, Any] = {}
    served = value.get("served_entity_name")
    if served is not None:
        if not isinstance(served, str) or not served:
            raise InvalidParameterValue("Invalid value for 'filter.served_entity_name': must be a name.")
        out["served_entity_name"] = served
    status = value.get("status_code")
    if status is not None:
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise InvalidParameterValue(
                f"Invalid value for 'filter.status_code': {status!r} (an HTTP status)."
            )
        out["status_code"] = status
    return out


class ReplayService:
    """Validates, stores, lists and cancels replays (blocking: store reads; call from a thread).
    ``wake``: tells the runner a replay was created (the runner sets it)."""

    def __init__(
        self,
        db: Database,
        endpoints: EndpointService,
        comparisons: ComparisonService,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._endpoints = endpoints
        self._comparisons = comparisons
        self.wake = wake

    def create(self, caller: Caller, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Validate and store a replay (QUEUED); CAN_MANAGE is checked before the body."""
        endpoint, _ = self._endpoints.authorized(caller, name, PermissionLevel.CAN_MANAGE)
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise InvalidParameterValue(
                f"Invalid value for '{unknown[0]}': unknown field (fields: {', '.join(sorted(_FIELDS))})."
            )
        candidate = body.get("candidate")
        if not isinstance(candidate, str) or not candidate:
            raise InvalidParameterValue(
                "Missing required field 'candidate': the served entity to replay against."
            )
        limit, rate, filters = (
            _limit(body.get("limit")),
            _rate(body.get("rate_per_second")),
            _filter(body.get("filter")),
        )
        now = now_ms()
        since = parse_time(body.get("since"), now, "since")
        until = parse_time(body.get("until"), now, "until")
        until = now if until is None else until
        if since is not None and since >= until:
            raise InvalidParameterValue("Invalid value for 'since': it must be before 'until'.")
        config = self._db.endpoints.get_config(endpoint.id, endpoint.active_version)
        if config is None:
            raise InvalidState(f"Endpoint '{endpoint.name}' has no serving config to replay against.")
        names = served_names(config)
        if candidate not in names:
            raise InvalidParameterValue(
                f"Invalid value for 'candidate': '{candidate}' is not a served entity of endpoint "
                f"'{endpoint.name}' (served entities: {', '.join(names)})."
            )
        table = self._comparisons.table_of(caller, endpoint, config)
        spec = {
            "endpoint": endpoint.name,
            "table": table,
            "since": since,
            "until": until,
            "filter": filters,
            "limit": limit,
            "rate_per_second": rate,
            "order": "newest_first",
        }
        record = ReplayRecord(
            id=uuid.uuid4().hex,
            endpoint_id=endpoint.id,
            candidate=candidate,
            spec=spec,
            state="QUEUED",
            creator=caller.name,
            created_ms=now,
            updated_ms=now,
            progress={"sent": 0, "total": None, "errors": 0},
        )
        self._db.replays.add(record)
        self.wake()
        return render(record, endpoint.name)

    def _find(self, endpoint: EndpointRecord, replay_id: str) -> ReplayRecord:
        record = self._db.replays.get(replay_id)
        if record is None or record.endpoint_id != endpoint.id:
            raise ResourceDoesNotExist(f"Replay '{replay_id}' of endpoint '{endpoint.name}' does not exist.")
        return record

    def list(self, caller: Caller, name: str) -> list[dict[str, Any]]:
        endpoint, _ = self._endpoints.authorized(caller, name, PermissionLevel.CAN_VIEW)
        return [render(r, endpoint.name) for r in self._db.replays.list(endpoint.id)]

    def get(self, caller: Caller, name: str, replay_id: str) -> dict[str, Any]:
        endpoint, _ = self._endpoints.authorized(caller, name, PermissionLevel.CAN_VIEW)
        return render(self._find(endpoint, replay_id), endpoint.name)

    def cancel(self, caller: Caller, name: str, replay_id: str) -> dict[str, Any]:
        """Cancel a replay not ended yet (the runner stops within a second); 400 INVALID_STATE
        for one that ended otherwise."""
        endpoint, _ = self._endpoints.authorized(caller, name, PermissionLevel.CAN_MANAGE)
        record = self._find(endpoint, replay_id)
        if not self._db.replays.finish(record.id, "CANCELED", message=f"Canceled by {caller.name}."):
            record = self._find(endpoint, replay_id)
            if record.state != "CANCELED":
                raise InvalidState(f"Replay '{replay_id}' has already ended ({record.state}).")
        self.wake()
        return render(self._find(endpoint, replay_id), endpoint.name)
