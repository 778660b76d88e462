"""Observers of live queries: callables the data plane tells how each live query ended.

``DataPlane.observers`` holds them (``gateway/rollout_tally.py`` registers one: a canary's
tallies). Each is called once per live query (not for shadow copies, nor replays), after the
answer or the error is known, on the event loop, as
``observer(exchange, route, status, latency_ms, answer_or_None)``:

- a JSON answer: status 200 and the :class:`~modelport.gateway.exchange.Answer`;
- an error: its status and None;
- a stream: when it ends (its last chunk read: 200 and the answer, whose chunks are gone; a
  failure mid-stream: its status; closed early by the client: 499), latency to the end.

``exchange.entity`` names the served entity that answered or failed (None when none was asked:
a refusal by the rate limits or a guardrail). An observer must be quick (it runs on the query
path) and must not raise: an error it raises is logged and dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from modelport.errors import ModelportError
from modelport.gateway.exchange import Answer, Chunks, Exchange
from modelport.gateway.routing import Route

__all__ = ["Observed", "Observer", "notify"]

log = logging.getLogger("modelport.gateway")

#: ``(exchange, route, status, latency_ms, answer or None)``.
Observer = Callable[[Exchange, Route, int, float, Answer | None], None]


def notify(
    observers: Sequence[Observer], ex: Exchange, route: Route, status: int, answer: Answer | None
) -> None:
    """Call each observer with how ``ex`` ended; log (never raise) what one raises."""
    latency_ms = (time.perf_counter() - ex.started) * 1000
    for observer in observers:
        try:
            observer(ex, route, status, latency_ms, answer)
        except Exception:
            log.exception("query observer failed", extra={"endpoint": route.name})


class Observed:
    """A streamed answer whose end (its status) is told to the observers, once."""

    def __init__(self, answer: Answer, ended: Callable[[int, Answer | None], None]) -> None:
        assert answer.stream is not None
        self._chunks: Chunks = answer.stream
        self._answer = answer
        self._ended = ended
        self._open = True

    def __aiter__(self) -> Observed:
        return self

    def _finish(self, status: int) -> None:
        if self._open:
            self._open = False
            self._ended(status, self._answer if status == 200 else None)

    async def __anext__(self) -> Any:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._finish(200)
            raise
        except ModelportError as exc:
            self._finish(exc.status)
            raise
        except Exception:
            self._finish(500)
            raise

    async def aclose(self) -> None:
        self._finish(499)
        await self._chunks.aclose()
