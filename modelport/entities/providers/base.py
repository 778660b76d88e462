"""What every external-model provider shares: the unified schema, credentials, HTTP, errors.

A provider module (``entities/providers/<name>.py``) subclasses :class:`Provider` and turns
the unified ``llm/v1`` requests (compat-api.md §B.2: OpenAI-shaped chat, completions and
embeddings bodies) into its own wire format and the answers back into the OpenAI shapes
of §B.3 (:func:`chat_response`, :func:`completion_response`, :func:`embeddings_response`)
and, when streaming, the chunk shapes of §B.5 (:func:`chat_chunk`, :func:`completion_chunk`).

Credentials are resolved per request (:func:`credential`): a ``{{secrets/scope/key}}``
reference is looked up through the :data:`SecretResolver` the server hands in, so a
rotated secret takes effect on the next request and no value is kept in the config.

Every upstream failure becomes one of our errors (:func:`provider_error`, :func:`send`):
the caller sees the provider's message with the provider named, never a bare 500.

==============================  =========================================================
provider answer                 modelport answer
==============================  =========================================================
400, 404, 413, 422              400 ``BAD_REQUEST`` (the provider's message)
401, 403                        403 ``PERMISSION_DENIED`` (the endpoint's credentials)
429                             429 ``REQUEST_LIMIT_EXCEEDED`` + ``Retry-After``
503, 529 (overloaded)           503 ``TEMPORARILY_UNAVAILABLE`` + ``Retry-After``
other 5xx, unreadable answer,   502 ``BAD_GATEWAY``
connection refused
no answer within the timeout    504 ``DEADLINE_EXCEEDED``
==============================  =========================================================
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import orjson

from modelport.errors import (
    BadGateway,
    BadRequest,
    DeadlineExceeded,
    InvalidParameterValue,
    ModelportError,
    NotImplementedByServer,
    PermissionDenied,
    RequestLimitExceeded,
    TemporarilyUnavailable,
)

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "EMBEDDINGS",
    "SECRET_REF",
    "Provider",
    "ProviderContext",
    "SecretResolver",
    "chat_chunk",
    "chat_response",
    "completion_chunk",
    "completion_response",
    "credential",
    "embeddings_response",
    "inputs_of",
    "iter_sse",
    "json_of",
    "messages_of",
    "new_id",
    "passthrough",
    "prompts_of",
    "provider_error",
    "send",
    "usage",
]

CHAT = "llm/v1/chat"
COMPLETIONS = "llm/v1/completions"
EMBEDDINGS = "llm/v1/embeddings"

#: ``(scope, key) -> value``; raises :class:`~modelport.errors.ModelportError` when missing.
SecretResolver = Callable[[str, str], str]
SECRET_REF = re.compile(r"^\{\{secrets/([^/{}]+)/([^/{}]+)\}\}$")

#: Fields of a query body that are ours, not the provider's (compat-api.md §B.2).
OUR_FIELDS = frozenset({"model", "stream", "stream_options", "client_request_id", "usage_context"})


def credential(block: Mapping[str, Any], key: str, resolve: SecretResolver) -> str | None:
    """The value of credential ``key`` of a provider block: ``key`` (a secret reference) or
    ``key_plaintext`` (stored by the server as a secret reference too, or given inline)."""
    for field in (key, f"{key}_plaintext"):
        value = block.get(field)
        if value is None or value == "":
            continue
        match = SECRET_REF.match(str(value))
        if match is not None:
            return resolve(match.group(1), match.group(2))
        return str(value)
    return None


@dataclass(frozen=True)
class ProviderContext:
    """What a provider instance is built from (one per served entity of a config version)."""

    endpoint: str  # the endpoint name: the ``model`` field of every answer
    model: str  # the upstream model id, ``external_model.name``
    task: str
    config: Mapping[str, Any]  # the ``<provider>_config`` block as stored (references unresolved)
    resolve: SecretResolver
    http: httpx.AsyncClient  # shared and pooled by the server
    timeout: float


class Provider:
    """One external model behind one served entity. Subclasses override what they support."""

    #: The ``external_model.provider`` value this class serves.
    provider: ClassVar[str] = ""
    #: Tasks this provider can serve, and those of them it can stream.
    tasks: ClassVar[frozenset[str]] = frozenset()
    streaming: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    @classmethod
    def tasks_for(cls, config: Mapping[str, Any], model: str) -> frozenset[str]:
        """The tasks this provider serves for upstream ``model`` with ``config`` (its stored
        block): :attr:`tasks` unless what the provider can do depends on the model. No I/O;
        the control plane calls it to refuse a config before it is stored."""
        return cls.tasks

    def _unsupported(self, what: str) -> NotImplementedByServer:
        return NotImplementedByServer(
            f"Provider '{self.provider}' does not support {what} (served model '{self.ctx.model}')."
        )

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported("chat")

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise self._unsupported("streaming chat")

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported("completions")

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise self._unsupported("streaming completions")

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported("embeddings")


# ---- HTTP and errors ----------------------------------------------------------------------------
def _message_of(body: bytes) -> str:
    """The human part of a provider's error body (OpenAI, Anthropic, Cohere, AWS, Google shapes)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace").strip()[:500]
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "Message", "detail"):
            if data.get(key):
                return str(data[key])
    return body.decode("utf-8", errors="replace").strip()[:500]


def _retry_after(headers: Mapping[str, str]) -> int:
    for key in ("retry-after", "x-ratelimit-reset-requests"):
        value = headers.get(key)
        if value:
            try:
                return max(1, int(float(value)))
            except ValueError:
                continue
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(1, int(float(ms) / 1000 + 0.999))
        except ValueError:
            pass
    return 1


def provider_error(provider: str, status: int, body: bytes, headers: Mapping[str, str]) -> ModelportError:
    """Our error for a provider's non-2xx answer (see the module docstring's table)."""
    detail = _message_of(body) or f"HTTP {status}"
    what = f"Provider '{provider}' answered HTTP {status}: {detail}"
    if status in (400, 404, 413, 422):
        return BadRequest(what)
    if status in (401, 403):
        return PermissionDenied(f"{what} (check the credentials configured on the endpoint)")
    if status == 429:
        return RequestLimitExceeded(what, retry_after=_retry_after(headers))
    if status in (503, 529):
        return TemporarilyUnavailable(what, retry_after=_retry_after(headers))
    return BadGateway(what)


async def send(
    ctx: ProviderContext,
    provider: str,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    content: bytes | None = None,
    stream: bool = False,
) -> httpx.Response:
    """One request to the provider; non-2xx answers and transport failures raise our errors.

    With ``stream=True`` the response is returned unread (the caller iterates and closes it).
    """
    data = orjson.dumps(json) if json is not None else content
    hdrs = dict(headers or {})
    if data is not None:
        hdrs = {"content-type": "application/json", **hdrs}
    request = ctx.http.build_request(method, url, headers=hdrs, content=data, timeout=ctx.timeout)
    try:
        response = await ctx.http.send(request, stream=stream)
    except httpx.TimeoutException:
        raise DeadlineExceeded(
            f"Provider '{provider}' did not answer within {ctx.timeout:g}s ({request.url.host})."
        ) from None
    except httpx.HTTPError as exc:
        raise BadGateway(f"Could not reach provider '{provider}' at {request.url.host}: {exc}") from None
    if response.status_code >= 400:
        body = await response.aread()
        await response.aclose()
        raise provider_error(provider, response.status_code, body, response.headers)
    return response


def json_of(provider: str, response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise BadGateway(
            f"Provider '{provider}' answered with something that is not JSON: {response.text[:200]!r}"
        ) from None


async def iter_sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` pairs of a ``text/event-stream`` body (multi-line data joined by
    newlines; comments skipped). Closes the response when done."""
    event, data = "", []
    try:
        async for line in response.aiter_lines():
            if not line:
                if data:
                    yield event or "message", "\n".join(data)
                event, data = "", []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
        if data:
            yield event or "message", "\n".join(data)
    except httpx.TimeoutException:
        raise DeadlineExceeded("The provider stopped sending its stream (timeout).") from None
    except httpx.HTTPError as exc:
        raise BadGateway(f"The provider's stream broke off: {exc}") from None
    finally:
        await response.aclose()


# ---- answers in the unified (OpenAI) shapes -------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt: int | None, completion: int | None) -> dict[str, int]:
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
    chunk: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage_ is not None:
        chunk["usage"] = usage_
    return chunk


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
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": id_,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage_ is not None:
        chunk["usage"] = usage_
    return chunk


def embeddings_response(model: str, vectors: list[list[float]], prompt_tokens: int | None) -> dict[str, Any]:
    if not vectors:
        raise BadGateway("The provider returned no embeddings.")
    tokens = int(prompt_tokens or 0)
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# ---- reading the unified request ------------------------------------------------------------------
def messages_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidParameterValue("A chat request needs 'messages': a non-empty list of {role, content}.")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise InvalidParameterValue(f"messages[{i}] must be an object with 'role' and 'content'.")
    return messages


def prompts_of(body: Mapping[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise InvalidParameterValue("A completions request needs 'prompt': a string or a list of strings.")


def inputs_of(body: Mapping[str, Any]) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidParameterValue("An embeddings request needs 'input': a string or a list of strings.")


def passthrough(body: Mapping[str, Any], *, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The body without our own fields (and ``drop``); ``extra_params`` merged in."""
    out = {k: v for k, v in body.items() if k not in OUR_FIELDS and k not in drop and k != "extra_params"}
    extra = body.get("extra_params")
    if isinstance(extra, dict):
        out.update(extra)
    return out
