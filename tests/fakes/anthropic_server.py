"""A loopback double of Anthropic's Messages API (``POST /v1/messages``).

It checks what Anthropic checks (``x-api-key``, ``anthropic-version``, the body's shape:
roles, ``max_tokens``, tool results that answer the previous turn's tool calls, unknown
fields, ``image`` blocks: a ``base64`` source whose data is base64 of an image of its
``media_type``, or an https ``url`` source, which Bedrock refuses) and answers in
Anthropic's shapes: a message, server-sent events (``message_start`` ... ``message_stop``,
``ping``, mid-stream ``error``), and error bodies
``{"type": "error", "error": {"type", "message"}}``.

What the model says is deterministic: a queued :meth:`FakeAnthropic.reply`, else a call
of the first tool when tools are offered, else an echo of the last user message
(``"You said: ..."``, an image block said as ``[image base64]`` or ``[image url]``;
:func:`image_blocks` lists a body's images). Tokens are whitespace-separated words;
``max_tokens`` and ``stop_sequences`` cut the answer as Anthropic would. The Bedrock double
reuses :func:`check_body`, :func:`make_message` and :func:`stream_events` for Claude on Bedrock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.http_fixture import Faults, LoopbackServer

API_KEY = "sk-ant-api03-test-key"
VERSION = "2023-06-01"
#: ``anthropic-version`` values accepted: the documented one, and the one the installed SDK sends.
VERSIONS = (VERSION, "2026-10-21")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "service_tier",
}
_BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}


def error_body(status: int, message: str) -> bytes:
    kind = ERROR_TYPES.get(status, "api_error")
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


class Invalid(Exception):
    """A request Anthropic would refuse with 400 ``invalid_request_error``."""


#: The first bytes of each image media type the Messages API takes.
IMAGE_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


def _image(block: dict[str, Any], where: str, *, bedrock: bool) -> None:
    """Refuse an ``image`` block as Anthropic (or Bedrock, which takes base64 sources only) does."""
    source = block.get("source")
    kinds = ("base64",) if bedrock else ("base64", "url")
    if not isinstance(source, dict) or source.get("type") not in kinds:
        found = source.get("type") if isinstance(source, dict) else source
        raise Invalid(
            f"{where}.image.source: Input tag '{found}' found using 'type' does not match any of the "
            f"expected tags: {', '.join(repr(k) for k in kinds)}"
        )
    if source["type"] == "url":
        url = source.get("url")
        if set(source) != {"type", "url"} or not isinstance(url, str) or not url.startswith("https://"):
            raise Invalid(f"{where}.image.source.url: must be an https URL")
        return
    if set(source) != {"type", "media_type", "data"}:
        raise Invalid(f"{where}.image.source.base64: needs exactly type, media_type and data")
    media_type = source["media_type"]
    if media_type not in IMAGE_MAGIC:
        raise Invalid(
            f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
            "'image/gif' or 'image/webp'"
        )
    try:
        data = base64.b64decode(source["data"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise Invalid(f"{where}.image.source.base64.data: invalid base64 data") from None
    if not data.startswith(IMAGE_MAGIC[media_type]):
        raise Invalid(
            f"{where}.image.source.base64.data: Image does not match the provided media type {media_type}"
        )


def image_blocks(body: Any) -> list[dict[str, Any]]:
    """The ``image`` blocks of every message of a Messages API body, in order."""
    return [
        block
        for m in body.get("messages") or []
        if isinstance(m.get("content"), list)
        for block in m["content"]
        if isinstance(block, dict) and block.get("type") == "image"
    ]


def _blocks(content: Any, where: str, *, bedrock: bool = False) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise Invalid(f"{where}: Input should be a valid string or list")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            raise Invalid(
                f"{where}.{j}: Input tag '{block.get('type') if isinstance(block, dict) else block}' "
                "found using 'type' does not match any of the expected tags"
            )
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise Invalid(f"{where}.{j}.text: Field required")
        if block["type"] == "image":
            _image(block, f"{where}.{j}", bedrock=bedrock)
        if block["type"] == "tool_use" and not isinstance(block.get("input"), dict):
            raise Invalid(f"{where}.{j}.tool_use.input: Input should be a valid dictionary")
    return content


def check_body(body: Any, *, bedrock: bool = False) -> None:
    """Raise :class:`Invalid` for what the Messages API refuses (with Bedrock's rules when
    ``bedrock``: ``anthropic_version`` in the body, no ``model`` or ``stream``)."""
    if not isinstance(body, dict):
        raise Invalid("The request body is not valid JSON.")
    allowed = set(_FIELDS)
    if bedrock:
        allowed = (allowed - {"model", "stream", "metadata", "service_tier"}) | {
            "anthropic_version",
            "anthropic_beta",
        }
        if body.get("anthropic_version") != "bedrock-2023-05-31":
            raise Invalid("Malformed input request: #: required key [anthropic_version] not found")
    for key in body:
        if key not in allowed:
            raise Invalid(
                f"Malformed input request: #: extraneous key [{key}] is not permitted"
                if bedrock
                else f"{key}: Extra inputs are not permitted"
            )
    if not bedrock and not isinstance(body.get("model"), str):
        raise Invalid("model: Field required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise Invalid("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: at least one message is required")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise Invalid("system: Input should be a valid string or list")
    for name, low, high in (("temperature", 0, 1), ("top_p", 0, 1)):
        value = body.get(name)
        if value is not None and not (isinstance(value, int | float) and low <= value <= high):
            raise Invalid(f"{name}: range: {low}..{high}")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise Invalid("stop_sequences: Input should be a valid list of strings")
    for i, tool in enumerate(body.get("tools") or []):
        schema = tool.get("input_schema") if isinstance(tool, dict) else None
        if (
            not isinstance(tool.get("name"), str)
            or not isinstance(schema, dict)
            or schema.get("type") != "object"
        ):
            raise Invalid(f"tools.{i}.custom.input_schema: Field required")
    choice = body.get("tool_choice")
    if choice is not None and (
        not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none")
    ):
        raise Invalid("tool_choice: Input tag does not match any of the expected tags")
    pending: set[str] = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = _blocks(m.get("content"), f"messages.{i}.content", bedrock=bedrock)
        results = {b.get("tool_use_id") for b in blocks if b["type"] == "tool_result"}
        if m["role"] == "assistant" and results:
            raise Invalid(f"messages.{i}.content: tool_result blocks are only allowed in user messages")
        unexpected = results - pending
        if unexpected:
            raise Invalid(
                f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{sorted(unexpected)[0]}. Each `tool_result` block must have a corresponding `tool_use` "
                "block in the previous message."
            )
        if pending - results:
            raise Invalid(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {sorted(pending - results)[0]}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
        pending = {b["id"] for b in blocks if b["type"] == "tool_use"} if m["role"] == "assistant" else set()


# ---- what the model says ----------------------------------------------------------------------
def _words(text: str) -> int:
    return len(text.split())


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for b in content:
        if b["type"] == "text":
            parts.append(b["text"])
        elif b["type"] == "image":
            parts.append(f"[image {b['source']['type']}]")
        elif b["type"] == "tool_result":
            parts.append(_text(b.get("content") or ""))
    return " ".join(parts)


def _example(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties") or {}
    out: dict[str, Any] = {}
    for name in schema.get("required") or list(props)[:1]:
        kind = (props.get(name) or {}).get("type")
        out[name] = 1 if kind in ("integer", "number") else True if kind == "boolean" else f"{name}-value"
    return out


def make_message(body: dict[str, Any], model: str, reply: Reply | None = None) -> dict[str, Any]:
    """The message Anthropic would answer ``body`` with (see the module docstring)."""
    messages = body["messages"]
    last = messages[-1]
    system = body.get("system") or ""
    input_tokens = _words(system if isinstance(system, str) else _text(system)) + sum(
        _words(_text(m["content"])) for m in messages
    )
    stop_sequence = None
    choice = body.get("tool_choice") or {"type": "auto"}
    last_blocks = _blocks(last["content"], "")
    if reply is not None:
        content, stop_reason = reply.content, reply.stop_reason
    elif (
        body.get("tools")
        and choice["type"] != "none"
        and not any(b["type"] == "tool_result" for b in last_blocks)
    ):
        tool = next((t for t in body["tools"] if t["name"] == choice.get("name")), body["tools"][0])
        call = {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:20]}",
            "name": tool["name"],
            "input": _example(tool["input_schema"]),
        }
        content, stop_reason = [{"type": "text", "text": "Let me check."}, call], "tool_use"
    else:
        prefix = "Tool said: " if any(b["type"] == "tool_result" for b in last_blocks) else "You said: "
        text = prefix + _text(last["content"])
        stop_reason = "end_turn"
        for stop in body.get("stop_sequences") or []:
            at = text.find(stop)
            if at >= 0:
                text, stop_reason, stop_sequence = text[:at], "stop_sequence", stop
                break
        words = text.split(" ")
        if len(words) > body["max_tokens"]:
            text, stop_reason, stop_sequence = " ".join(words[: body["max_tokens"]]), "max_tokens", None
        content = [{"type": "text", "text": text}]
    output_tokens = sum(_words(b.get("text", "")) or 5 for b in content)
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def stream_events(message: dict[str, Any], *, error_type: str | None = None) -> list[dict[str, Any]]:
    """The stream events of ``message``; with ``error_type``, an ``error`` event follows the
    first delta and the stream ends there."""
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**message["usage"], "output_tokens": 1},
    }
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            )
            if index == 0:
                events.append({"type": "ping"})
            words = block["text"].split(" ")
            for j, word in enumerate(words):
                piece = word if j == 0 else " " + word
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    }
                )
        else:
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}
            )
            raw = json.dumps(block["input"])
            half = len(raw) // 2
            for piece in ("", raw[:half], raw[half:]):
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    }
                )
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    if error_type is not None:
        first = next(i for i, e in enumerate(events) if e["type"] == "content_block_delta")
        events = [
            *events[: first + 1],
            {"type": "error", "error": {"type": error_type, "message": f"fake {error_type}"}},
        ]
    return events


# ---- the server -------------------------------------------------------------------------------
@dataclass
class Reply:
    """A scripted answer: Anthropic content blocks and a stop reason."""

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"


@dataclass
class Received:
    headers: dict[str, str]
    body: Any


@dataclass
class FakeAnthropic:
    """The double; ``with FakeAnthropic() as fake:`` serves it at ``fake.url``.

    Knobs: ``faults`` (:class:`~tests.fakes.http_fixture.Faults`: error statuses, delay),
    :meth:`reply` (script the next answer), ``stream_error`` (an Anthropic error type sent
    inside the next streams). ``received`` lists every request, newest last.
    """

    api_key: str = API_KEY
    faults: Faults = field(default_factory=lambda: Faults(error_body))
    received: list[Received] = field(default_factory=list)
    stream_error: str | None = None
    _replies: deque[Reply] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])
        self.server = LoopbackServer(self.app)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeAnthropic:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reply(self, content: list[dict[str, Any]], stop_reason: str = "end_turn") -> None:
        with self._lock:
            self._replies.append(Reply(content, stop_reason))

    def reset(self) -> None:
        self.faults.reset()
        self.received.clear()
        self.stream_error = None
        with self._lock:
            self._replies.clear()

    @property
    def last(self) -> Any:
        return self.received[-1].body

    async def _messages(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.received.append(Received(dict(request.headers), body))
        ids = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        fault = self.faults.take()
        if fault is not None:
            return Response(fault.body, fault.status, {**ids, **fault.headers}, media_type="application/json")
        # The API takes the key as x-api-key, or (what SDK 2.x sends) as a bearer token.
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in (request.headers.get("x-api-key"), bearer):
            return _error(401, "invalid x-api-key", ids)
        version = request.headers.get("anthropic-version")
        if version is None:
            return _error(400, "anthropic-version: header is required", ids)
        if version not in VERSIONS:
            return _error(400, f"anthropic-version: invalid version '{version}'", ids)
        try:
            check_body(body)
        except Invalid as exc:
            return _error(400, str(exc), ids)
        if not body["model"].startswith("claude"):
            return _error(404, f"model: {body['model']}", ids)
        with self._lock:
            scripted = self._replies.popleft() if self._replies else None
        message = make_message(body, body["model"], scripted)
        if not body.get("stream"):
            return JSONResponse(message, headers=ids)
        events = stream_events(message, error_type=self.stream_error)
        return StreamingResponse(_sse(events), media_type="text/event-stream", headers=ids)


def _error(status: int, message: str, headers: dict[str, str]) -> Response:
    return Response(error_body(status, message), status, headers, media_type="application/json")


async def _sse(events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for event in events:
        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
        await asyncio.sleep(0)
