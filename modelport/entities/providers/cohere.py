"""Cohere (``cohere``, block ``cohere_config``) through the v2 API.

=====================  =================================================================
task                   Cohere call
=====================  =================================================================
``llm/v1/chat``        ``POST /v2/chat`` (``stream: true``: v2 server-sent events);
                       ``n`` > 1 is ``n`` concurrent calls (Cohere answers one message)
``llm/v1/completions`` ``POST /v2/chat`` with each prompt as the only user message
``llm/v1/embeddings``  ``POST /v2/embed`` with ``embedding_types: ["float"]``, at most 96
                       texts a call; ``input_type`` is ``search_document`` unless the
                       query's ``extra_params`` say otherwise
=====================  =================================================================

The API base is the block's ``cohere_api_base``, else the server's ``cohere_base_url`` setting, else
``https://api.cohere.com``. Auth is ``Authorization: Bearer <cohere_api_key>``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson

from modelport.entities.providers.base import Provider, ProviderContext, credential
from modelport.entities.providers.http import iter_sse, json_of, send
from modelport.entities.providers.via_chat import (
    choices_wanted,
    complete_via_chat,
    merge_chat_answers,
    stream_completion_via_chat,
    text_of,
)
from modelport.errors import BadGateway, InvalidParameterValue, PermissionDenied
from modelport.spec.images import refuse_images
from modelport.spec.llm import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    chat_chunk,
    chat_response,
    embeddings_response,
    inputs_of,
    messages_of,
    new_id,
    usage,
)

__all__ = [
    "CohereProvider",
    "chat_answer_from_cohere",
    "chat_to_cohere",
    "chunks_from_cohere",
    "embed_to_cohere",
    "finish_reason_of",
]

NAME = "cohere"
DEFAULT_BASE = "https://api.cohere.com"
#: Most texts one ``/v2/embed`` call takes.
EMBED_BATCH = 96

_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
#: OpenAI chat fields with a Cohere counterpart of another name (same meaning).
_RENAMED = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "p",
    "top_k": "k",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "logprobs": "logprobs",
}


# ---- requests ----------------------------------------------------------------------------------
def _user_content(content: Any) -> Any:
    if not isinstance(content, list):
        return text_of(content)
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "image_url":
            parts.append({"type": "image_url", "image_url": part["image_url"]})
        else:
            raise InvalidParameterValue(f"Cohere takes text and image_url content parts, not {kind!r}.")
    return parts


def _message_to_cohere(message: dict[str, Any]) -> dict[str, Any]:
    role = message["role"]
    content = message.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": text_of(content)}
    if role == "user":
        return {"role": "user", "content": _user_content(content)}
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        calls = message.get("tool_calls") or []
        if calls:
            out["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {
                        "name": call["function"]["name"],
                        "arguments": call["function"].get("arguments") or "{}",
                    },
                }
                for call in calls
            ]
        text = text_of(content)
        if text or not calls:
            out["content"] = text
        return out
    if role == "tool":
        if not message.get("tool_call_id"):
            raise InvalidParameterValue("A message with role 'tool' needs 'tool_call_id'.")
        return {"role": "tool", "tool_call_id": message["tool_call_id"], "content": text_of(content)}
    raise InvalidParameterValue(f"Cohere takes roles system, user, assistant and tool, not {role!r}.")


def _tools_to_cohere(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function" or "function" not in tool:
            raise InvalidParameterValue("Cohere takes tools of type 'function' only.")
        fn = tool["function"]
        decl: dict[str, Any] = {"name": fn["name"], "parameters": fn.get("parameters") or {"type": "object"}}
        if fn.get("description"):
            decl["description"] = fn["description"]
        out.append({"type": "function", "function": decl})
    return out


def chat_to_cohere(body: dict[str, Any], model: str, *, stream: bool = False) -> dict[str, Any]:
    """The ``/v2/chat`` body for an OpenAI-shaped chat body (``n`` is the caller's business).
    ``image_url`` parts pass as they are (Cohere's shape too) to vision models (a name with
    ``vision``: ``command-a-vision-07-2025``); other Cohere models take no images (400)."""
    if "vision" not in model.lower():
        refuse_images(body, f"Cohere model '{model}'")
    out: dict[str, Any] = {"model": model, "messages": [_message_to_cohere(m) for m in messages_of(body)]}
    for ours, theirs in _RENAMED.items():
        if body.get(ours) is not None:
            out[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        out["tools"] = _tools_to_cohere(tools)
        choice = body.get("tool_choice")
        if choice == "required":
            out["tool_choice"] = "REQUIRED"
        elif choice == "none":
            out["tool_choice"] = "NONE"
        elif isinstance(choice, dict):
            # Cohere cannot name the tool to call: offer only that one, and require a call.
            wanted = choice.get("function", {}).get("name")
            out["tools"] = [t for t in out["tools"] if t["function"]["name"] == wanted]
            out["tool_choice"] = "REQUIRED"
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        out["response_format"] = {"type": "json_object", **({"json_schema": schema} if schema else {})}
    extra = body.get("extra_params")
    if isinstance(extra, dict):
        out.update(extra)
    if stream:
        out["stream"] = True
    return out


def embed_to_cohere(body: dict[str, Any], model: str, texts: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model,
        "texts": texts,
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    if body.get("dimensions") is not None:
        out["output_dimension"] = body["dimensions"]
    extra = body.get("extra_params")
    if isinstance(extra, dict):
        out.update(extra)
    return out


# ---- answers -----------------------------------------------------------------------------------
def finish_reason_of(reason: Any) -> str:
    return _FINISH.get(str(reason), "stop")


def _tokens(answer_usage: Any) -> tuple[int, int]:
    """(prompt, completion) tokens: the billed units, else the raw token counts."""
    if not isinstance(answer_usage, dict):
        return 0, 0
    for key in ("billed_units", "tokens"):
        part = answer_usage.get(key)
        if isinstance(part, dict) and (part.get("input_tokens") or part.get("output_tokens")):
            return int(part.get("input_tokens") or 0), int(part.get("output_tokens") or 0)
    return 0, 0


def chat_answer_from_cohere(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """The OpenAI chat answer for a ``/v2/chat`` answer."""
    message = answer.get("message")
    if not isinstance(message, dict):
        raise BadGateway(f"Provider '{NAME}' answered without a message: {str(answer)[:200]}")
    text = "".join(
        str(item.get("text") or "") for item in message.get("content") or [] if item.get("type") == "text"
    )
    out: dict[str, Any] = {"role": "assistant", "content": text}
    calls = message.get("tool_calls") or []
    if calls:
        out["content"] = text or None
        out["tool_calls"] = [
            {
                "id": call.get("id") or new_id("call"),
                "type": "function",
                "function": {
                    "name": (call.get("function") or {}).get("name", ""),
                    "arguments": (call.get("function") or {}).get("arguments") or "{}",
                },
            }
            for call in calls
        ]
    prompt, completion = _tokens(answer.get("usage"))
    return chat_response(
        model,
        [{"message": out, "finish_reason": finish_reason_of(answer.get("finish_reason"))}],
        usage(prompt, completion),
    )


async def chunks_from_cohere(
    events: AsyncIterator[tuple[str, str]], model: str
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI chat chunks for the events of a streaming ``/v2/chat`` answer."""
    id_, created = new_id("chatcmpl"), int(time.time())
    async for _event, data in events:
        if data == "[DONE]":
            break
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise BadGateway(
                f"Provider '{NAME}' sent a stream event that is not JSON: {data[:200]!r}"
            ) from None
        kind = event.get("type")
        delta = event.get("delta") or {}
        message = delta.get("message") or {}
        if kind == "message-start":
            id_ = event.get("id") or id_
            yield chat_chunk(id_, model, created, {"role": "assistant", "content": ""})
        elif kind in ("content-start", "content-delta"):
            text = (message.get("content") or {}).get("text")
            if text:
                yield chat_chunk(id_, model, created, {"content": text})
        elif kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            fn = call.get("function") or {}
            tool_delta = {
                "index": event.get("index", 0),
                "id": call.get("id") or new_id("call"),
                "type": "function",
                "function": {"name": fn.get("name", ""), "arguments": fn.get("arguments") or ""},
            }
            yield chat_chunk(id_, model, created, {"tool_calls": [tool_delta]})
        elif kind == "tool-call-delta":
            arguments = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments")
            if arguments:
                tool_delta = {"index": event.get("index", 0), "function": {"arguments": arguments}}
                yield chat_chunk(id_, model, created, {"tool_calls": [tool_delta]})
        elif kind == "message-end":
            if delta.get("error"):
                raise BadGateway(f"Provider '{NAME}' ended its stream with an error: {delta['error']}")
            prompt, completion = _tokens(delta.get("usage"))
            reason = finish_reason_of(delta.get("finish_reason"))
            yield chat_chunk(id_, model, created, {}, reason, usage(prompt, completion))
            break
        # tool-plan-delta, tool-call-end, content-end, citation-*, debug: nothing to pass on.


# ---- the provider ------------------------------------------------------------------------------
class CohereProvider(Provider):
    """Cohere's v2 API; every call resolves the API key anew (secret rotation)."""

    provider: ClassVar[str] = NAME
    tasks: ClassVar[frozenset[str]] = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})
    streaming: ClassVar[frozenset[str]] = frozenset({CHAT, COMPLETIONS})

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        base = ctx.config.get("cohere_api_base") or ctx.base_url("cohere", DEFAULT_BASE)
        base = str(base).rstrip("/")
        # Accept a base given with its version segment ("https://api.cohere.com/v1").
        for suffix in ("/v1", "/v2"):
            base = base.removesuffix(suffix)
        self.base = base

    def _headers(self) -> dict[str, str]:
        key = credential(self.ctx.config, "cohere_api_key", self.ctx.resolve)
        if not key:
            raise PermissionDenied("The endpoint's cohere_config has no cohere_api_key.")
        return {"authorization": f"Bearer {key}", "accept": "application/json"}

    async def _chat_once(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = chat_to_cohere(body, self.ctx.model)
        response = await send(
            self.ctx, NAME, "POST", f"{self.base}/v2/chat", headers=self._headers(), json=payload
        )
        return chat_answer_from_cohere(json_of(NAME, response), self.ctx.endpoint)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        n = choices_wanted(body)
        if n == 1:
            return await self._chat_once(body)
        answers = await asyncio.gather(*(self._chat_once(body) for _ in range(n)))
        return merge_chat_answers(list(answers))

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        if choices_wanted(body) != 1:
            raise InvalidParameterValue("Streaming from Cohere gives one choice; leave 'n' at 1.")
        payload = chat_to_cohere(body, self.ctx.model, stream=True)
        return self._stream(payload)

    async def _stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        headers = {**self._headers(), "accept": "text/event-stream"}
        response = await send(
            self.ctx, NAME, "POST", f"{self.base}/v2/chat", headers=headers, json=payload, stream=True
        )
        async for chunk in chunks_from_cohere(iter_sse(response), self.ctx.endpoint):
            yield chunk

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        return await complete_via_chat(self.chat, body, self.ctx.endpoint)

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return stream_completion_via_chat(self.chat_stream, body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = inputs_of(body)
        batches = [texts[i : i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]
        answers = await asyncio.gather(*(self._embed(body, batch) for batch in batches))
        vectors: list[list[float]] = []
        tokens = 0
        for batch_vectors, batch_tokens in answers:
            vectors.extend(batch_vectors)
            tokens += batch_tokens
        return embeddings_response(self.ctx.endpoint, vectors, tokens)

    async def _embed(self, body: dict[str, Any], texts: list[str]) -> tuple[list[list[float]], int]:
        payload = embed_to_cohere(body, self.ctx.model, texts)
        response = await send(
            self.ctx, NAME, "POST", f"{self.base}/v2/embed", headers=self._headers(), json=payload
        )
        answer = json_of(NAME, response)
        vectors = (answer.get("embeddings") or {}).get("float")
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise BadGateway(f"Provider '{NAME}' answered /v2/embed without one float vector per text.")
        meta = answer.get("meta") or {}
        tokens = (meta.get("billed_units") or {}).get("input_tokens") or (meta.get("tokens") or {}).get(
            "input_tokens"
        )
        return vectors, int(tokens or 0)
