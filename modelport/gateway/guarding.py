"""Applying an endpoint's guardrails to one query (the checks themselves: ``guardrails.py``).

Input guardrails run on the request before any served entity sees it; output guardrails on
the answer before the client sees it. A block is a 400 naming the guardrail; masked text
replaces the original (a masked request is what the model receives). Every decision is
kept for the inference table.

A streamed answer under output guardrails is buffered: the chunks are collected and
checked as one text, then sent (the time to the first token becomes the time to the whole
answer). When PII was masked, the masked text goes out as one content chunk followed by
the original last chunk (its ``finish_reason`` and usage), since a mask can span chunks.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from modelport.gateway.exchange import Answer, Exchange
from modelport.gateway.guardrails import GuardrailPolicy, check, check_body, chunk_text

__all__ = ["Embed", "GuardedChunks", "guard_answer", "guard_request", "guard_stream"]

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


async def guard_request(policy: GuardrailPolicy, ex: Exchange, embed: Embed | None) -> None:
    """Check the request; a masked request becomes what the model receives. Raises the 400 of a block."""
    data = ex.data
    new, outcome = await check_body(data, policy, embed=embed if policy.needs_embeddings else None)
    ex.decisions.extend({"side": "input", **d} for d in outcome.decisions)
    outcome.raise_if_blocked()
    if new is not data:
        ex.replace_request(dict(new))


async def guard_answer(
    policy: GuardrailPolicy, answer: Answer, embed: Embed | None, decisions: list[dict[str, Any]]
) -> Answer:
    """The answer to send (masked where PII was masked); raises the 400 of a block."""
    data = answer.data
    if data is None:
        return answer
    new, outcome = await check_body(data, policy, embed=embed if policy.needs_embeddings else None)
    decisions.extend({"side": "output", **d} for d in outcome.decisions)
    outcome.raise_if_blocked()
    return answer if new is data else answer.replaced(new)


class GuardedChunks:
    """Chunks already read and checked, served from memory (``Chunks`` protocol)."""

    def __init__(self, chunks: list[Any], source: Any) -> None:
        self._chunks = chunks
        self._index = 0
        self._source = source  # closed with this, so that its metrics end with the answer

    def __aiter__(self) -> GuardedChunks:
        return self

    async def __anext__(self) -> Any:
        if self._index >= len(self._chunks):
            raise StopAsyncIteration
        chunk = self._chunks[self._index]
        self._index += 1
        return chunk

    async def aclose(self) -> None:
        await self._source.aclose()


async def guard_stream(
    policy: GuardrailPolicy, stream: Any, embed: Embed | None, decisions: list[dict[str, Any]]
) -> GuardedChunks:
    """Read the whole stream, check its text, and give back what may be sent."""
    chunks: list[Any] = []
    try:
        async for chunk in stream:
            chunks.append(orjson.loads(chunk) if isinstance(chunk, bytes) else chunk)
    except BaseException:
        await stream.aclose()
        raise
    text = "".join(chunk_text(c) for c in chunks)
    outcome = await check([text], policy, embed=embed if policy.needs_embeddings else None)
    decisions.extend({"side": "output", **d} for d in outcome.decisions)
    if outcome.blocked is not None:
        await stream.aclose()
        raise outcome.error()
    if outcome.masked and chunks:
        chunks = _masked_chunks(chunks, outcome.texts[0])
    return GuardedChunks(chunks, stream)


def _masked_chunks(chunks: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    first = copy.deepcopy(chunks[0])
    last = copy.deepcopy(chunks[-1])
    for choice in first.get("choices") or []:
        if "delta" in choice:
            choice["delta"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice["finish_reason"] = None
    first.pop("usage", None)
    for choice in last.get("choices") or []:
        if "delta" in choice:
            choice["delta"] = {}
        else:
            choice["text"] = ""
    return [first, last] if len(chunks) > 1 else [first]
