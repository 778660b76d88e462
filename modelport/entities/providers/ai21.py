"""AI21 Labs (``ai21labs``, block ``ai21labs_config``): Jamba models through AI21 Studio.

=====================  =================================================================
task                   AI21 call
=====================  =================================================================
``llm/v1/chat``        ``POST /studio/v1/chat/completions`` (OpenAI-like body and
                       answer; ``stream: true``: OpenAI-like server-sent events)
``llm/v1/completions`` the same, with each prompt as the only user message (the J2
                       ``/complete`` models it once had are retired)
``llm/v1/embeddings``  not offered by AI21 Studio: 501
=====================  =================================================================

The API base is ``https://api.ai21.com``, or the server's ``ai21_base_url`` setting. Auth is
``Authorization: Bearer <ai21labs_api_key>``. Only the fields Jamba documents are passed
on (``extra_params`` are added as they are), so OpenAI-only fields such as ``user`` or
``logit_bias`` do not make AI21 refuse the query.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson

from modelport.entities.providers.base import Provider, ProviderContext, credential
from modelport.entities.providers.http import iter_sse, json_of, send
from modelport.entities.providers.via_chat import (
    choices_wanted,
    complete_via_chat,
    stream_completion_via_chat,
    text_of,
)
from modelport.errors import BadGateway, InvalidParameterValue, PermissionDenied
from modelport.spec.images import refuse_images
from modelport.spec.llm import (
    CHAT,
    COMPLETIONS,
    chat_chunk,
    chat_response,
    messages_of,
    new_id,
    usage,
    usage_of,
)

__all__ = ["AI21Provider", "chat_answer_from_ai21", "chat_to_ai21", "chunks_from_ai21"]

NAME = "ai21labs"
DEFAULT_BASE = "https://api.ai21.com"
PATH = "/studio/v1/chat/completions"

#: Fields of the Jamba chat body taken from the query as they are.
_FIELDS = ("max_tokens", "temperature", "top_p", "stop", "n", "tools", "response_format", "documents", "seed")
_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


def _message_to_ai21(message: dict[str, Any]) -> dict[str, Any]:
    role = message["role"]
    if role == "developer":
        role = "system"
    if role not in ("system", "user", "assistant", "tool"):
        raise InvalidParameterValue(f"AI21 takes roles system, user, assistant and tool, not {role!r}.")
    out: dict[str, Any] = {"role": role, "content": text_of(message.get("content"))}
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    if role == "tool":
        if not message.get("tool_call_id"):
            raise InvalidParameterValue("A message with role 'tool' needs 'tool_call_id'.")
        out["tool_call_id"] = message["tool_call_id"]
    return out


def chat_to_ai21(body: dict[str, Any], model: str, *, stream: bool = False) -> dict[str, Any]:
    """The Jamba chat body for an OpenAI-shaped chat body."""
    refuse_images(body, f"AI21 model '{model}'")
    out: dict[str, Any] = {"model": model, "messages": [_message_to_ai21(m) for m in messages_of(body)]}
    if body.get("max_completion_tokens") is not None and body.get("max_tokens") is None:
        out["max_tokens"] = body["max_completion_tokens"]
    for key in _FIELDS:
        if body.get(key) is not None:
            out[key] = body[key]
    if isinstance(out.get("stop"), str):
        out["stop"] = [out["stop"]]
    fmt = out.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        out["response_format"] = {"type": "json_object"}  # Jamba knows text and json_object
    extra = body.get("extra_params")
    if isinstance(extra, dict):
        out.update(extra)
    if stream:
        out["stream"] = True
    return out


def _reason(value: Any) -> str:
    return str(value) if value in _REASONS else "stop"


def chat_answer_from_ai21(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """The OpenAI chat answer for a Jamba answer (already close: normalized and re-labelled)."""
    raw_choices = answer.get("choices")
    if not isinstance(raw_choices, list) or not raw_choices:
        raise BadGateway(f"Provider '{NAME}' answered without choices: {str(answer)[:200]}")
    choices = []
    for choice in raw_choices:
        message = choice.get("message") or {}
        out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            out["tool_calls"] = message["tool_calls"]
        elif out["content"] is None:
            out["content"] = ""
        reason = "tool_calls" if message.get("tool_calls") else _reason(choice.get("finish_reason"))
        choices.append({"message": out, "finish_reason": reason})
    prompt, completion, _ = usage_of(answer) or (0, 0, 0)
    return chat_response(model, choices, usage(prompt, completion), id_=answer.get("id"))


async def chunks_from_ai21(
    events: AsyncIterator[tuple[str, str]], model: str
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI chat chunks for Jamba's stream: deltas as they come, then one last chunk with
    the finish reason and the usage (which Jamba may send in the same or a later event)."""
    id_, created = new_id("chatcmpl"), int(time.time())
    finish: str | None = None
    tokens: dict[str, Any] = {}
    saw_tools = False
    async for _event, data in events:
        if data == "[DONE]":
            break
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise BadGateway(
                f"Provider '{NAME}' sent a stream event that is not JSON: {data[:200]!r}"
            ) from None
        if isinstance(chunk.get("error"), dict):
            raise BadGateway(
                f"Provider '{NAME}' broke off its stream: {chunk['error'].get('message', chunk['error'])}"
            )
        id_ = chunk.get("id") or id_
        if chunk.get("usage"):
            tokens = chunk["usage"]
        for choice in chunk.get("choices") or []:
            raw = choice.get("delta") or {}
            delta = {k: raw[k] for k in ("role", "content", "tool_calls") if raw.get(k) is not None}
            if delta.get("tool_calls"):
                saw_tools = True
            if delta and (delta.get("content") or delta.get("tool_calls") or "role" in delta):
                yield chat_chunk(id_, model, created, delta)
            if choice.get("finish_reason"):
                finish = _reason(choice["finish_reason"])
    reason = "tool_calls" if saw_tools else finish or "stop"
    yield chat_chunk(
        id_, model, created, {}, reason, usage(tokens.get("prompt_tokens"), tokens.get("completion_tokens"))
    )


class AI21Provider(Provider):
    """Jamba chat (and completions through it) on AI21 Studio."""

    provider: ClassVar[str] = NAME
    tasks: ClassVar[frozenset[str]] = frozenset({CHAT, COMPLETIONS})
    streaming: ClassVar[frozenset[str]] = frozenset({CHAT, COMPLETIONS})

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        self.url = ctx.base_url("ai21", DEFAULT_BASE) + PATH

    def _headers(self) -> dict[str, str]:
        key = credential(self.ctx.config, "ai21labs_api_key", self.ctx.resolve)
        if not key:
            raise PermissionDenied("The endpoint's ai21labs_config has no ai21labs_api_key.")
        return {"authorization": f"Bearer {key}", "accept": "application/json"}

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        choices_wanted(body, most=16)
        payload = chat_to_ai21(body, self.ctx.model)
        response = await send(self.ctx, NAME, "POST", self.url, headers=self._headers(), json=payload)
        return chat_answer_from_ai21(json_of(NAME, response), self.ctx.endpoint)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        if choices_wanted(body) != 1:
            raise InvalidParameterValue("Streaming from AI21 gives one choice; leave 'n' at 1.")
        return self._stream(chat_to_ai21(body, self.ctx.model, stream=True))

    async def _stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        headers = {**self._headers(), "accept": "text/event-stream"}
        response = await send(self.ctx, NAME, "POST", self.url, headers=headers, json=payload, stream=True)
        async for chunk in chunks_from_ai21(iter_sse(response), self.ctx.endpoint):
            yield chunk

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        return await complete_via_chat(self.chat, body, self.ctx.endpoint)

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return stream_completion_via_chat(self.chat_stream, body)
