"""Shadow traffic: copies of live queries sent to a served entity whose answers are never returned.

A serving config with ``shadow`` (``{"served_entity_name": "v4", "percentage": 25.0}``; the
route's ``shadow`` is ``("v4", 0.25)``) has that share of its live queries copied to the shadow
entity once the live answer is computed (``gateway/pipeline.py`` calls :meth:`Shadows.after`):

- only a live query's copy: not a query to ``/served-models/{name}/invocations``, not a stream,
  not a shadow or a replay itself; drawn with ``random.random()``;
- the copy is the request as the live model received it (``Exchange.sent``: the input guardrails'
  masking kept), sent on a task of its own, so the live answer never waits for it; it skips the
  rate limits, the guardrails and the response cache (it goes straight to the served entity);
- bounded: at most ``max_in_flight`` copies at once in this process; copies beyond are dropped
  and counted. Each waits at most the served timeout. Its failure (an error, a timeout, a
  crashed or hung replica of the shadow entity, whose replica set is its own) is counted and
  recorded, never raised. The live path shares nothing with a copy but the event loop and the
  spool: a hung shadow holds only places of this bound (until the served timeout, or until its
  replicas stop), so while it hangs further copies, of every endpoint, are dropped;
- recorded in the endpoint's inference table with ``shadow_of`` = the live request id and its
  own request id, the shadow as ``served_entity_name``; never in the usage table (it is not the
  caller's usage).

:meth:`Shadows.copy` sends such a copy to a given entity and reports how it ended (a canary's
agreement with its incumbent: ``gateway/rollout_tally.py``).

Counted in ``modelport_shadow_requests_total{endpoint, served_entity, outcome}``: ``sent`` (the
copy was answered), ``error`` (it failed or timed out), ``dropped`` (never sent: too many in flight).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

import orjson

from modelport.errors import ModelportError
from modelport.gateway.exchange import Answer, Exchange
from modelport.gateway.recording import Recorder
from modelport.gateway.routing import Route
from modelport.metrics import Metrics

__all__ = ["EntityCall", "OnDone", "Shadows"]

log = logging.getLogger("modelport.gateway")

#: Sends an exchange to one served entity of a route, nothing else on the way (the data plane's).
EntityCall = Callable[[Exchange, Route, str], Awaitable[Answer]]
#: Told how a copy ended: ``(status, answer body or None, latency in ms)``.
OnDone = Callable[[int, bytes | None, float], None]


class Shadows:
    """The shadow copies of one process's data plane, and their bound (``max_in_flight``)."""

    def __init__(
        self,
        call: EntityCall,
        metrics: Metrics,
        *,
        timeout: float,
        max_in_flight: int = 64,
        recorder: Recorder | None = None,
    ) -> None:
        self._call = call
        self._metrics = metrics
        self._recorder = recorder
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        #: Copies sent and not finished yet.
        self.in_flight = 0
        #: Copies dropped because ``max_in_flight`` were in flight (since start).
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def after(self, ex: Exchange, route: Route) -> bool:
        """Maybe copy the live query ``ex`` (answered, not streamed) to ``route.shadow``'s entity,
        with its probability; whether a copy was sent."""
        shadow = route.shadow
        if (
            shadow is None
            or ex.served is not None
            or ex.shadow_of is not None
            or ex.replay_of is not None
            or random.random() >= shadow[1]
        ):
            return False
        return self.copy(ex, route, shadow[0])

    def copy(self, ex: Exchange, route: Route, entity: str, on_done: OnDone | None = None) -> bool:
        """Send a copy of ``ex`` (as its model received it) to ``entity`` of ``route`` in the
        background; ``on_done(status, body or None, latency ms)`` is called when it ends (never
        when it is dropped). False when it was dropped: ``max_in_flight`` copies are in flight."""
        if self.in_flight >= self.max_in_flight:
            self.dropped += 1
            self._metrics.shadow_requests.labels(route.name, entity, "dropped").inc()
            return False
        self.in_flight += 1
        shadow = Exchange(
            ex.caller,
            ex.endpoint,
            ex.sent,
            task=ex.task,
            request_id=uuid.uuid4().hex,
            route=route,
            shadow_of=ex.request_id,
        )
        task = asyncio.get_running_loop().create_task(self._send(shadow, route, entity, on_done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _send(self, ex: Exchange, route: Route, entity: str, on_done: OnDone | None) -> None:
        status, body, error_code, response = 200, None, None, None
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._call(ex, route, entity)
                if answer.stream is not None:  # not asked for (the live query did not stream)
                    await answer.stream.aclose()
                    body = b""
                else:
                    body = answer.body
            response = body
        except TimeoutError:
            status, error_code = 504, "DEADLINE_EXCEEDED"
            message = f"The shadow copy to '{entity}' took more than {self.timeout:g} s."
            response = orjson.dumps({"error_code": error_code, "message": message})
        except ModelportError as exc:
            status, error_code, response = exc.status, exc.error_code, orjson.dumps(exc.to_body())
        except asyncio.CancelledError:  # the server stops: no record, no count
            self.in_flight -= 1
            raise
        except Exception:
            log.exception("shadow copy failed", extra={"endpoint": route.name, "served": entity})
            status, error_code = 500, "INTERNAL_ERROR"
            response = orjson.dumps({"error_code": error_code, "message": "Internal error."})
        self.in_flight -= 1
        latency_ms = (time.perf_counter() - ex.started) * 1000
        outcome = "sent" if status == 200 else "error"
        self._metrics.shadow_requests.labels(route.name, entity, outcome).inc()
        self._record(ex, route, entity, status, response, error_code)
        if on_done is not None:
            try:
                on_done(status, body, latency_ms)
            except Exception:
                log.exception("shadow copy callback failed", extra={"endpoint": route.name})

    def _record(
        self,
        ex: Exchange,
        route: Route,
        entity: str,
        status: int,
        response: bytes | None,
        error_code: str | None,
    ) -> None:
        """The copy's inference row (none in the usage table: it is not the caller's usage)."""
        if self._recorder is None or route.inference is None:
            return
        try:
            self._recorder.record(
                ex,
                replace(route, usage=False) if route.usage else route,
                status=status,
                served=entity,
                response=response,
                tokens=None,
                error_code=error_code,
            )
        except Exception:
            log.warning("shadow copy not recorded", extra={"endpoint": route.name}, exc_info=True)

    async def aclose(self) -> None:
        """Cancel the copies in flight (the server stops)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
