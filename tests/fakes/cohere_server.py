"""A loopback Cohere v2 API: ``POST /v2/chat`` (JSON and server-sent events) and ``POST /v2/embed``.

Speaks what api.cohere.com speaks, as the official ``cohere`` SDK reads it (the tests in
``tests/integration/providers/test_cohere.py`` drive ``cohere.ClientV2`` against it):
``Authorization: Bearer <key>``, errors as ``{"message": ...}``, stream events as
``event: <type>`` + ``data: {"type": <type>, ...}`` ending with ``data: [DONE]``.

The reply is ``echo: <last user text>`` unless a test sets :attr:`FakeCohere.reply_text`,
or :attr:`FakeCohere.tool_call` (with tools in the request) for a tool call. Token
counts are word counts, so tests can predict them.
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

API_KEY = "co-test-key"
#: Tokens Cohere adds around the prompt (its chat template): in ``usage.tokens``, not billed.
TEMPLATE_TOKENS = 7
EMBED_DIMENSION = 4
ROLES = {"system", "user", "assistant", "tool"}
INPUT_TYPES = {"search_document", "search_query", "classification", "clustering", "image"}


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"message": message}).encode()


def _words(text: str) -> int:
    return len(text.split())


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def embedding_of(text: str, dimension: int = EMBED_DIMENSION) -> list[float]:
    """The fake's deterministic vector for ``text``."""
    base = [float(len(text)), float(_words(text)), float(sum(map(ord, text)) % 97), 1.0]
    return [base[i % len(base)] + i // len(base) for i in range(dimension)]


class FakeCohere:
    """The fake's state: what it was asked (:attr:`requests`) and how it answers next."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.faults = Faults(_error_body)
        self.requests: list[dict[str, Any]] = []
        self.reply_text: str | None = None
        self.tool_call: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        app = Starlette(
            routes=[
                Route("/v2/chat", self._chat, methods=["POST"]),
                Route("/v2/embed", self._embed, methods=["POST"]),
            ]
        )
        self.server = LoopbackServer(app)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeCohere:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def reset(self) -> None:
        self.faults.reset()
        self.requests.clear()
        self.reply_text = self.tool_call = self.finish_reason = None

    # ---- common -------------------------------------------------------------------------------
    async def _check(self, request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        """The JSON body, or the answer to give instead (a fault, bad auth, bad JSON)."""
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
            return None, Response(fault.body, fault.status, fault.headers, media_type="application/json")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return None, JSONResponse({"message": "invalid api token"}, 401)
        if not isinstance(body, dict):
            return None, JSONResponse({"message": "invalid request: body must be a JSON object"}, 400)
        if not isinstance(body.get("model"), str) or not body["model"]:
            return None, JSONResponse({"message": "invalid request: model must be a string"}, 400)
        return body, None

    # ---- /v2/chat -----------------------------------------------------------------------------
    def _invalid_chat(self, body: dict[str, Any]) -> str | None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "invalid request: messages must be a non-empty array"
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                return f"invalid request: messages[{i}].role must be one of {sorted(ROLES)}"
            if m["role"] == "tool" and not m.get("tool_call_id"):
                return f"invalid request: messages[{i}].tool_call_id is required"
            if m["role"] != "assistant" and "content" not in m:
                return f"invalid request: messages[{i}].content is required"
        for key in ("max_tokens", "k", "seed"):
            if key in body and not isinstance(body[key], int):
                return f"invalid request: {key} must be an integer"
        if "stop_sequences" in body and not isinstance(body["stop_sequences"], list):
            return "invalid request: stop_sequences must be an array"
        if "tool_choice" in body and body["tool_choice"] not in ("REQUIRED", "NONE"):
            return "invalid request: tool_choice must be REQUIRED or NONE"
        return None

    def _reply(self, body: dict[str, Any]) -> dict[str, Any]:
        """What the model 'says': text, or a tool call; finish reason; token counts."""
        messages = body["messages"]
        prompt_words = sum(_words(_text(m.get("content"))) for m in messages)
        if self.tool_call is not None and body.get("tools") and messages[-1]["role"] == "user":
            call = {
                "id": f"call_{uuid.uuid4().hex[:8]}",
                "type": "function",
                "function": {
                    "name": self.tool_call["name"],
                    "arguments": json.dumps(self.tool_call.get("arguments", {})),
                },
            }
            plan = f"I will call {self.tool_call['name']}."
            return {
                "text": "",
                "plan": plan,
                "call": call,
                "finish": "TOOL_CALL",
                "in": prompt_words,
                "out": 5,
            }
        last_user = next((m for m in reversed(messages) if m["role"] in ("user", "tool")), messages[-1])
        text = self.reply_text if self.reply_text is not None else f"echo: {_text(last_user.get('content'))}"
        finish = self.finish_reason or "COMPLETE"
        if isinstance(body.get("max_tokens"), int) and _words(text) > body["max_tokens"]:
            text = " ".join(text.split()[: body["max_tokens"]])
            finish = "MAX_TOKENS"
        return {
            "text": text,
            "plan": None,
            "call": None,
            "finish": finish,
            "in": prompt_words,
            "out": _words(text),
        }

    @staticmethod
    def _usage(reply: dict[str, Any]) -> dict[str, Any]:
        return {
            "billed_units": {"input_tokens": reply["in"], "output_tokens": reply["out"]},
            "tokens": {"input_tokens": reply["in"] + TEMPLATE_TOKENS, "output_tokens": reply["out"]},
        }

    async def _chat(self, request: Request) -> Response:
        body, refusal = await self._check(request)
        if refusal is not None:
            return refusal
        assert body is not None
        problem = self._invalid_chat(body)
        if problem:
            return JSONResponse({"message": problem}, 400)
        reply = self._reply(body)
        msg_id = str(uuid.uuid4())
        if body.get("stream"):
            return StreamingResponse(self._events(msg_id, reply), media_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant"}
        if reply["call"] is not None:
            message["tool_plan"] = reply["plan"]
            message["tool_calls"] = [reply["call"]]
        else:
            message["content"] = [{"type": "text", "text": reply["text"]}]
        return JSONResponse(
            {"id": msg_id, "message": message, "finish_reason": reply["finish"], "usage": self._usage(reply)}
        )

    async def _events(self, msg_id: str, reply: dict[str, Any]) -> AsyncIterator[bytes]:
        def event(kind: str, **fields: Any) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()

        start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        yield event("message-start", id=msg_id, delta={"message": start})
        if reply["call"] is not None:
            yield event("tool-plan-delta", delta={"message": {"tool_plan": reply["plan"]}})
            call = reply["call"]
            head = {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            yield event("tool-call-start", index=0, delta={"message": {"tool_calls": head}})
            args = call["function"]["arguments"]
            for i in range(0, len(args), 8):
                piece = {"function": {"arguments": args[i : i + 8]}}
                yield event("tool-call-delta", index=0, delta={"message": {"tool_calls": piece}})
            yield event("tool-call-end", index=0)
        else:
            yield event(
                "content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}}
            )
            words = reply["text"].split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                yield event("content-delta", index=0, delta={"message": {"content": {"text": piece}}})
            yield event("content-end", index=0)
        end = {"finish_reason": reply["finish"], "usage": self._usage(reply)}
        yield event("message-end", delta=end)
        yield b"data: [DONE]\n\n"

    # ---- /v2/embed ----------------------------------------------------------------------------
    async def _embed(self, request: Request) -> Response:
        body, refusal = await self._check(request)
        if refusal is not None:
            return refusal
        assert body is not None
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return JSONResponse(
                {"message": "invalid request: texts must be a non-empty array of strings"}, 400
            )
        if len(texts) > 96:
            return JSONResponse({"message": "invalid request: texts can have at most 96 items"}, 400)
        if body.get("input_type") not in INPUT_TYPES:
            return JSONResponse(
                {"message": "invalid request: input_type is required for embed-v3.0 and newer models"}, 400
            )
        types = body.get("embedding_types") or ["float"]
        dimension = int(body.get("output_dimension") or EMBED_DIMENSION)
        embeddings: dict[str, Any] = {}
        if "float" in types:
            embeddings["float"] = [embedding_of(t, dimension) for t in texts]
        if "int8" in types:
            embeddings["int8"] = [[int(v) % 128 for v in embedding_of(t, dimension)] for t in texts]
        tokens = sum(_words(t) for t in texts)
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "embeddings": embeddings,
                "texts": texts,
                "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
                "response_type": "embeddings_by_type",
            }
        )
