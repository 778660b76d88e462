"""Wrappers around a streamed answer: counted in the metrics when it ends, recorded for the tables.

Each wrapper is a ``Chunks`` (``gateway/exchange.py``): iterate it, then always ``aclose`` it;
closing passes down to the replica's or the provider's stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from modelport.errors import ModelportError
from modelport.gateway.exchange import Chunks, Tokens
from modelport.metrics import Metrics
from modelport.spec.llm import usage_of

__all__ = ["Measured", "Recorded"]


class Measured:
    """A streamed answer counted in the endpoint's metrics when it ends: the latency is the whole
    stream's, and a stream closed before its end (the client left) counts as status 499.

    ``on_end`` is called once with the answer's (prompt, completion, total) tokens, when a chunk
    said (token rate limits)."""

    def __init__(self, chunks: Chunks, metrics: Metrics, labels: tuple[str, str], started: float) -> None:
        self._chunks = chunks
        self._metrics = metrics
        self._labels = labels
        self._started = started
        self._open = True
        self.tokens: Tokens = None
        self.on_end: Callable[[tuple[int, int, int]], None] | None = None

    def __aiter__(self) -> Measured:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._finish("200")
            raise
        except ModelportError as exc:
            self._finish(str(exc.status))
            raise
        except Exception:
            self._finish("500")
            raise
        if self.on_end is not None:
            self.tokens = usage_of(chunk) or self.tokens
        return chunk

    def _finish(self, status: str) -> None:
        if not self._open:
            return
        self._open = False
        if self.on_end is not None and self.tokens is not None:
            self.on_end(self.tokens)
        metrics, labels = self._metrics, self._labels
        metrics.endpoint_in_flight.labels(*labels).dec()
        metrics.endpoint_requests.labels(*labels, status).inc()
        metrics.endpoint_latency.labels(*labels).observe(time.perf_counter() - self._started)

    async def aclose(self) -> None:
        self._finish("499")
        await self._chunks.aclose()


class Recorded:
    """A streamed answer whose chunks are kept, to be recorded (as a JSON array) when the last
    one has been read; a stream closed early is recorded with status 499 ``CLIENT_CLOSED``.

    ``record(status, error_code, response, tokens)`` is called exactly once."""

    def __init__(self, chunks: Chunks, record: Callable[[int, str | None, bytes, Any], None]) -> None:
        self._chunks = chunks
        self._record = record
        self._seen: list[bytes] = []
        self._open = True

    def __aiter__(self) -> Recorded:
        return self

    def _finish(self, status: int, error_code: str | None = None) -> None:
        if not self._open:
            return
        self._open = False
        tokens = None
        for chunk in reversed(self._seen):
            tokens = usage_of(chunk)
            if tokens is not None:
                break
        self._record(status, error_code, b"[" + b",".join(self._seen) + b"]", tokens)

    async def __anext__(self) -> Any:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._finish(200)
            raise
        except ModelportError as exc:
            self._finish(exc.status, exc.error_code)
            raise
        self._seen.append(chunk if isinstance(chunk, bytes) else orjson.dumps(chunk))
        return chunk

    async def aclose(self) -> None:
        self._finish(499, "CLIENT_CLOSED")
        await self._chunks.aclose()
