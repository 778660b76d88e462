"""Engine events → answers in the OpenAI shapes (compat-api.md §B.3, §B.5).

:func:`answer` collects a whole request into one chat / completion / embeddings object;
:func:`chunks` yields the chunks of a streamed one. A completions request with several
prompts runs them concurrently (the engine batches them); choice ``i`` of prompt ``p``
is choice ``p * n + i`` of the answer, as OpenAI numbers them. Usage counts every
prompt and choice and rides on the last chunk of a stream (with its ``finish_reason``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from modelport.entities.foundation.engine import (
    EmbeddingEngine,
    Finished,
    GenerationEngine,
    TextDelta,
    Usage,
)
from modelport.entities.foundation.requests import Parsed
from modelport.spec.llm import (
    CHAT,
    base64_embeddings,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    embeddings_response,
    new_id,
    usage,
)

__all__ = ["answer", "chunks", "embed"]

Tagged = tuple[int, TextDelta | Finished | Usage]


async def _merged(engine: GenerationEngine, parsed: Parsed) -> AsyncIterator[Tagged]:
    """Events of every generation of the request, each tagged with its choice offset."""
    gens = parsed.generations
    if len(gens) == 1:
        events = engine.generate(gens[0])
        try:
            async for event in events:
                yield 0, event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return
    queue: asyncio.Queue[Tagged | BaseException | None] = asyncio.Queue()

    async def pump(offset: int, request: Any) -> None:
        events = engine.generate(request)
        try:
            async for event in events:
                queue.put_nowait((offset, event))
        except BaseException as exc:
            queue.put_nowait(exc)
            raise
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            queue.put_nowait(None)

    tasks = [asyncio.ensure_future(pump(i * g.n, g)) for i, g in enumerate(gens)]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def answer(engine: GenerationEngine, parsed: Parsed, model: str) -> dict[str, Any]:
    """The whole answer of a chat or completions request."""
    total = sum(g.n for g in parsed.generations)
    texts: list[list[str]] = [[] for _ in range(total)]
    reasons: list[str | None] = [None] * total
    prompt_tokens = completion_tokens = 0
    events = _merged(engine, parsed)
    try:
        async for offset, event in events:
            if isinstance(event, TextDelta):
                texts[offset + event.index].append(event.text)
            elif isinstance(event, Finished):
                reasons[offset + event.index] = event.reason
            else:
                prompt_tokens += event.prompt_tokens
                completion_tokens += event.completion_tokens
    finally:
        await events.aclose()
    used = usage(prompt_tokens, completion_tokens)
    if parsed.task == CHAT:
        choices = [
            {"message": {"role": "assistant", "content": "".join(t)}, "finish_reason": r}
            for t, r in zip(texts, reasons, strict=True)
        ]
        return chat_response(model, choices, used)
    return completion_response(model, [("".join(t), r) for t, r in zip(texts, reasons, strict=True)], used)


async def chunks(engine: GenerationEngine, parsed: Parsed, model: str) -> AsyncIterator[dict[str, Any]]:
    """The chunks of a streamed answer; closing this iterator cancels the generation."""
    chat = parsed.task == CHAT
    id_ = new_id("chatcmpl" if chat else "cmpl")
    created = int(time.time())
    started: set[int] = set()
    held: dict[str, Any] | None = None  # the latest finish chunk: the last one carries usage
    prompt_tokens = completion_tokens = 0
    events = _merged(engine, parsed)
    try:
        async for offset, event in events:
            if isinstance(event, Usage):
                prompt_tokens += event.prompt_tokens
                completion_tokens += event.completion_tokens
                continue
            index = offset + event.index
            if isinstance(event, TextDelta):
                if not event.text:
                    continue
                if chat:
                    delta: dict[str, Any] = {"content": event.text}
                    if index not in started:
                        started.add(index)
                        delta = {"role": "assistant", "content": event.text}
                    yield chat_chunk(id_, model, created, delta, index=index)
                else:
                    yield completion_chunk(id_, model, created, event.text, index=index)
            else:
                if held is not None:
                    yield held
                if chat:
                    delta = {} if index in started else {"role": "assistant", "content": ""}
                    held = chat_chunk(id_, model, created, delta, event.reason, index=index)
                else:
                    held = completion_chunk(id_, model, created, "", event.reason, index=index)
    finally:
        await events.aclose()
    if held is not None:
        held["usage"] = usage(prompt_tokens, completion_tokens)
        yield held


async def embed(engine: EmbeddingEngine, parsed: Parsed, model: str) -> dict[str, Any]:
    result = await engine.embed(parsed.inputs)
    out = embeddings_response(model, result.vectors, result.prompt_tokens)
    return base64_embeddings(out) if parsed.base64 else out
