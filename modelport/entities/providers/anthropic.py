"""Anthropic: the Messages API (``POST /v1/messages``), and the translation of the unified
chat schema to and from it.

The translation functions are pure and also serve Anthropic models on Amazon Bedrock
(``bedrock_formats.py``), whose bodies are Messages API bodies without ``model``.

Choices made here, where the two schemas differ:

* ``system`` (and ``developer``) messages are joined into the top-level ``system``;
  ``tool`` messages become ``tool_result`` blocks of a user turn; consecutive turns of
  the same role are merged into one (Anthropic wants all results of a turn's tool calls
  in the next user turn).
* ``max_tokens`` is required by Anthropic: :data:`DEFAULT_MAX_TOKENS` when the caller
  gives neither ``max_tokens`` nor ``max_completion_tokens``.
* ``temperature`` is halved: the unified range is 0-2, Anthropic's 0-1 (as MLflow's
  gateway, which Databricks external models follow, does).
* ``n`` > 1 and OpenAI-only sampling fields (penalties, ``logit_bias``, ``logprobs``,
  ``seed``) are refused rather than dropped; ``extra_params`` go into the body as given.
* The completions task is served by the Messages API, each prompt sent as one user
  message: Anthropic's legacy Text Completions API does not serve current models.
* ``prompt_tokens`` counts cached input too (``cache_creation_input_tokens`` and
  ``cache_read_input_tokens``), as OpenAI's does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from modelport.entities.providers.base import Provider, ProviderContext, credential
from modelport.entities.providers.http import iter_sse, json_of, provider_error, send
from modelport.entities.providers.via_chat import complete_via_chat, stream_completion_via_chat, text_of
from modelport.errors import BadGateway, InvalidParameterValue, ModelportError, PermissionDenied
from modelport.spec.images import image_of
from modelport.spec.llm import CHAT, COMPLETIONS, chat_chunk, chat_response, messages_of, new_id, usage

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "AnthropicProvider",
    "MessagesStream",
    "chat_answer",
    "messages_request",
    "stream_error",
]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: Anthropic's ``error.type`` values and the HTTP status each comes with (for errors that
#: arrive inside a stream, after the 200).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

_UNSUPPORTED_FIELDS = (
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
)


# ---- unified request -> Messages API body ------------------------------------------------------
#: The image media types the Messages API takes.
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _image_block(part: Mapping[str, Any], where: str, urls: bool) -> dict[str, Any]:
    """The ``image`` block of an ``image_url`` part: a ``base64`` source for a data URL, a
    ``url`` source for an https URL (refused when not ``urls``: Bedrock fetches none)."""
    image = image_of(part, where)
    if image.data is not None:
        if image.media_type not in IMAGE_MEDIA_TYPES:
            raise InvalidParameterValue(
                f"{where} is an image of type {image.media_type}: Anthropic models take "
                f"{', '.join(IMAGE_MEDIA_TYPES)}."
            )
        source = {"type": "base64", "media_type": image.media_type, "data": image.data}
        return {"type": "image", "source": source}
    if not urls:
        raise InvalidParameterValue(
            f"{where} is an image URL, but Anthropic models on Bedrock do not fetch URLs (and this "
            "server fetches none for them): send the image as a data URL (data:image/png;base64,...)."
        )
    return {"type": "image", "source": {"type": "url", "url": image.url}}


def _blocks(content: Any, where: str = "content", *, urls: bool = True) -> list[dict[str, Any]]:
    """``content`` (at ``where``, for messages) as Anthropic content blocks (text and
    images; native blocks kept as given)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidParameterValue(f"{where} must be a string or a list of content parts.")
    out: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            out.append({"type": "text", "text": part})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            out.append(_image_block(part, f"{where}[{j}]", urls))
        elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
            out.append({"type": "text", "text": str(part.get("text", ""))})
        elif isinstance(part, dict):
            out.append(dict(part))
        else:
            raise InvalidParameterValue(f"{where}[{j}] must be an object with a 'type'.")
    return out


def _tool_use(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        raise InvalidParameterValue(
            f"tool_calls[].function.arguments of call '{call.get('id')}' is not valid JSON."
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidParameterValue("tool_calls[].function.arguments must be a JSON object.")
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed}


def _turns(messages: list[dict[str, Any]], *, urls: bool = True) -> tuple[str | None, list[dict[str, Any]]]:
    """(system, turns): system messages hoisted, tool messages as tool results, roles merged;
    image URLs become ``url`` sources when ``urls``, else are refused."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m["role"]
        if role in ("system", "developer"):
            system.append(text_of(m.get("content")))
            continue
        where = f"messages[{i}].content"
        if role == "user":
            turn_role, blocks = "user", _blocks(m.get("content"), where, urls=urls)
        elif role == "assistant":
            turn_role, blocks = "assistant", _blocks(m.get("content"), where, urls=urls)
            blocks += [_tool_use(c) for c in m.get("tool_calls") or []]
        elif role == "tool":
            if not m.get("tool_call_id"):
                raise InvalidParameterValue(f"messages[{i}] (role 'tool') needs 'tool_call_id'.")
            result = _blocks(m.get("content"), where, urls=urls)
            turn_role = "user"
            blocks = [{"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": result}]
        else:
            raise InvalidParameterValue(
                f"messages[{i}] has role '{role}'; use system, user, assistant or tool."
            )
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0].get("type") == "text":
            turn["content"] = content[0]["text"]  # the plain form, as most callers write it
    return ("\n".join(s for s in system if s) or None), turns


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidParameterValue("'tools' must be a list.")
    out = []
    for tool in tools:
        if isinstance(tool, dict) and "input_schema" in tool:  # already Anthropic's shape
            out.append(tool)
            continue
        if not isinstance(tool, dict) or tool.get("type") != "function" or "function" not in tool:
            raise InvalidParameterValue("Only tools of type 'function' can be sent to Anthropic models.")
        fn = tool["function"]
        converted = {
            "name": fn.get("name"),
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            converted["description"] = fn["description"]
        out.append(converted)
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    if isinstance(choice, dict) and choice.get("type") in ("auto", "any", "tool", "none"):
        return dict(choice)
    raise InvalidParameterValue(f"'tool_choice' {choice!r} is not auto, none, required or a function.")


def messages_request(body: Mapping[str, Any], *, image_urls: bool = True) -> dict[str, Any]:
    """The Messages API body (without ``model`` and ``stream``) for a unified chat body;
    ``image_urls``: whether an https image URL may be sent as a ``url`` source (Bedrock's
    Claude takes ``base64`` sources only)."""
    system, turns = _turns(messages_of(body), urls=image_urls)
    if not turns:
        raise InvalidParameterValue("A chat request needs at least one user or assistant message.")
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidParameterValue(f"'n' must be 1 for Anthropic models (got {n!r}).")
    for field in _UNSUPPORTED_FIELDS:
        if body.get(field) not in (None, 0, False):
            raise InvalidParameterValue(f"'{field}' is not supported by Anthropic models.")
    out: dict[str, Any] = {
        "messages": turns,
        "max_tokens": body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = system
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            raise InvalidParameterValue("'temperature' must be a number between 0 and 2.")
        out["temperature"] = temperature / 2
    for field in ("top_p", "top_k"):
        if body.get(field) is not None:
            out[field] = body[field]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("parallel_tool_calls") is False:
        out["tool_choice"] = {**out.get("tool_choice", {"type": "auto"}), "disable_parallel_tool_use": True}
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise InvalidParameterValue("'response_format' other than text is not supported by Anthropic models.")
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    extra = body.get("extra_params")
    if isinstance(extra, dict):
        out.update(extra)
    return out


# ---- Messages API answer -> unified answer -----------------------------------------------------
def _usage_of(data: Mapping[str, Any]) -> dict[str, int]:
    u = data.get("usage") or {}
    prompt = (
        int(u.get("input_tokens") or 0)
        + int(u.get("cache_creation_input_tokens") or 0)
        + int(u.get("cache_read_input_tokens") or 0)
    )
    return usage(prompt, u.get("output_tokens"))


def chat_answer(data: Any) -> tuple[dict[str, Any], dict[str, int]]:
    """(choice, usage) of a Messages API answer; the choice is ``{"message", "finish_reason"}``."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise BadGateway(f"Anthropic answered without a 'content' list: {str(data)[:200]}")
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in data["content"]:
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        # thinking and redacted_thinking blocks have no place in the unified answer
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    reason = FINISH_REASONS.get(str(data.get("stop_reason")), "stop")
    return {"message": message, "finish_reason": reason}, _usage_of(data)


def stream_error(provider: str, event: Mapping[str, Any]) -> ModelportError:
    """Our error for an ``error`` event inside a stream (the same table as HTTP answers)."""
    error = event.get("error") or {}
    status = ERROR_STATUS.get(str(error.get("type")), 500)
    return provider_error(provider, status, orjson.dumps(event), {})


class MessagesStream:
    """Turns Messages API stream events into unified chat chunks, one stream at a time.

    :meth:`feed` takes each event (decoded JSON) and returns the chunks it yields;
    :meth:`close` returns the last chunks (finish reason and usage) once the stream has
    ended, and raises :class:`BadGateway` when it ended before the model finished.
    """

    def __init__(self, provider: str, model: str, created: int | None = None) -> None:
        self.provider = provider
        self.model = model
        self.created = created or int(time.time())
        self.id = new_id("chatcmpl")
        self.finish_reason: str | None = None
        self.usage: dict[str, int] = usage(0, 0)
        self._tool_index: dict[int, int] = {}  # content block index -> tool call index

    def _chunk(self, delta: dict[str, Any]) -> dict[str, Any]:
        return chat_chunk(self.id, self.model, self.created, delta)

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            self.usage = _usage_of(event.get("message") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index[int(event.get("index", 0))] = len(self._tool_index)
                call = {
                    "index": index,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self._tool_index.get(int(event.get("index", 0)), 0)
                call = {"index": index, "function": {"arguments": delta.get("partial_json", "")}}
                return [self._chunk({"tool_calls": [call]})]
            return []  # thinking and signature deltas
        if kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                self.finish_reason = FINISH_REASONS.get(str(reason), "stop")
            output = (event.get("usage") or {}).get("output_tokens")
            if output is not None:
                self.usage = usage(self.usage["prompt_tokens"], output)
            return []
        if kind == "error":
            raise stream_error(self.provider, event)
        return []  # ping, content_block_stop, message_stop

    def close(self) -> list[dict[str, Any]]:
        if self.finish_reason is None:
            raise BadGateway(f"Provider '{self.provider}' ended its stream before the model finished.")
        return [chat_chunk(self.id, self.model, self.created, {}, self.finish_reason, self.usage)]


# ---- the provider --------------------------------------------------------------------------------
class AnthropicProvider(Provider):
    """Anthropic's Messages API with the endpoint's ``anthropic_config`` key.

    The base URL is ``https://api.anthropic.com`` unless the server's ``anthropic_base_url``
    setting names another one (a proxy, or a test double).
    """

    provider = "anthropic"
    tasks = frozenset({CHAT, COMPLETIONS})
    streaming = frozenset({CHAT, COMPLETIONS})

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        self.url = ctx.base_url("anthropic", DEFAULT_BASE_URL) + "/v1/messages"

    def _headers(self) -> dict[str, str]:
        key = credential(self.ctx.config, "anthropic_api_key", self.ctx.resolve)
        if not key:
            raise PermissionDenied(
                "The endpoint's anthropic_config has no anthropic_api_key (or anthropic_api_key_plaintext)."
            )
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION, "accept": "application/json"}

    def _body(self, body: Mapping[str, Any], stream: bool = False) -> dict[str, Any]:
        out = {"model": self.ctx.model, **messages_request(body)}
        if stream:
            out["stream"] = True
        return out

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await send(
            self.ctx, self.provider, "POST", self.url, headers=self._headers(), json=self._body(body)
        )
        choice, usage_ = chat_answer(json_of(self.provider, response))
        return chat_response(self.ctx.endpoint, [choice], usage_)

    async def _stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        response = await send(
            self.ctx, self.provider, "POST", self.url, headers=self._headers(), json=payload, stream=True
        )
        translator = MessagesStream(self.provider, self.ctx.endpoint)
        async for _event, data in iter_sse(response):
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise BadGateway(f"Provider '{self.provider}' streamed an event that is not JSON.") from None
            for chunk in translator.feed(event):
                yield chunk
        for chunk in translator.close():
            yield chunk

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream(self._body(body, stream=True))

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        return await complete_via_chat(self.chat, body, self.ctx.endpoint)

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return stream_completion_via_chat(self.chat_stream, body)
