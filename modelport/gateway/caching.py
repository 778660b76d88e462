"""The response cache, one step of the query path (``pipeline.py``): after the rate limits and
the input guardrails, before the served entity; a hit still goes through the output guardrails,
the usage and inference tables (zero tokens, ``cache_hit``) and the metrics.

What is looked up (``cache_keys.py``): a request of an endpoint whose ``ai_gateway.response_cache``
is enabled, that parses as a JSON object and is deterministic (or the endpoint caches
non-deterministic requests too). Its ``exchange.cache`` says what happened: ``hit``, ``miss``
(looked up, not found: the answer will be stored) or ``bypass`` (not looked up); the answer
carries it as ``x-modelport-cache``.

What is stored: a 200 answer of the served entity the split chose (not one a fallback gave),
that no output guardrail masked, within ``max_entry_bytes``; a stream only once its last chunk
has been read (the whole sequence, replayed as a stream); never an error.

Semantic matches (``semantic_similarity``): on an exact miss of a chat or completions request the
request's text is embedded by the system embedding endpoint and compared with the texts cached in
its bucket; when the embedding model cannot be reached the lookup is exact only (logged).

Metrics: every lookup in ``modelport_response_cache_lookups_total{endpoint, result}``; a hit also in
the endpoint's request count and latency (status 200, its served entity), so that the endpoint's
request rate is every query it answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelport.errors import ModelportError
from modelport.gateway.cache_keys import CacheKeys, deterministic, keys_for, semantic_text
from modelport.gateway.cache_store import CacheStore, Entry, unit
from modelport.gateway.exchange import Answer, Chunks, Exchange
from modelport.gateway.routing import Route
from modelport.metrics import Metrics

__all__ = ["Lookup", "Replay", "ResponseCache"]

log = logging.getLogger("modelport.gateway")

HIT, MISS, BYPASS = "hit", "miss", "bypass"
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


@dataclass
class Lookup:
    """A miss, to be stored once answered: its group, keys and (semantic) vector."""

    group: str
    keys: CacheKeys
    vector: np.ndarray | None = None


class Replay:
    """A cached stream's chunks, sent again (``Chunks``)."""

    def __init__(self, chunks: tuple[bytes, ...]) -> None:
        self._chunks = iter(chunks)

    def __aiter__(self) -> Replay:
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        return None


class _Storing:
    """A streamed answer whose chunks are kept and stored once the last has been read (``Chunks``);
    a stream that fails or is closed early stores nothing."""

    def __init__(self, chunks: Chunks, done: Callable[[tuple[bytes, ...]], Awaitable[None]]) -> None:
        self._chunks = chunks
        self._done = done
        self._seen: list[bytes] | None = []

    def __aiter__(self) -> _Storing:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            if self._seen is not None:
                seen, self._seen = tuple(self._seen), None
                await self._done(seen)
            raise
        except BaseException:
            self._seen = None
            raise
        if self._seen is not None:
            self._seen.append(chunk if isinstance(chunk, bytes) else orjson.dumps(chunk))
        return chunk

    async def aclose(self) -> None:
        self._seen = None
        await self._chunks.aclose()


class ResponseCache:
    def __init__(self, store: CacheStore, metrics: Metrics, embed: Embed) -> None:
        self.store = store
        self._metrics = metrics
        self._embed = embed
        self._embed_failing = False
        #: The event loop queries run on (set when the data plane starts).
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- the query path ---------------------------------------------------------------------------

    async def lookup(self, ex: Exchange, route: Route, entity: str) -> Answer | Lookup | None:
        """A hit's answer, a :class:`Lookup` to store the answer of a miss, or None (bypass)."""
        policy = route.cache
        assert policy is not None
        try:
            data = ex.data
        except ModelportError:
            data = None
        if data is None or not (policy.cache_non_deterministic or deterministic(data)):
            self._count(ex, route, BYPASS)
            return None
        scope = str(ex.caller.id) if policy.scope == "user" else ""
        keys = keys_for(data, entity, scope, semantic=policy.semantic_similarity is not None)
        group = route.cache_group
        entry = await self.store.get(group, keys.exact)
        vector = None
        if entry is None and keys.bucket is not None and policy.semantic_similarity is not None:
            vector = await self._vector(data)
            if vector is not None:
                entry = await self.store.nearest(group, keys.bucket, vector, policy.semantic_similarity)
        if entry is None:
            self._count(ex, route, MISS)
            return Lookup(group, keys, vector)
        self._count(ex, route, HIT)
        # A hit is a query the endpoint answered: counted with its served entity, as any answer.
        self._metrics.endpoint_requests.labels(route.name, entry.served, "200").inc()
        self._metrics.endpoint_latency.labels(route.name, entry.served).observe(
            time.perf_counter() - ex.started
        )
        if entry.chunks is not None:
            return Answer(b"", entry.served, Replay(entry.chunks))
        return Answer(entry.body, entry.served)

    async def keep(self, ex: Exchange, route: Route, lookup: Lookup, answer: Answer) -> Answer:
        """Store ``answer`` (the served entity's, through the output guardrails) if it may be; a
        stream is stored when its last chunk has been read."""
        if ex.chain or any(d.get("side") == "output" and d.get("result") != "allowed" for d in ex.decisions):
            return answer  # a fallback's answer, or one a guardrail changed
        policy = route.cache
        assert policy is not None
        if answer.stream is None:
            await self._put(
                lookup, Entry(answer.served, answer.body), policy.ttl_seconds, policy.max_entry_bytes
            )
            return answer

        async def done(chunks: tuple[bytes, ...]) -> None:
            entry = Entry(answer.served, b"", chunks)
            await self._put(lookup, entry, policy.ttl_seconds, policy.max_entry_bytes)

        return Answer(b"", answer.served, _Storing(answer.stream, done))

    # -- upkeep -----------------------------------------------------------------------------------

    def retain(self, routes: Iterable[Route]) -> None:
        """Keep the groups of the current routes only. Called after every routing change, from
        the thread that made it: the store is changed on the event loop, where queries use it."""
        groups = {r.cache_group for r in routes if r.cache is not None}
        if self.loop is None or self.loop.is_closed():
            self.store.retain(groups)
        else:
            self.loop.call_soon_threadsafe(self.store.retain, groups)

    async def drop_endpoint(self, endpoint_id: str, keep: str | None) -> None:
        await self.store.drop_endpoint(endpoint_id, keep)

    # -- helpers ----------------------------------------------------------------------------------

    async def _put(self, lookup: Lookup, entry: Entry, ttl: int, max_bytes: int) -> None:
        if entry.size > max_bytes:
            return
        await self.store.put(lookup.group, lookup.keys.exact, entry, ttl)
        if lookup.vector is not None and lookup.keys.bucket is not None:
            await self.store.remember(lookup.group, lookup.keys.bucket, lookup.keys.exact, lookup.vector, ttl)

    async def _vector(self, data: dict[str, Any]) -> np.ndarray | None:
        text = semantic_text(data)
        if text is None:
            return None
        try:
            vector = unit((await self._embed([text]))[0])
        except Exception as exc:  # no embedding model here: exact matches only
            if not self._embed_failing:
                self._embed_failing = True
                log.warning("semantic cache lookups are exact only: %s", exc)
            return None
        self._embed_failing = False
        return vector

    def _count(self, ex: Exchange, route: Route, result: str) -> None:
        ex.cache = result
        self._metrics.response_cache.labels(route.name, result).inc()
