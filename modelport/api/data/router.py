"""The data plane's routes, the only ones: queries go here straight from the top-level app.

- ``POST /serving-endpoints/{name}/invocations`` and
  ``POST /serving-endpoints/{name}/served-models/{served}/invocations`` (the per-entity route);
- ``POST /serving-endpoints/chat/completions``, ``/completions`` and ``/embeddings``, the
  OpenAI-compatible routes, for ``OpenAI(base_url=f"{host}/serving-endpoints", api_key=<token>)``
  with the endpoint's name as ``model``;
- ``POST /serving-endpoints/responses``, the OpenAI Responses route of ``agent/v1/responses``
  agents (``responses.py``: its request, answer and events).

Another method on these paths is a 405. A query is authenticated once, its body read once
(``api/body.py``), then handed to the data plane as an :class:`Exchange`; the answer is sent as
JSON or, for ``"stream": true``, as server-sent events (``streaming.py``); an endpoint with a
response cache says in ``x-modelport-cache`` whether the answer was a ``hit``, a ``miss`` or a
``bypass`` (not cacheable). Every error goes through
``api/errors.py``. This runs as plain ASGI, below Starlette's router and request objects (about a
tenth of a millisecond a query).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from modelport.api.body import MAX_BODY, read_body
from modelport.api.data.responses import PATH as RESPONSES_PATH
from modelport.api.data.responses import serve_responses
from modelport.api.data.streaming import send_events
from modelport.api.errors import send_error
from modelport.api.services import Services
from modelport.entities.agents import RESPONSES_AGENT
from modelport.errors import MalformedRequest, MethodNotAllowed
from modelport.gateway.exchange import Exchange
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS, OPENAI_ROUTES

__all__ = ["PATHS", "Query", "match", "serve_query"]

_INVOCATIONS = re.compile(r"^/serving-endpoints/([^/]+)(?:/served-models/([^/]+))?/invocations$")
#: Path → the task it serves.
_OPENAI = {path: task for task, path in OPENAI_ROUTES.items()}
#: The route label in the metrics (``modelport_http_requests_total{route=...}``).
_LABELS = {CHAT: "chat_completions", COMPLETIONS: "completions", EMBEDDINGS: "embeddings"}
#: Every path :func:`match` answers, as templates (the server's route table and OpenAPI document).
PATHS = (
    "/serving-endpoints/{name}/invocations",
    "/serving-endpoints/{name}/served-models/{served}/invocations",
    *_OPENAI,
    RESPONSES_PATH,
)


@dataclass(frozen=True)
class Query:
    """What a data-plane path names: the endpoint and entity, or the OpenAI route's task."""

    label: str  #: the route, for the metrics
    endpoint: str = ""
    served: str | None = None
    task: str | None = None


def match(path: str) -> Query | None:
    """The query a path names, or None when it is not a data-plane path."""
    task = _OPENAI.get(path)
    if task is not None:
        return Query(_LABELS[task], task=task)
    if path == RESPONSES_PATH:
        return Query("responses", task=RESPONSES_AGENT)
    found = _INVOCATIONS.match(path)
    if found is None:
        return None
    return Query("invocations", found[1], found[2])


def _authorization(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            return value.decode("latin-1")
    return None


async def serve_query(services: Services, query: Query, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one data-plane request, errors included."""
    if scope["method"] != "POST":
        refused = MethodNotAllowed(f"Method {scope['method']} is not allowed for '{scope['path']}'.")
        await send_error(send, refused, scope["path"], headers={"Allow": "POST"})
        return
    try:
        # agent=True: an agent's tool calls come here with its agent token (gateway/agent_tokens.py)
        caller = await services.auth.authenticate_async(_authorization(scope), agent=True)
        scope["modelport.caller"] = caller  # for the audit log of a refusal (api/middleware.py)
        body = await read_body(scope, receive, MAX_BODY, what="a query")
        if not body.strip():
            raise MalformedRequest(
                'Request body is empty; send a JSON object such as {"dataframe_split": ...}.'
            )
        if query.task == RESPONSES_AGENT:
            await serve_responses(services, caller, body, scope, receive, send)
            return
        exchange = Exchange(caller, query.endpoint, body, served=query.served, task=query.task)
        answer = await services.dataplane.query(exchange)
    except Exception as exc:
        await send_error(send, exc, scope["path"])
        return
    extra = [] if exchange.cache is None else [(b"x-modelport-cache", exchange.cache.encode())]
    if answer.stream is not None:
        await send_events(receive, send, answer, extra)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer.body)).encode()),
                (b"served-model-name", answer.served.encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})
