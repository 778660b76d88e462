"""The Gemini ``generateContent`` wire format, shared by Vertex AI and the Gemini API (palm).

Pure translation, no I/O: OpenAI-shaped chat bodies to ``GenerateContentRequest`` and
``GenerateContentResponse`` (whole, or one server-sent event at a time) back to OpenAI
chat answers and chunks.

=========================================  ==============================================
OpenAI                                     Gemini
=========================================  ==============================================
``system``/``developer`` messages          ``systemInstruction.parts[].text``
``user`` / ``assistant``                   ``contents[]`` with role ``user`` / ``model``
``assistant.tool_calls``                   ``model`` parts ``functionCall {name, args}``
``tool`` message                           ``user`` part ``functionResponse {name, response}``
``image_url`` part: data URL / https URL   ``inlineData {mimeType, data}`` / ``fileData
                                           {mimeType, fileUri}`` (media type of the URL's
                                           extension, else ``image/jpeg``)
``max_tokens``, ``temperature``, ``top_p``  ``generationConfig.maxOutputTokens``,
``top_k``, ``stop``, ``n``, ``seed``...     ``temperature``, ``topP``, ``topK``,
                                           ``stopSequences``, ``candidateCount``, ``seed``
``response_format`` json                   ``generationConfig.responseMimeType``
``tools`` / ``tool_choice``                ``tools[].functionDeclarations`` / ``toolConfig``
``extra_params``                           request fields (``safetySettings``, ...) as they
                                           are; anything else into ``generationConfig``
=========================================  ==============================================
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import orjson

from modelport.entities.providers.base import Provider
from modelport.entities.providers.http import iter_sse, json_of, provider_error
from modelport.entities.providers.via_chat import (
    choices_wanted,
    complete_via_chat,
    stream_completion_via_chat,
    text_of,
)
from modelport.errors import BadGateway, InvalidParameterValue
from modelport.spec.images import image_of
from modelport.spec.llm import chat_chunk, chat_response, messages_of, new_id, usage

__all__ = [
    "GeminiChat",
    "chat_answer_from_gemini",
    "chat_to_gemini",
    "chunks_from_gemini",
    "finish_reason_of",
    "schema_for_gemini",
]

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
#: OpenAI chat fields and their ``generationConfig`` names.
_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "n": "candidateCount",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
}
#: ``extra_params`` keys that are fields of the request itself, not of ``generationConfig``.
_REQUEST_FIELDS = frozenset(
    {"safetySettings", "toolConfig", "labels", "cachedContent", "systemInstruction", "tools"}
)
#: What the ``Schema`` of a function declaration may hold (an OpenAPI subset); JSON Schema
#: keywords outside it (``additionalProperties``, ``$schema``, ``strict``...) are dropped.
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "default",
        "items",
        "minItems",
        "maxItems",
        "enum",
        "properties",
        "propertyOrdering",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "minimum",
        "maximum",
    }
)


# ---- requests ----------------------------------------------------------------------------------
def schema_for_gemini(schema: Any) -> Any:
    """A JSON Schema cut down to the keys Gemini's ``Schema`` takes (recursively); a type
    list such as ``["string", "null"]`` becomes ``type`` plus ``nullable``."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: schema_for_gemini(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = schema_for_gemini(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [schema_for_gemini(sub) for sub in value]
        elif key == "type" and isinstance(value, list):
            kinds = [k for k in value if k != "null"]
            out["type"] = kinds[0] if kinds else "string"
            if "null" in value:
                out["nullable"] = True
        else:
            out[key] = value
    return out


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    """An ``image_url`` part as a Gemini part: ``inlineData`` for a data URL, ``fileData``
    (the URL itself, fetched by Google) for an https URL or a ``gs://`` URI, with the media
    type its extension says."""
    image = image_of(part, where, schemes=("https", "gs"))
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type, "data": image.data}}
    return {"fileData": {"mimeType": image.media_type, "fileUri": image.url}}


def _parts(content: Any, where: str = "content") -> list[dict[str, Any]]:
    if not isinstance(content, list):
        text = text_of(content)
        return [{"text": text}] if text else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text", "output_text"):
            parts.append({"text": str(part.get("text") or "")})
        elif kind == "image_url":
            parts.append(_image_part(part, f"{where}[{j}]"))
        else:
            raise InvalidParameterValue(
                f"{where}[{j}] is a part of type {kind!r}: Gemini takes text and image_url content parts."
            )
    return parts


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        raise InvalidParameterValue(f"Tool call arguments must be a JSON object, not {raw!r}.") from None
    if not isinstance(value, dict):
        raise InvalidParameterValue(f"Tool call arguments must be a JSON object, not {raw!r}.")
    return value


def _tool_result(content: Any) -> dict[str, Any]:
    text = text_of(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": value}


def _contents(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(contents, system parts)``; consecutive turns of one role are merged into one."""
    contents: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call_id -> function name, for the tool messages

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, message in enumerate(messages):
        role, content = message["role"], message.get("content")
        where = f"messages[{i}].content"
        if role in ("system", "developer"):
            system.extend(_parts(content, where))
        elif role == "user":
            add("user", _parts(content, where))
        elif role == "assistant":
            parts = _parts(content, where)
            for call in message.get("tool_calls") or []:
                fn = call.get("function") or {}
                call_names[str(call.get("id"))] = fn.get("name", "")
                parts.append(
                    {"functionCall": {"name": fn.get("name", ""), "args": _arguments(fn.get("arguments"))}}
                )
            add("model", parts)
        elif role == "tool":
            name = message.get("name") or call_names.get(str(message.get("tool_call_id")))
            if not name:
                raise InvalidParameterValue(
                    "A 'tool' message needs the 'tool_call_id' of an earlier assistant tool call "
                    "(or a 'name')."
                )
            add("user", [{"functionResponse": {"name": name, "response": _tool_result(content)}}])
        else:
            raise InvalidParameterValue(f"Gemini takes roles system, user, assistant and tool, not {role!r}.")
    if not contents:
        raise InvalidParameterValue("A chat request to Gemini needs at least one user or assistant message.")
    return contents, system


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    declarations = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("type") != "function" or "function" not in tool:
            raise InvalidParameterValue("Gemini takes tools of type 'function' only.")
        fn = tool["function"]
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if fn.get("parameters"):
            decl["parameters"] = schema_for_gemini(fn["parameters"])
        declarations.append(decl)
    if not declarations:
        return [], None
    choice = body.get("tool_choice")
    config: dict[str, Any] | None = None
    if choice == "auto":
        config = {"functionCallingConfig": {"mode": "AUTO"}}
    elif choice == "none":
        config = {"functionCallingConfig": {"mode": "NONE"}}
    elif choice == "required":
        config = {"functionCallingConfig": {"mode": "ANY"}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        config = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return [{"functionDeclarations": declarations}], config


def chat_to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` request for an OpenAI-shaped chat body."""
    contents, system = _contents(messages_of(body))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    generation: dict[str, Any] = {}
    for ours, theirs in _GENERATION.items():
        if body.get(ours) is not None:
            generation[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        generation["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        generation["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            generation["responseSchema"] = schema_for_gemini(schema)
    tools, tool_config = _tools(body)
    if tools:
        out["tools"] = tools
    if tool_config:
        out["toolConfig"] = tool_config
    extra = body.get("extra_params")
    if isinstance(extra, dict):
        for key, value in extra.items():
            name = _camel(key)
            if name in _REQUEST_FIELDS:
                out[name] = value
            else:
                generation[name] = value
    if generation:
        out["generationConfig"] = generation
    return out


# ---- answers -----------------------------------------------------------------------------------
def finish_reason_of(reason: Any) -> str:
    return _FINISH.get(str(reason), "stop")


def _tokens(answer: dict[str, Any]) -> tuple[int, int]:
    meta = answer.get("usageMetadata") or {}
    completion = int(meta.get("candidatesTokenCount") or 0) + int(meta.get("thoughtsTokenCount") or 0)
    return int(meta.get("promptTokenCount") or 0), completion


def _message_of(candidate: dict[str, Any]) -> tuple[dict[str, Any], str]:
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(str(p.get("text") or "") for p in parts if "text" in p and not p.get("thought"))
    calls = [
        {
            "id": new_id("call"),
            "type": "function",
            "function": {
                "name": p["functionCall"].get("name", ""),
                "arguments": orjson.dumps(p["functionCall"].get("args") or {}).decode(),
            },
        }
        for p in parts
        if isinstance(p.get("functionCall"), dict)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["content"] = text or None
        message["tool_calls"] = calls
        return message, "tool_calls"
    return message, finish_reason_of(candidate.get("finishReason"))


def chat_answer_from_gemini(answer: dict[str, Any], model: str, provider: str) -> dict[str, Any]:
    """The OpenAI chat answer for a ``GenerateContentResponse``. A prompt Gemini blocked
    (no candidates, ``promptFeedback.blockReason``) is one empty ``content_filter`` choice."""
    candidates = answer.get("candidates")
    if not candidates:
        if (answer.get("promptFeedback") or {}).get("blockReason"):
            choices = [{"message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter"}]
        else:
            raise BadGateway(f"Provider '{provider}' answered without candidates: {str(answer)[:200]}")
    else:
        ordered = sorted(candidates, key=lambda c: int(c.get("index") or 0))
        choices = []
        for candidate in ordered:
            message, reason = _message_of(candidate)
            choices.append({"message": message, "finish_reason": reason})
    prompt, completion = _tokens(answer)
    return chat_response(model, choices, usage(prompt, completion), id_=answer.get("responseId"))


async def chunks_from_gemini(
    events: AsyncIterator[tuple[str, str]], model: str, provider: str
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI chat chunks for the events of ``streamGenerateContent?alt=sse`` (one choice).

    The finish reason and the usage come in one last chunk, after Gemini's last event.
    """
    id_, created = new_id("chatcmpl"), int(time.time())
    started = False
    finish: str | None = None
    tool_index = 0
    prompt = completion = 0
    async for _event, data in events:
        try:
            answer = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise BadGateway(
                f"Provider '{provider}' sent a stream event that is not JSON: {data[:200]!r}"
            ) from None
        error = answer.get("error")
        if isinstance(error, dict):
            raise provider_error(provider, int(error.get("code") or 502), data.encode(), {})
        if not started:
            id_ = answer.get("responseId") or id_
            yield chat_chunk(id_, model, created, {"role": "assistant", "content": ""})
            started = True
        if answer.get("usageMetadata"):
            prompt, completion = _tokens(answer)
        candidates = answer.get("candidates") or []
        if not candidates and (answer.get("promptFeedback") or {}).get("blockReason"):
            finish = "content_filter"
        for candidate in candidates[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if part.get("text") and not part.get("thought"):
                    yield chat_chunk(id_, model, created, {"content": part["text"]})
                elif isinstance(part.get("functionCall"), dict):
                    call = part["functionCall"]
                    delta = {
                        "index": tool_index,
                        "id": new_id("call"),
                        "type": "function",
                        "function": {
                            "name": call.get("name", ""),
                            "arguments": orjson.dumps(call.get("args") or {}).decode(),
                        },
                    }
                    tool_index += 1
                    yield chat_chunk(id_, model, created, {"tool_calls": [delta]})
            if candidate.get("finishReason"):
                finish = finish_reason_of(candidate["finishReason"])
    if not started:
        raise BadGateway(f"Provider '{provider}' ended its stream without an answer.")
    if tool_index and finish == "stop":
        finish = "tool_calls"
    yield chat_chunk(id_, model, created, {}, finish or "stop", usage(prompt, completion))


class GeminiChat(Provider):
    """Chat and completions on Gemini's ``:generateContent`` API, for the providers that
    serve Gemini models (Vertex AI, and palm through the Gemini API). Subclasses set
    ``url`` (the model's URL, without the method) and ``service`` (how errors name it),
    and implement :meth:`_post` with their own authentication."""

    service: ClassVar[str] = "Gemini"
    url: str

    async def _post(self, url: str, payload: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        raise NotImplementedError

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        choices_wanted(body, most=8)
        response = await self._post(f"{self.url}:generateContent", chat_to_gemini(body))
        return chat_answer_from_gemini(json_of(self.provider, response), self.ctx.endpoint, self.provider)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        if choices_wanted(body) != 1:
            raise InvalidParameterValue(f"Streaming from {self.service} gives one choice; leave 'n' at 1.")
        return self._stream(chat_to_gemini(body))

    async def _stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        response = await self._post(f"{self.url}:streamGenerateContent?alt=sse", payload, stream=True)
        async for chunk in chunks_from_gemini(iter_sse(response), self.ctx.endpoint, self.provider):
            yield chunk

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        return await complete_via_chat(self.chat, body, self.ctx.endpoint)

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return stream_completion_via_chat(self.chat_stream, body)
