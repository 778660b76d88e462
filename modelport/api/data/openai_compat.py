"""The OpenAI-compatible routes (compat-api.md §C): ``POST /serving-endpoints/chat/completions``,
``/serving-endpoints/completions`` and ``/serving-endpoints/embeddings``.

``OpenAI(base_url=f"{host}/serving-endpoints", api_key=<token>)`` talks to these with the
endpoint's name as ``model``. Whether to stream is the body's ``stream`` (the client sends
``Accept: application/json`` either way). Auth, CAN_QUERY and the traffic split are those
of ``/invocations``; like it, these take the fast lane (``api/app.py`` calls
:func:`serve_openai`), and the Starlette routes serve them before the services are up.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from modelport.api.data.invocations import request_body, serve
from modelport.api.data.streaming import EventStreamResponse
from modelport.api.services import Services, caller_of, services_of
from modelport.entities.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from modelport.gateway.dataplane import OPENAI_ROUTES, Answer
from modelport.spec.identity import Caller

__all__ = ["PATHS", "routes", "serve_openai"]

#: Path → the task it serves.
PATHS = {path: task for task, path in OPENAI_ROUTES.items()}


async def _answer(request: Request, task: str) -> Response:
    caller = caller_of(request)
    answer = await services_of(request).dataplane.query_openai(caller, task, await request_body(request))
    if answer.stream is not None:
        return EventStreamResponse(answer)
    return Response(answer.body, media_type="application/json", headers={"served-model-name": answer.served})


async def chat_completions(request: Request) -> Response:
    return await _answer(request, CHAT)


async def completions(request: Request) -> Response:
    return await _answer(request, COMPLETIONS)


async def embeddings(request: Request) -> Response:
    return await _answer(request, EMBEDDINGS)


#: For the route label of the fast lane's metrics.
HANDLERS = {CHAT: chat_completions, COMPLETIONS: completions, EMBEDDINGS: embeddings}

routes = [Route(OPENAI_ROUTES[task], handler, methods=["POST"]) for task, handler in HANDLERS.items()]


async def serve_openai(services: Services, scope: Scope, receive: Receive, send: Send, task: str) -> None:
    async def call(caller: Caller, body: bytes) -> Answer:
        return await services.dataplane.query_openai(caller, task, body)

    await serve(services, scope, receive, send, call)
