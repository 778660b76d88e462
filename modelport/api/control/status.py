"""``GET /api/2.0/modelport/status`` (admins): the server processes that share the store, the
one that leads (the reconciler's lease: holder, epoch, time left) and where the replicas run.
``modelport status`` prints it."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.control.identity import IdentityService


async def status(request: Request) -> Response:
    caller = caller_of(request)
    IdentityService.require_admin(caller, "read the server's status")
    return json_response(await run_in_threadpool(services_of(request).cluster.status))


routes = [Route("/api/2.0/modelport/status", status, methods=["GET"])]
