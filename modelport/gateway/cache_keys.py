"""What the response cache matches on: which requests may be cached, and their keys.

A request is looked up in the cache only when its answer is meant to be the same every time
(:func:`deterministic`): not with ``n`` or ``best_of`` above 1, and not when it samples without
a seed, that is when it is a chat or completions request (``messages`` or ``prompt``) whose
``temperature`` is above 0 or absent (providers then sample at their default, 1.0 for OpenAI).
An endpoint's ``cache_non_deterministic: true`` lifts that rule.

The exact key (:func:`request_key`) is a digest of the endpoint's cache identity (its id, the
serving config version and the AI-gateway settings: ``routing.py``), the served entity the split
chose, the scope (the caller's id for ``scope: user``), whether the answer is streamed, and the
request as the model receives it (after input guardrails masked it) in a canonical form: JSON
with sorted keys, without the fields that never reach the model's answer (``stream``,
``client_request_id``, ``usage_context``).

A semantic match (chat and completions only) compares the request's text (:func:`semantic_text`)
with the texts cached under the same *bucket* (:func:`semantic_bucket`): the exact key's parts
with ``messages``/``prompt`` left out, so that only the wording may differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["CacheKeys", "CachePolicy", "deterministic", "keys_for", "semantic_text"]

#: Fields of a request that do not change the model's answer.
_IGNORED = ("stream", "client_request_id", "usage_context")
_TEXT_FIELDS = ("messages", "prompt")


@dataclass(frozen=True)
class CachePolicy:
    """An endpoint's ``ai_gateway.response_cache``, as stored (defaults filled in by
    ``spec/validation.py``) and compiled into its route."""

    ttl_seconds: int
    scope: str  #: ``user`` or ``endpoint``
    max_entry_bytes: int
    semantic_similarity: float | None = None
    cache_non_deterministic: bool = False

    @classmethod
    def of(cls, block: dict[str, Any] | None) -> CachePolicy | None:
        if not block or not block.get("enabled"):
            return None
        return cls(
            ttl_seconds=int(block["ttl_seconds"]),
            scope=str(block["scope"]),
            max_entry_bytes=int(block["max_entry_bytes"]),
            semantic_similarity=block.get("semantic_similarity"),
            cache_non_deterministic=bool(block.get("cache_non_deterministic")),
        )


def deterministic(data: dict[str, Any]) -> bool:
    """Whether the request asks for one answer that does not depend on sampling."""
    for many in ("n", "best_of"):
        value = data.get(many)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 1:
            return False
    temperature = data.get("temperature")
    seeded = data.get("seed") is not None
    if temperature is None:
        return seeded or not any(f in data for f in _TEXT_FIELDS)
    if not isinstance(temperature, int | float) or isinstance(temperature, bool):
        return False  # not a number: the model refuses it, and nothing is cached
    return temperature <= 0 or seeded


def semantic_text(data: dict[str, Any]) -> str | None:
    """The text a semantic match compares: a chat's messages (``role: content`` lines, text parts
    only) or a completion's prompt; None for any other request."""
    messages = data.get("messages")
    if isinstance(messages, list) and messages:
        lines = []
        for message in messages:
            if not isinstance(message, dict):
                return None
            content = message.get("content")
            if isinstance(content, list):  # content parts: the text ones
                content = " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
            lines.append(f"{message.get('role', '')}: {content if content is not None else ''}")
        return "\n".join(lines)
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return None


@dataclass(frozen=True)
class CacheKeys:
    """The keys of one request: ``exact`` (an entry's key) and ``bucket`` (its semantic bucket,
    None when it has no text to compare)."""

    exact: str
    bucket: str | None
    stream: bool


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.hexdigest()


def keys_for(data: dict[str, Any], entity: str, scope: str, *, semantic: bool) -> CacheKeys:
    """The keys of a request (parsed, as the model receives it) for ``entity``, in ``scope``
    (``""`` for a cache shared by every caller, else the caller's id)."""
    stream = data.get("stream") is True
    kept = {k: v for k, v in data.items() if k not in _IGNORED}
    head = (entity.encode(), scope.encode(), b"s" if stream else b"j")
    exact = _digest(*head, orjson.dumps(kept, option=orjson.OPT_SORT_KEYS))
    bucket = None
    if semantic and any(f in kept for f in _TEXT_FIELDS):
        rest = {k: v for k, v in kept.items() if k not in _TEXT_FIELDS}
        bucket = _digest(*head, b"semantic", orjson.dumps(rest, option=orjson.OPT_SORT_KEYS))
    return CacheKeys(exact, bucket, stream)
