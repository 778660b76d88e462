"""The OpenAI Responses route: ``POST /serving-endpoints/responses`` for ``agent/v1/responses`` agents.

``OpenAI(base_url=f"{host}/serving-endpoints", api_key=<token>).responses.create(model=<endpoint>,
input=...)``: ``model`` names the endpoint; ``input`` is a string (one user message) or a list of
items, ``instructions`` becomes a system message before them; the other fields MLflow's
``ResponsesAgentRequest`` knows (``custom_inputs``, ``context``, ``temperature``, ``tools``,
``metadata``...) pass to the agent as they are, unknown ones are dropped, and
``previous_response_id`` is refused (modelport keeps no conversation state). The query then goes
through the data plane like any other (``ex.task`` = ``agent/v1/responses``:
``gateway/served.py`` sends it to the agent, refusing other endpoints with a 400 naming theirs).

The answer is the OpenAI ``Response`` object (:func:`response_object`): the agent's ``output``
items, ``status: "completed"``, ``id`` (``resp_<request id>``), ``created_at``, ``model``,
``usage`` when the agent gave it, and its ``custom_outputs``. With ``"stream": true`` the agent's
events become the event sequence the ``openai`` client parses (:class:`ResponsesEvents`), each
as ``event: <type>`` and ``data: <json>`` lines and a blank line: ``response.created``,
``response.in_progress``, per output item ``response.output_item.added``, for text
``response.content_part.added``, ``response.output_text.delta``..., ``response.output_text.done``,
``response.content_part.done``, then ``response.output_item.done``; last ``response.completed``
with the whole response. An error after the stream began is one ``error`` event (the client
raises it as ``APIError``).
"""

from __future__ import annotations

import copy
import time
from functools import partial
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from modelport.api.data.streaming import send_events
from modelport.api.errors import error_event_body, send_error
from modelport.api.services import Services
from modelport.entities.agents import RESPONSES_AGENT
from modelport.errors import InvalidParameterValue, MalformedRequest
from modelport.gateway.exchange import Chunks, Exchange
from modelport.spec.identity import Caller

__all__ = ["PATH", "ResponsesEvents", "agent_request", "response_object", "serve_responses"]

PATH = "/serving-endpoints/responses"

#: Fields of an OpenAI Responses request that the agent receives (MLflow's ResponsesAgentRequest).
_PASSED = (
    "custom_inputs",
    "context",
    "tool_choice",
    "truncation",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "tools",
    "reasoning",
    "store",
    "temperature",
    "text",
    "top_p",
    "user",
    "background",
)


def agent_request(data: Any) -> tuple[str, dict[str, Any]]:
    """The endpoint a Responses request names (``model``) and the body its agent receives
    (``stream`` kept: the data plane streams on it); a 400 naming the field when it is not one."""
    if not isinstance(data, dict):
        raise MalformedRequest("The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidParameterValue(
            "Missing required field 'model': the name of the serving endpoint to query."
        )
    if data.get("previous_response_id") is not None:
        raise InvalidParameterValue(
            "'previous_response_id' is not supported: modelport keeps no conversation state; "
            "send the whole conversation in 'input'."
        )
    raw = data.get("input")
    if isinstance(raw, str):
        items: list[Any] = [{"role": "user", "content": raw}]
    elif isinstance(raw, list) and raw:
        items = list(raw)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidParameterValue(f"'input[{i}]' must be an object (a message or an item).")
    else:
        raise InvalidParameterValue("'input' is required: a string or a non-empty list of items.")
    instructions = data.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidParameterValue("'instructions' must be a string.")
        items.insert(0, {"role": "system", "content": instructions})
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidParameterValue("'stream' must be true or false.")
    metadata = data.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise InvalidParameterValue("'metadata' must be an object of strings.")
    body = {k: data[k] for k in _PASSED if data.get(k) is not None}
    body["input"] = items
    if stream:
        body["stream"] = True
    return model, body


def _output_item(item: Any) -> Any:
    """An agent's output item as the Responses API shows it (a message's ``status`` and its text
    parts' ``annotations`` filled in)."""
    if not isinstance(item, dict):
        return item
    out = dict(item)
    if out.get("type") == "message":
        out.setdefault("status", "completed")
        out.setdefault("role", "assistant")
        content = out.get("content")
        if isinstance(content, list):
            out["content"] = [
                {**part, "annotations": part.get("annotations") or []}
                if isinstance(part, dict) and part.get("type") == "output_text"
                else part
                for part in content
            ]
    elif out.get("type") in ("function_call", "reasoning"):
        out.setdefault("status", "completed")
    return out


def response_object(
    answer: dict[str, Any],
    *,
    response_id: str,
    model: str,
    created_at: int,
    request: dict[str, Any],
    status: str = "completed",
) -> dict[str, Any]:
    """The OpenAI ``Response`` for an agent's answer (a ``ResponsesAgentResponse`` as a dict)."""
    output = answer.get("output")
    out: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "model": model,
        "status": status,
        "output": [_output_item(i) for i in output] if isinstance(output, list) else [],
        "error": answer.get("error"),
        "incomplete_details": None,
        "instructions": None,
        "metadata": request.get("metadata") or {},
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "temperature": request.get("temperature"),
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
    }
    if isinstance(answer.get("usage"), dict):
        out["usage"] = answer["usage"]
    if answer.get("custom_outputs") is not None:
        out["custom_outputs"] = answer["custom_outputs"]
    return out


class ResponsesEvents:
    """Turns a ``ResponsesAgent``'s stream events into the Responses API's event sequence.

    :meth:`start` gives the opening events, :meth:`feed` those for one agent event, :meth:`finish`
    the closing ones (items the agent left open are closed with the text streamed so far, then
    ``response.completed``). Every event gets the next ``sequence_number``."""

    def __init__(self, *, response_id: str, model: str, created_at: int, request: dict[str, Any]) -> None:
        self._response = response_object(
            {},
            response_id=response_id,
            model=model,
            created_at=created_at,
            request=request,
            status="in_progress",
        )
        self._sequence = 0
        #: item id -> (output index, text streamed so far); items whose text is being streamed.
        self._open: dict[str, tuple[int, str]] = {}
        #: item id -> output index of every item announced (``output_item.added``).
        self._indexes: dict[str, int] = {}
        self._output: list[Any] = []
        self._custom_outputs: Any = None

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _snapshot(self, status: str) -> dict[str, Any]:
        response = copy.deepcopy(self._response)
        response["status"] = status
        response["output"] = copy.deepcopy(self._output)
        if self._custom_outputs is not None:
            response["custom_outputs"] = self._custom_outputs
        return response

    def start(self) -> list[dict[str, Any]]:
        return [
            self._event("response.created", response=self._snapshot("in_progress")),
            self._event("response.in_progress", response=self._snapshot("in_progress")),
        ]

    def _announce(self, item_id: str, item: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        index = len(self._output)
        self._indexes[item_id] = index
        self._output.append(None)  # its place, filled when it is done
        return index, self._event("response.output_item.added", output_index=index, item=item)

    def feed(self, event: Any) -> list[dict[str, Any]]:
        """The events that stand for one agent event (a dict; anything else is skipped)."""
        if not isinstance(event, dict):
            return []
        if event.get("custom_outputs") is not None:
            self._custom_outputs = event["custom_outputs"]
        kind = event.get("type")
        if kind == "response.output_text.delta":
            return self._delta(str(event.get("item_id") or "msg"), str(event.get("delta") or ""))
        if kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            return self._done(_output_item(event["item"]))
        if not isinstance(kind, str):
            return []
        fields = {k: v for k, v in event.items() if k not in ("type", "sequence_number", "custom_outputs")}
        item_id = fields.get("item_id")
        if isinstance(item_id, str) and item_id in self._indexes:
            fields.setdefault("output_index", self._indexes[item_id])
        return [self._event(kind, **fields)]

    def _delta(self, item_id: str, delta: str) -> list[dict[str, Any]]:
        out = []
        if item_id not in self._open:
            if item_id in self._indexes:  # its item is done: a late delta is dropped
                return []
            skeleton = {
                "id": item_id,
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            index, added = self._announce(item_id, skeleton)
            out.append(added)
            part = {"type": "output_text", "text": "", "annotations": []}
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
            self._open[item_id] = (index, "")
        index, text = self._open[item_id]
        self._open[item_id] = (index, text + delta)
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=item_id,
                output_index=index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        )
        return out

    def _done(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        item_id = str(item.get("id") or f"item_{len(self._output)}")
        out = []
        if item_id in self._open:
            index, streamed = self._open.pop(item_id)
            text = _text_of(item)
            out.extend(self._text_done(item_id, index, streamed if text is None else text))
        elif item_id not in self._indexes:
            index, added = self._announce(item_id, {**item, "status": "in_progress"})
            out.append(added)
        else:
            index = self._indexes[item_id]
        self._output[index] = item
        out.append(self._event("response.output_item.done", output_index=index, item=item))
        return out

    def _text_done(self, item_id: str, index: int, text: str) -> list[dict[str, Any]]:
        part = {"type": "output_text", "text": text, "annotations": []}
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        return [
            self._event("response.output_text.done", **where, text=text, logprobs=[]),
            self._event("response.content_part.done", **where, part=part),
        ]

    def finish(self) -> list[dict[str, Any]]:
        out = []
        for item_id, (index, text) in list(self._open.items()):
            out.extend(self._text_done(item_id, index, text))
            item = {
                "id": item_id,
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
            self._output[index] = item
            out.append(self._event("response.output_item.done", output_index=index, item=item))
        self._open.clear()
        self._output = [i for i in self._output if i is not None]
        out.append(self._event("response.completed", response=self._snapshot("completed")))
        return out

    def error(self, exc: BaseException) -> dict[str, Any]:
        """The ``error`` event for a failure after the stream began."""
        body = error_event_body(exc)
        detail = body["error"]
        assert isinstance(detail, dict)
        return self._event(
            "error", code=detail.get("error_code"), message=detail.get("message"), param=None, error=detail
        )


def _text_of(item: dict[str, Any]) -> str | None:
    content = item.get("content")
    if not isinstance(content, list):
        return None
    texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "output_text"]
    return "".join(texts) if texts else None


def _sse(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def serve_responses(
    services: Services, caller: Caller, body: bytes, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer one Responses request (its caller authenticated, its body read), errors included."""
    try:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequest(f"The request body is not JSON: {exc}.") from None
        model, request = agent_request(data)
        exchange = Exchange(caller, model, orjson.dumps(request), task=RESPONSES_AGENT)
        answer = await services.dataplane.query(exchange)
    except Exception as exc:
        await send_error(send, exc, scope["path"])
        return
    response_id = f"resp_{exchange.request_id}"
    created_at = int(time.time())
    extra = [] if exchange.cache is None else [(b"x-modelport-cache", exchange.cache.encode())]
    if answer.stream is not None:
        events = ResponsesEvents(response_id=response_id, model=model, created_at=created_at, request=request)
        # The agent's events as Responses events; the stream is closed at once when the client goes
        # away (the agent's generator with it).
        await send_events(receive, send, answer, extra, pump=partial(_pump, events=events))
        return
    agent_answer = answer.data if isinstance(answer.data, dict) else {}
    out = orjson.dumps(
        response_object(
            agent_answer, response_id=response_id, model=model, created_at=created_at, request=request
        )
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(out)).encode()),
                (b"served-model-name", answer.served.encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": out})


async def _pump(send: Send, chunks: Chunks, events: ResponsesEvents) -> None:
    async def emit(batch: list[dict[str, Any]]) -> None:
        if batch:
            await send({"type": "http.response.body", "body": b"".join(map(_sse, batch)), "more_body": True})

    await emit(events.start())
    try:
        async for chunk in chunks:
            try:
                event = orjson.loads(chunk) if isinstance(chunk, bytes | str) else chunk
            except orjson.JSONDecodeError:
                continue
            await emit(events.feed(event))
    except Exception as exc:
        await emit([events.error(exc)])
    else:
        await emit(events.finish())
    await send({"type": "http.response.body", "body": b"", "more_body": False})
