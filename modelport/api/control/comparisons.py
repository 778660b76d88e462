"""Comparing a candidate served entity with live traffic, and replaying logged traffic against it
(modelport's own routes; Databricks has none):

- ``GET /api/2.0/modelport/serving-endpoints/{name}/compare``, parameters ``candidate`` (v4),
  ``source`` (shadow or replay), ``since``, ``until``, ``replay_id``: the comparison report
  (``control/comparisons.py``); CAN_VIEW and SELECT on the inference table;
- ``POST /api/2.0/modelport/serving-endpoints/{name}/replays``: start a replay (CAN_MANAGE,
  ``control/replays.py``); ``GET .../replays`` (newest first), ``GET .../replays/{id}``
  (CAN_VIEW); ``POST .../replays/{id}/cancel`` (CAN_MANAGE).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.control.comparisons import ComparisonService
from modelport.control.replays import ReplayService

__all__ = ["BASE", "routes"]

BASE = "/api/2.0/modelport/serving-endpoints/{name}"
_PARAMS = ("candidate", "source", "since", "until", "replay_id")


def _comparisons(request: Request) -> ComparisonService:
    service = services_of(request).comparisons
    assert service is not None, "build_services sets it"
    return service


def _replays(request: Request) -> ReplayService:
    service = services_of(request).replays
    assert service is not None, "build_services sets it"
    return service


async def compare(request: Request) -> Response:
    caller = caller_of(request)
    params = {k: request.query_params.get(k) for k in _PARAMS}
    name = request.path_params["name"]
    return json_response(await run_in_threadpool(_comparisons(request).report, caller, name, params))


async def create_replay(request: Request) -> Response:
    caller = caller_of(request)
    body = await json_object(request)
    name = request.path_params["name"]
    return json_response(await run_in_threadpool(_replays(request).create, caller, name, body))


async def list_replays(request: Request) -> Response:
    caller = caller_of(request)
    name = request.path_params["name"]
    return json_response({"replays": await run_in_threadpool(_replays(request).list, caller, name)})


async def get_replay(request: Request) -> Response:
    caller = caller_of(request)
    path = request.path_params
    return json_response(
        await run_in_threadpool(_replays(request).get, caller, path["name"], path["replay_id"])
    )


async def cancel_replay(request: Request) -> Response:
    caller = caller_of(request)
    path = request.path_params
    return json_response(
        await run_in_threadpool(_replays(request).cancel, caller, path["name"], path["replay_id"])
    )


routes = [
    Route(f"{BASE}/compare", compare, methods=["GET"]),
    Route(f"{BASE}/replays", create_replay, methods=["POST"]),
    Route(f"{BASE}/replays", list_replays, methods=["GET"]),
    Route(f"{BASE}/replays/{{replay_id}}", get_replay, methods=["GET"]),
    Route(f"{BASE}/replays/{{replay_id}}/cancel", cancel_replay, methods=["POST"]),
]
