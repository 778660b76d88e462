"""Reading ``llm/v1`` request bodies (compat-api.md §B.2) for the engines on this machine.

Bodies are the OpenAI shapes: chat (``messages``), completions (``prompt``) and embeddings
(``input``), checked by ``spec/llm.py`` like every ``llm/v1`` body, then here for what the
engines need (text-only messages, sampling bounds), before a replica is asked. Every
mistake is a 400 naming the field; what an engine receives
(:class:`~.engine.GenerationRequest`) is trusted. Unknown fields are ignored, as the OpenAI
clients send many (``user``, ``logit_bias``, ``tools`` ...): the answer is the model's,
whatever they say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelport.entities.foundation.engine import GenerationRequest, Sampling
from modelport.errors import InvalidParameterValue
from modelport.spec.llm import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    check_request,
    inputs_of,
    messages_of,
    prompts_of,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_CHOICES",
    "MAX_STOP",
    "Parsed",
    "parse",
    "task_of",
]

#: ``max_tokens`` when the request gives none (the answer still stops at the context's end).
DEFAULT_MAX_TOKENS = 512
MAX_CHOICES = 8
MAX_STOP = 4
MAX_INPUTS = 2048

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


@dataclass(frozen=True)
class Parsed:
    """A checked request: ``generations`` (one per prompt; chat has one) or ``inputs``."""

    task: str
    stream: bool
    include_usage: bool
    generations: tuple[GenerationRequest, ...] = ()
    inputs: tuple[str, ...] = ()
    #: embeddings only: answer vectors as base64 float32 (openai 3.x asks for it by default)
    base64: bool = False


def task_of(body: Mapping[str, Any]) -> str:
    """The task a body asks for, from its fields (``/invocations`` has no task in its path)."""
    if "messages" in body:
        return CHAT
    if "prompt" in body:
        return COMPLETIONS
    if "input" in body:
        return EMBEDDINGS
    raise InvalidParameterValue(
        "The request needs 'messages' (chat), 'prompt' (completions) or 'input' (embeddings)."
    )


def _number(body: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParameterValue(f"'{key}' must be a number between {lo:g} and {hi:g}; got {value!r}.")
    if not lo <= value <= hi:
        raise InvalidParameterValue(f"'{key}' must be between {lo:g} and {hi:g}; got {value:g}.")
    return float(value)


def _integer(body: Mapping[str, Any], key: str, lo: int, hi: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameterValue(f"'{key}' must be an integer; got {value!r}.")
    if value < lo or (hi is not None and value > hi):
        bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise InvalidParameterValue(f"'{key}' must be {bound}; got {value}.")
    return value


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise InvalidParameterValue("'stop' must be a non-empty string or a list of non-empty strings.")
    if len(stops) > MAX_STOP:
        raise InvalidParameterValue(f"'stop' takes at most {MAX_STOP} sequences; got {len(stops)}.")
    return tuple(stops)


def _json_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    if kind == "json_schema":
        block = fmt.get("json_schema")
        schema = block.get("schema") if isinstance(block, dict) else None
        if not isinstance(schema, dict):
            raise InvalidParameterValue(
                "'response_format' of type json_schema needs "
                '\'json_schema\': {"name": ..., "schema": {...}}.'
            )
        return schema
    raise InvalidParameterValue(
        '\'response_format\' must be {"type": "text"}, {"type": "json_object"} or '
        f'{{"type": "json_schema", "json_schema": {{...}}}}; got {fmt!r}.'
    )


def _sampling(body: Mapping[str, Any], default_max_tokens: int) -> Sampling:
    max_tokens = _integer(body, "max_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_completion_tokens", 1)
    return Sampling(
        max_tokens=max_tokens if max_tokens is not None else default_max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0) or 1.0,
        top_k=_integer(body, "top_k", 0) or 0,
        stop=_stop(body),
        seed=_integer(body, "seed", -(2**63), 2**63 - 1),
        json_schema=_json_schema(body),
    )


def _content(i: int, content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "image_url":
                raise InvalidParameterValue(
                    f"messages[{i}].content[{j}] is an image, but this model reads text only "
                    "(it takes no images: it runs here without a vision projector)."
                )
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidParameterValue(
                    f"messages[{i}].content[{j}] is a part of type {kind!r}: this model reads text only."
                )
        return "".join(texts)
    raise InvalidParameterValue(f"messages[{i}].content must be a string or a list of text parts.")


def _messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    """The messages with their content as one string each (engines read text only)."""
    out = []
    for i, m in enumerate(messages_of(body)):
        if m["role"] not in _ROLES:
            raise InvalidParameterValue(
                f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}; got {m['role']!r}."
            )
        out.append({"role": m["role"], "content": _content(i, m.get("content"))})
    return out


def _inputs(body: Mapping[str, Any]) -> list[str]:
    inputs = inputs_of(body)
    if len(inputs) > MAX_INPUTS:
        raise InvalidParameterValue(f"'input' takes at most {MAX_INPUTS} texts; got {len(inputs)}.")
    return inputs


def parse(body: Mapping[str, Any], serves: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> Parsed:
    """Check ``body`` for a model that serves ``serves`` (chat models serve completions too)."""
    task = task_of(body)
    if task == EMBEDDINGS and serves != EMBEDDINGS:
        raise InvalidParameterValue("This endpoint serves a language model: send 'messages' or 'prompt'.")
    if task != EMBEDDINGS and serves == EMBEDDINGS:
        raise InvalidParameterValue(
            "This endpoint serves an embedding model: send 'input' (a string or a list)."
        )
    request = check_request(body, task)
    if task == EMBEDDINGS:
        return Parsed(task, False, False, inputs=tuple(_inputs(body)), base64=request.base64)
    include_usage = True  # compat-api.md §B.5: usage in the final chunk, asked for or not
    n = _integer(body, "n", 1, MAX_CHOICES) or 1
    sampling = _sampling(body, default_max_tokens)
    if task == CHAT:
        messages = _messages(body)
        generations: Sequence[GenerationRequest] = [GenerationRequest(sampling, messages=messages, n=n)]
    else:
        generations = [GenerationRequest(sampling, prompt=p, n=n) for p in prompts_of(body)]
        if len(generations) * n > MAX_CHOICES * 4:
            raise InvalidParameterValue(
                f"{len(generations)} prompts x n={n} is more than {MAX_CHOICES * 4} choices in one request."
            )
    return Parsed(task, request.stream, include_usage, generations=tuple(generations))
