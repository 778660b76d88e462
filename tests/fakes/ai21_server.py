"""A loopback AI21 Studio: ``POST /studio/v1/chat/completions`` (Jamba), JSON and server-sent events.

The ``ai21`` SDK is not installed here; the shapes follow AI21's public API reference
("Jamba chat completions"): an OpenAI-like body (``model``, ``messages`` with roles
system/user/assistant/tool, ``tools``, ``n`` 1-16, ``max_tokens``, ``temperature`` 0-2,
``top_p``, ``stop``, ``response_format`` text/json_object, ``documents``, ``stream``) and
answer (``id``, ``choices[{index, message, logprobs, finish_reason}]``, ``usage``, ``meta``).
A stream is ``data: <chunk>`` events, the last one with ``finish_reason`` and ``usage``,
then ``data: [DONE]``. Auth is ``Authorization: Bearer <key>``; errors are FastAPI-style
``{"detail": ...}`` (a list of problems for a 422). The fake refuses fields it does not
know, so a provider that forwards OpenAI-only fields is caught.

The reply is ``echo: <last user text>`` unless :attr:`FakeAI21.reply_text` or
:attr:`FakeAI21.tool_call` (with tools in the request) say otherwise. Tokens are words.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.http_fixture import Faults, LoopbackServer

API_KEY = "ai21-test-key"
FIELDS = {
    "model",
    "messages",
    "tools",
    "n",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "response_format",
    "documents",
    "seed",
}
ROLES = {"system", "user", "assistant", "tool"}


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"detail": message}).encode()


def _words(text: str) -> int:
    return len(text.split())


def _problem(loc: list[Any], msg: str, kind: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body", *loc], "msg": msg, "type": kind}]}, 422)


class FakeAI21:
    """The fake's state: what it was asked (:attr:`requests`) and how it answers next."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.faults = Faults(_error_body)
        self.requests: list[dict[str, Any]] = []
        self.reply_text: str | None = None
        self.tool_call: dict[str, Any] | None = None
        app = Starlette(routes=[Route("/studio/v1/chat/completions", self._chat, methods=["POST"])])
        self.server = LoopbackServer(app)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeAI21:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def reset(self) -> None:
        self.faults.reset()
        self.requests.clear()
        self.reply_text = self.tool_call = None

    def _invalid(self, body: dict[str, Any]) -> JSONResponse | None:
        for key in body:
            if key not in FIELDS:
                return _problem([key], "extra fields not permitted", "value_error.extra")
        if not isinstance(body.get("model"), str):
            return _problem(["model"], "field required", "value_error.missing")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _problem(["messages"], "field required", "value_error.missing")
        for i, m in enumerate(messages):
            if m.get("role") not in ROLES:
                return _problem(
                    ["messages", i, "role"], f"value is not one of {sorted(ROLES)}", "type_error.enum"
                )
            if not isinstance(m.get("content", ""), str):
                return _problem(["messages", i, "content"], "str type expected", "type_error.str")
            if m["role"] == "tool" and not m.get("tool_call_id"):
                return _problem(["messages", i, "tool_call_id"], "field required", "value_error.missing")
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 16:
            return _problem(["n"], "ensure this value is between 1 and 16", "value_error.number")
        if not 0 <= body.get("temperature", 0) <= 2:
            return _problem(["temperature"], "ensure this value is between 0 and 2", "value_error.number")
        stop = body.get("stop", [])
        if not isinstance(stop, str | list):
            return _problem(["stop"], "str or list expected", "type_error")
        fmt = body.get("response_format")
        if fmt is not None and fmt.get("type") not in ("text", "json_object"):
            return _problem(
                ["response_format", "type"], "value is not one of text, json_object", "type_error.enum"
            )
        return None

    def _reply(self, body: dict[str, Any]) -> tuple[dict[str, Any], str, int, int]:
        """(message, finish_reason, prompt tokens, completion tokens)."""
        messages = body["messages"]
        prompt = sum(_words(str(m.get("content") or "")) for m in messages)
        if self.tool_call is not None and body.get("tools") and messages[-1]["role"] == "user":
            call = {
                "id": f"call_{uuid.uuid4().hex[:8]}",
                "type": "function",
                "function": {
                    "name": self.tool_call["name"],
                    "arguments": json.dumps(self.tool_call.get("arguments", {})),
                },
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", prompt, 4
        last = next(m for m in reversed(messages) if m["role"] in ("user", "tool"))
        text = self.reply_text if self.reply_text is not None else f"echo: {last.get('content')}"
        finish = "stop"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and _words(text) > limit:
            text, finish = " ".join(text.split()[:limit]), "length"
        return {"role": "assistant", "content": text, "tool_calls": None}, finish, prompt, _words(text)

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append({"path": request.url.path, "headers": dict(request.headers), "json": body})
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        fault = self.faults.take()
        if fault is not None:
            return Response(fault.body, fault.status, fault.headers, media_type="application/json")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"detail": "Forbidden: Bad or missing API token."}, 401)
        if not isinstance(body, dict):
            return JSONResponse({"detail": "Invalid JSON body"}, 400)
        refusal = self._invalid(body)
        if refusal is not None:
            return refusal
        message, finish, prompt, completion = self._reply(body)
        n = body.get("n", 1)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion * n,
            "total_tokens": prompt + completion * n,
        }
        answer_id = f"chat-{uuid.uuid4().hex}"
        if body.get("stream"):
            return StreamingResponse(
                self._events(answer_id, message, finish, usage), media_type="text/event-stream"
            )
        choices = [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(n)
        ]
        return JSONResponse(
            {
                "id": answer_id,
                "choices": choices,
                "usage": usage,
                "meta": {"requestDurationMillis": 12},
                "model": body["model"],
            }
        )

    async def _events(
        self, answer_id: str, message: dict[str, Any], finish: str, usage: dict[str, int]
    ) -> AsyncIterator[bytes]:
        def event(
            delta: dict[str, Any], reason: str | None = None, tokens: dict[str, int] | None = None
        ) -> bytes:
            chunk = {
                "id": answer_id,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
                "usage": tokens,
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        yield event({"role": "assistant", "content": ""})
        if message.get("tool_calls"):
            calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
            yield event({"tool_calls": calls})
        else:
            for i, word in enumerate(message["content"].split(" ")):
                yield event({"content": word if i == 0 else " " + word})
        yield event({"content": ""}, finish, usage)
        yield b"data: [DONE]\n\n"
