"""An endpoint's metrics history: ``GET /api/2.0/serving-endpoints/{name}/metrics/history``
(CAN_VIEW).

Query parameters, all optional: ``since`` and ``until`` (milliseconds since the epoch; default
the last hour up to now; ``since`` is raised to the start of the 14 days kept), ``step``
(seconds, a multiple of 60; default 60 up to a 2-hour range, 300 up to 48 hours, 3600 beyond;
a range reaching back more than 48 hours is answered hourly, as only hour rows exist there),
``served_entity`` (only that served entity's rows). At most 5000 steps.

Answers ``{"endpoint_name", "since", "until", "step", "points": [...], "served_entities":
[{"name", "points": [...]}]}``: one point per step, oldest first, with ``time_ms`` (the step's
start), ``requests``, ``requests_per_second``, ``errors_4xx``, ``errors_5xx``, ``errors``
(count per status code of 400 and above), ``latency_p50_ms``, ``latency_p99_ms`` and
``latency_mean_ms`` (null without requests), ``replicas`` (the most ready replicas in the step,
null when unknown) and ``concurrency`` (the mean number of queries being answered). Counts are
those of every server process; how they are kept: ``control/metric_history.py``.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.responses import json_response
from modelport.api.services import Services, caller_of, services_of
from modelport.clock import now_ms
from modelport.control.metric_history import history, parse_range
from modelport.errors import TemporarilyUnavailable
from modelport.spec.identity import Caller
from modelport.spec.permissions import PermissionLevel

__all__ = ["PATH", "routes"]

PATH = "/api/2.0/serving-endpoints/{name}/metrics/history"


def _answer(services: Services, caller: Caller, name: str, params: dict[str, str]) -> dict[str, Any]:
    endpoint, _ = services.endpoints.authorized(caller, name, PermissionLevel.CAN_VIEW)
    settings = services.settings
    now = now_ms()
    since, until, step = parse_range(
        params.get("since"),
        params.get("until"),
        params.get("step"),
        now,
        days=settings.metric_history_days,
        minute_hours=settings.metric_history_minute_hours,
    )
    repo = services.metric_history
    if repo is None:
        raise TemporarilyUnavailable("the metrics history is not kept by this server.")
    entity = params.get("served_entity") or None
    return {"endpoint_name": endpoint.name, **history(repo, endpoint.id, since, until, step, now, entity)}


async def metrics_history(request: Request) -> Response:
    caller = caller_of(request)
    name = str(request.path_params["name"])
    params = dict(request.query_params)
    return json_response(await run_in_threadpool(_answer, services_of(request), caller, name, params))


routes: list[Route] = [Route(PATH, metrics_history, methods=["GET"])]
