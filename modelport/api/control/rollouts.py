"""Canary rollouts of an endpoint (``control/rollouts.py``):

- ``GET /api/2.0/serving-endpoints/{name}/rollouts`` (CAN_VIEW): ``{"rollouts": [...]}``, newest first;
- ``GET .../rollouts/current`` (CAN_VIEW): the newest rollout, 404 when the endpoint never had one;
- ``POST .../rollouts/current/pause`` | ``resume`` | ``cancel`` (CAN_MANAGE): the rollout as
  changed; cancel rolls back (the traffic to the incumbents at once, then the previous config
  restored as a new version). 400 INVALID_STATE when the rollout is not in a state that allows it.

A rollout is ``{"id", "config_version", "from_version", "state", "step", "steps", "percentage",
"candidate", "incumbents", "policy", "step_started_timestamp", "created_timestamp",
"finished_timestamp", "creator", "message", "last_evaluation"}``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.control.rollouts import RolloutService
from modelport.errors import TemporarilyUnavailable

__all__ = ["PATH", "routes"]

PATH = "/api/2.0/serving-endpoints/{name}/rollouts"


def _service(request: Request) -> RolloutService:
    service = services_of(request).rollouts
    if service is None:
        raise TemporarilyUnavailable("Rollouts are not served by this process.")
    return service


async def list_rollouts(request: Request) -> Response:
    caller = caller_of(request)
    found = await run_in_threadpool(_service(request).list, caller, request.path_params["name"])
    return json_response({"rollouts": found})


async def current_rollout(request: Request) -> Response:
    caller = caller_of(request)
    answer = await run_in_threadpool(_service(request).current, caller, request.path_params["name"])
    return json_response(answer)


async def pause_rollout(request: Request) -> Response:
    caller = caller_of(request)
    answer = await run_in_threadpool(_service(request).pause, caller, request.path_params["name"])
    return json_response(answer)


async def resume_rollout(request: Request) -> Response:
    caller = caller_of(request)
    answer = await run_in_threadpool(_service(request).resume, caller, request.path_params["name"])
    return json_response(answer)


async def cancel_rollout(request: Request) -> Response:
    caller = caller_of(request)
    answer = await run_in_threadpool(_service(request).cancel, caller, request.path_params["name"])
    return json_response(answer)


routes: list[Route] = [
    Route(PATH, list_rollouts, methods=["GET"]),
    Route(f"{PATH}/current", current_rollout, methods=["GET"]),
    Route(f"{PATH}/current/pause", pause_rollout, methods=["POST"]),
    Route(f"{PATH}/current/resume", resume_rollout, methods=["POST"]),
    Route(f"{PATH}/current/cancel", cancel_rollout, methods=["POST"]),
]
