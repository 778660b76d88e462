"""The ``llm/v1`` wire schema (compat-api.md §B.2-§B.5): tasks, requests, answers, chunks. No I/O.

Requests and answers are the OpenAI shapes, as plain dicts: chat (``messages``),
completions (``prompt``) and embeddings (``input``). Everything that reads or writes them
goes through here: external providers (``entities/providers``), the engines on this
machine (``entities/foundation``) and the gateway.

- Requests: :func:`check_request` checks what every query of a task must hold (its input
  field, ``stream``, ``stream_options``, ``encoding_format``) and returns an
  :class:`LlmRequest`; :func:`messages_of`, :func:`prompts_of` and :func:`inputs_of` read
  and check the input field itself. Every mistake is an
  :class:`~modelport.errors.InvalidParameterValue` naming the field.
- Answers and chunks: :func:`chat_response`, :func:`chat_chunk`,
  :func:`completion_response`, :func:`completion_chunk`, :func:`embeddings_response`
  (and :func:`base64_embeddings` for ``encoding_format: "base64"``).
- Reading them back: :func:`usage_of`, the token counts of an answer or a chunk.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from modelport.errors import BadGateway, InvalidParameterValue, MalformedRequest
from modelport.spec.images import ImageLimits, check_images

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "EMBEDDINGS",
    "OPENAI_ROUTES",
    "OUR_FIELDS",
    "TASKS",
    "LlmRequest",
    "Task",
    "base64_embeddings",
    "chat_chunk",
    "chat_response",
    "check_request",
    "completion_chunk",
    "completion_response",
    "embeddings_response",
    "inputs_of",
    "json_object",
    "messages_of",
    "new_id",
    "passthrough",
    "prompts_of",
    "usage",
    "usage_of",
]


class Task(StrEnum):
    """What an endpoint serves; the value is the wire name (``external_model.task``)."""

    CHAT = "llm/v1/chat"
    COMPLETIONS = "llm/v1/completions"
    EMBEDDINGS = "llm/v1/embeddings"


CHAT = Task.CHAT
COMPLETIONS = Task.COMPLETIONS
EMBEDDINGS = Task.EMBEDDINGS
TASKS = tuple(Task)

#: Fields of a query body that are ours, not the model's (compat-api.md §B.2).
OUR_FIELDS = frozenset({"model", "stream", "stream_options", "client_request_id", "usage_context"})

#: The input field of each task, and what it holds (for the message of a body without it).
_NEEDS = {
    CHAT: ("messages", "a list of {role, content} messages"),
    COMPLETIONS: ("prompt", "a string or a list of strings"),
    EMBEDDINGS: ("input", "a string or a list of strings"),
}
#: Input fields of any kind of query, named when a body has none of its task's.
_INPUT_FIELDS = ("messages", "prompt", "input", "dataframe_split", "dataframe_records", "instances", "inputs")


# ---- requests -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LlmRequest:
    """What :func:`check_request` found in a body: its task and how to answer it."""

    task: Task
    stream: bool = False
    #: ``stream_options.include_usage``: the usage in a last chunk of its own.
    include_usage: bool = False
    #: Embeddings: vectors as base64 of little-endian float32 (``encoding_format: "base64"``).
    base64: bool = False


def _flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidParameterValue(f"'{key}' must be true or false; got {value!r}.")
    return value


def check_request(
    body: Mapping[str, Any], task: str, *, endpoint: str | None = None, images: ImageLimits | None = None
) -> LlmRequest:
    """Check that ``body`` is a query for ``task``: it has the task's input field, and
    ``stream``, ``stream_options`` and ``encoding_format`` are what they may be (embeddings
    are never streamed). The input field's content is read by :func:`messages_of`,
    :func:`prompts_of` or :func:`inputs_of`. ``endpoint`` names the endpoint in the message
    about a missing input field. With ``images``, the image parts of a chat request are
    checked against those limits (``spec/images.py``: well formed, how many, how big)."""
    kind = Task(task)
    field, shape = _NEEDS[kind]
    if field not in body:
        present = [f for f in _INPUT_FIELDS if f in body]
        has = f"; the body has {', '.join(repr(f) for f in present)}" if present else ""
        who = f"Endpoint '{endpoint}' serves {task}: the body" if endpoint else f"An {task} request"
        raise InvalidParameterValue(f"{who} needs '{field}' ({shape}){has}.")
    stream = _flag(body, "stream")
    if stream and kind == EMBEDDINGS:
        raise InvalidParameterValue("Embeddings cannot be streamed: leave out 'stream' or set it to false.")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise InvalidParameterValue("'stream_options' must be an object.")
    include_usage = options is not None and bool(options.get("include_usage"))
    encoding = body.get("encoding_format") if kind == EMBEDDINGS else None
    if encoding not in (None, "float", "base64"):
        raise InvalidParameterValue(f"'encoding_format' must be 'float' or 'base64'; got {encoding!r}.")
    if images is not None and kind == CHAT:
        check_images(body, images)
    return LlmRequest(kind, stream, include_usage, encoding == "base64")


def messages_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``messages`` of a chat request: a non-empty list of objects with a ``role``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidParameterValue("A chat request needs 'messages': a non-empty list of {role, content}.")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidParameterValue(f"messages[{i}] must be an object with 'role' and 'content'.")
    return messages


def _strings(body: Mapping[str, Any], key: str, request: str) -> list[str]:
    value = body.get(key)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidParameterValue(f"{request} request needs '{key}': a string or a non-empty list of strings.")


def prompts_of(body: Mapping[str, Any]) -> list[str]:
    """The prompts of a completions request (``prompt``: a string or a list of them)."""
    return _strings(body, "prompt", "A completions")


def inputs_of(body: Mapping[str, Any]) -> list[str]:
    """The texts of an embeddings request (``input``: a string or a list of them)."""
    return _strings(body, "input", "An embeddings")


def passthrough(body: Mapping[str, Any], *, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The body without our own fields (and ``drop``), ``extra_params`` merged in: what an
    OpenAI-shaped upstream is sent."""
    out = {k: v for k, v in body.items() if k not in OUR_FIELDS and k not in drop and k != "extra_params"}
    extra = body.get("extra_params")
    if isinstance(extra, dict):
        out.update(extra)
    return out


# ---- answers and chunks ---------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt: int | None, completion: int | None) -> dict[str, int]:
    """The ``usage`` object of a chat or completions answer."""
    p, c = int(prompt or 0), int(completion or 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def chat_response(
    model: str,
    choices: list[dict[str, Any]],
    usage_: dict[str, int],
    *,
    id_: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """``choices``: ``{"message": {...}, "finish_reason": ...}`` each (``index`` is filled in).
    ``finishReason`` mirrors ``finish_reason`` for databricks-sdk (compat-api.md §B.3)."""
    out = []
    for i, choice in enumerate(choices):
        reason = choice.get("finish_reason")
        out.append({"index": i, **choice, "finish_reason": reason, "finishReason": reason})
    return {
        "id": id_ or new_id("chatcmpl"),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": out,
        "usage": usage_,
    }


def chat_chunk(
    id_: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    usage_: dict[str, int] | None = None,
    index: int = 0,
) -> dict[str, Any]:
    """One chunk of a streamed chat answer: choice ``index`` gets ``delta``; the last chunk
    has a ``finish_reason`` and, when asked for, the ``usage``."""
    choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
    return _chunk(id_, "chat.completion.chunk", model, created, choice, usage_)


def completion_response(
    model: str, texts: list[tuple[str, str | None]], usage_: dict[str, int], *, id_: str | None = None
) -> dict[str, Any]:
    """``texts``: ``(text, finish_reason)`` per choice."""
    return {
        "id": id_ or new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "text": text, "logprobs": None, "finish_reason": reason, "finishReason": reason}
            for i, (text, reason) in enumerate(texts)
        ],
        "usage": usage_,
    }


def completion_chunk(
    id_: str,
    model: str,
    created: int,
    text: str,
    finish_reason: str | None = None,
    usage_: dict[str, int] | None = None,
    index: int = 0,
) -> dict[str, Any]:
    """One chunk of a streamed completions answer (see :func:`chat_chunk`)."""
    choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return _chunk(id_, "text_completion", model, created, choice, usage_)


def _chunk(
    id_: str, kind: str, model: str, created: int, choice: dict[str, Any], usage_: dict[str, int] | None
) -> dict[str, Any]:
    chunk: dict[str, Any] = {"id": id_, "object": kind, "created": created, "model": model}
    chunk["choices"] = [choice]
    if usage_ is not None:
        chunk["usage"] = usage_
    return chunk


def embeddings_response(model: str, vectors: list[list[float]], prompt_tokens: int | None) -> dict[str, Any]:
    """An embeddings answer; no vectors at all is the upstream's failure (502)."""
    if not vectors:
        raise BadGateway("The provider returned no embeddings.")
    tokens = int(prompt_tokens or 0)
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def base64_embeddings(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` (an embeddings answer, changed in place and returned) with each vector as
    base64 of little-endian float32: what OpenAI sends for ``encoding_format: "base64"``."""
    for item in answer["data"]:
        vector = item["embedding"]
        item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return answer


# ---- reading answers and chunks -------------------------------------------------------------------
def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def usage_of(message: Mapping[str, Any] | bytes | bytearray | None) -> tuple[int, int, int] | None:
    """``(prompt_tokens, completion_tokens, total_tokens)`` of an answer's or a chunk's
    ``usage`` (a dict, or its JSON bytes as replicas send them); None when it has none (no
    ``usage``, ``null`` or empty). A count it leaves out is 0; a missing total is the sum.

    Bytes that do not mention ``usage`` are not decoded (a custom model's predictions)."""
    if isinstance(message, bytes | bytearray):
        if b'"usage"' not in message:
            return None
        try:
            message = orjson.loads(message)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(message, Mapping):
        return None
    used = message.get("usage")
    if not isinstance(used, Mapping) or not used:
        return None
    prompt, completion = _count(used.get("prompt_tokens")), _count(used.get("completion_tokens"))
    return prompt, completion, _count(used.get("total_tokens")) or prompt + completion


#: The OpenAI-compatible route of each task (``OpenAI(base_url=f"{host}/serving-endpoints")``).
OPENAI_ROUTES: dict[str, str] = {
    CHAT: "/serving-endpoints/chat/completions",
    COMPLETIONS: "/serving-endpoints/completions",
    EMBEDDINGS: "/serving-endpoints/embeddings",
}


def json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or the 400 that says why it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"Request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise MalformedRequest("Request body must be a JSON object.")
    return data
