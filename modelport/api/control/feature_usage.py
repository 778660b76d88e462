"""Which features an endpoint's served entities look up (the endpoint page shows them).

- ``GET /api/2.0/feature-engineering/serving-endpoints/{name}/features`` (CAN_VIEW on the
  endpoint): ``{"served_entities": [{"name", "entity_name", "entity_version", "features",
  "functions", "problems"}]}``.

What each field holds: :mod:`modelport.control.feature_usage`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of

__all__ = ["PATH", "routes"]

PATH = "/api/2.0/feature-engineering/serving-endpoints/{name}/features"


async def endpoint_features(request: Request) -> Response:
    caller = caller_of(request)
    usage = services_of(request).feature_usage
    return json_response(await run_in_threadpool(usage.of_endpoint, caller, request.path_params["name"]))


routes = [Route(PATH, endpoint_features, methods=["GET"])]
