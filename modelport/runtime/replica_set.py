"""The replicas of one served entity in one config version, and admission to them.

Admission: each ready replica takes up to ``per_replica_in_flight`` requests at once (the
worker batches what it holds); beyond that, up to ``queue_limit`` requests wait in one
first-come-first-served queue; beyond that a request is refused at once with 429 and
``Retry-After`` instead of waiting for seconds. With no replica running (scale-to-zero),
the first request starts one and waits for the cold start.

Health: :meth:`ReplicaSet.tick` replaces a replica whose process exited or whose connection
closed, and pings every ready replica every ``health_seconds / 2``; one that has not answered a
ping within ``health_seconds`` (stopped, deadlocked event loop, swapped out) is killed and
replaced like a dead one. A ping is answered by the replica's event loop, not by the model: a
predict that never returns while the loop runs is answered 504 per request (the request
timeout) but does not make the replica hung.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from modelport.entities.foundation.catalog import EngineSpec
from modelport.errors import DeadlineExceeded, RequestLimitExceeded, TemporarilyUnavailable
from modelport.runtime import protocol
from modelport.runtime.autoscaler import Band, Load, decide
from modelport.runtime.replica import ReplicaDied, ReplicaHandle, ReplicaSpec, ReplicaStartFailed
from modelport.runtime.streams import AdmittedFrames, ReplicaChunks

__all__ = ["ReplicaChunks", "ReplicaSet", "SetClosed"]

log = logging.getLogger("modelport.runtime")


def _who(replica: ReplicaHandle) -> dict[str, Any]:
    """What an event says of a replica: its index in the set and its pid."""
    return {"index": getattr(replica, "index", None), "pid": replica.pid}


class SetClosed(Exception):
    """The set is being retired; the caller should look the route up again."""


class ReplicaSet:
    """The replicas of one served entity in one config version: admission, the pick of a
    replica, scaling and supervision (:meth:`tick`).

    Requests go through :meth:`predict` and :meth:`open_stream`, which answer bytes or raise:
    a replica's error answer as the ``ModelportError`` it describes (class, status,
    ``retry_after``), admission and replica failures as 429, 503 or 504 with ``retry_after``
    where a retry may help, and :class:`SetClosed` once the set is retired. Every request
    admitted holds one slot until it is answered (a stream: until it is closed).

    ``on_event(kind, data)`` is told, on the event loop (it must not block), of ``replica_started``
    (index, pid, seconds), ``replica_stopped`` (index, pid, reason), ``replica_died`` (index,
    pid, exit), ``replica_hung`` (index, pid, seconds), ``replica_scaled`` (from, to: the
    autoscaler's decisions; replacing dead replicas is not scaling) and ``cold_start``
    (seconds from the first request to a ready replica, replicas).
    """

    def __init__(
        self,
        name: str,
        spec: ReplicaSpec,
        band: Band,
        *,
        per_replica_in_flight: int = 64,
        queue_limit: int = 64,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        health_seconds: float = 10.0,
    ) -> None:
        self.name = name
        self.health_seconds = health_seconds
        self._pings: dict[ReplicaHandle, tuple[float, asyncio.Task[bytes]]] = {}
        # Per replica, at its last PONG: (requests it had served, requests this process had sent).
        self._served: dict[ReplicaHandle, tuple[int, int]] = {}
        self.spec = spec
        self.band = band
        self.per_replica_in_flight = per_replica_in_flight
        self.queue_limit = queue_limit
        self.replicas: list[ReplicaHandle] = []
        self._starting = 0
        self._index = 0
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._peak = 0
        self.last_request_at = time.monotonic()
        self._low_since: float | None = None
        self._ready = asyncio.Event()
        self._scale_lock = asyncio.Lock()
        # The one cold start in progress: every request that finds no replica waits on it.
        # Set before the task first runs, so requests parsed in the same loop turn (before
        # scale_to counts the replica as starting) do not start a second one.
        self._cold_start_task: asyncio.Task[None] | None = None
        self.cold_starts = 0
        self.restarts = 0
        self._on_event = on_event or (lambda _kind, _data: None)
        self.closed = False

    # ---- state ----------------------------------------------------------------------------
    @property
    def ready_replicas(self) -> list[ReplicaHandle]:
        return [r for r in self.replicas if r.ready and r.alive and not r.closing]

    @property
    def capacity(self) -> int:
        return len(self.ready_replicas) * self.per_replica_in_flight

    @property
    def in_flight(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return len(self._waiters)

    # ---- scaling ---------------------------------------------------------------------------
    async def scale_to(self, target: int, *, reason: str = "scaled down") -> None:
        """Start or stop replicas until ``target`` run. Start failures raise ReplicaStartFailed.
        ``reason``: why replicas stop, as their ``replica_stopped`` events say."""
        async with self._scale_lock:
            live = [r for r in self.replicas if r.alive and not r.closing]
            if target > len(live):
                make = self.spec.make_replica or ReplicaHandle
                new = [make(self.spec, self.next_index()) for _ in range(target - len(live))]
                self.replicas.extend(new)
                self._starting += len(new)
                try:
                    results = await asyncio.gather(*(r.start() for r in new), return_exceptions=True)
                finally:
                    self._starting -= len(new)
                failed = [(r, e) for r, e in zip(new, results, strict=True) if isinstance(e, BaseException)]
                for r, _ in failed:
                    self.replicas.remove(r)
                # Idle time counts from when replicas became available, not from before a slow start.
                self.last_request_at = max(self.last_request_at, time.monotonic())
                for r in new:
                    if r.ready:
                        seconds = time.monotonic() - r.started_at
                        self._on_event("replica_started", {**_who(r), "seconds": seconds})
                self._wake()
                if failed:
                    raise failed[0][1]
            elif target < len(live):
                victims = sorted(live, key=lambda r: r.in_flight)[: len(live) - target]
                for r in victims:
                    r.closing = True
                await asyncio.gather(*(self._drain_and_stop(r) for r in victims))
                self.replicas = [r for r in self.replicas if r not in victims]
                for r in victims:
                    if getattr(r, "was_ready", True):  # one stopped while it started never ran
                        self._on_event("replica_stopped", {**_who(r), "reason": reason})
            if self.ready_replicas:
                self._ready.set()
            else:
                self._ready.clear()

    async def engine(self, timeout: float) -> EngineSpec | None:
        """What the entity's replicas serve: a foundation model's engine and task, or None."""
        return self.spec.engine

    def start_if_idle(self) -> None:
        """Start the set's replicas if none runs or starts (another process got a query for it)."""
        idle = not self.ready_replicas and not self._starting and self._cold_start_task is None
        if idle and not self.closed:
            self.last_request_at = time.monotonic()
            self._cold_start_task = asyncio.get_running_loop().create_task(self._cold_start())

    def next_index(self) -> int:
        self._index += 1
        return self._index

    def add_running(self, replicas: list[ReplicaHandle]) -> None:
        """Take over replicas that run already (adopted from the previous leader)."""
        self.replicas.extend(replicas)
        if self.ready_replicas:
            self._ready.set()
        self._wake()

    async def _drain_and_stop(self, replica: ReplicaHandle, grace: float = 30.0) -> None:
        deadline = time.monotonic() + grace
        while replica.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await replica.stop()

    async def tick(self, now: float) -> None:
        """Supervise: replace dead and hung replicas, then apply the autoscaler's decision."""
        dead = [r for r in self.replicas if r.was_ready and not r.closing and not r.alive]
        hung = self._hung(now)
        for r in dead:
            code = r.process.returncode if r.process else None
            log.warning("replica died", extra={"entity": self.name, "pid": r.pid, "exit": code})
            self._on_event("replica_died", {**_who(r), "exit": code})
        for r in hung:
            log.warning(
                "replica hung: no answer to a health ping; killing and replacing it",
                extra={"entity": self.name, "pid": r.pid, "seconds": self.health_seconds},
            )
            self._on_event("replica_hung", {**_who(r), "seconds": self.health_seconds})
        dead += hung
        for r in dead:
            self.replicas.remove(r)
            self._forget_ping(r)
            await r.kill()
            self.restarts += 1
        load = Load(
            replicas=len([r for r in self.replicas if not r.closing]),
            peak_concurrency=self._peak,
            last_request_at=self.last_request_at,
            now=now,
        )
        self._peak = self._active + len(self._waiters)
        decision = decide(self.band, load, self._low_since)
        self._low_since = decision.low_since
        if decision.replicas != load.replicas or dead:
            try:
                await self.scale_to(decision.replicas)
            except ReplicaStartFailed as exc:
                log.error("replica failed to start", extra={"entity": self.name, "reason": exc.message})
                return
            before = load.replicas + len(dead)  # replacing dead replicas is not scaling
            if decision.replicas != before:
                self._on_event("replica_scaled", {"from": before, "to": decision.replicas})

    def _hung(self, now: float) -> list[ReplicaHandle]:
        """Replicas whose last ping failed or got no answer within ``health_seconds``; starts the
        pings that are due (they run beside the tick, so one slow replica holds up nothing)."""
        hung: list[ReplicaHandle] = []
        for r in list(self._pings):
            if r not in self.replicas or r.closing or not r.alive:
                self._forget_ping(r)
        for r in self.replicas:
            if not (r.ready and r.alive and not r.closing):
                continue
            sent = self._pings.get(r)
            if sent is None:
                self._ping(r, now)
                continue
            at, task = sent
            if not task.done():
                continue
            if task.cancelled() or task.exception() is not None:
                hung.append(r)
            elif now - at >= self.health_seconds / 2:
                self._observe(r, task.result(), at)
                self._ping(r, now)
        return hung

    def _observe(self, replica: ReplicaHandle, pong: bytes, at: float) -> None:
        """Count the load other processes (HTTP workers, other servers) send this replica
        directly, from the counters in its PONG: requests it served since the last ping mean
        the set is in use (no scale to zero), and its in-flight count joins the peak the
        autoscaler reads."""
        try:
            stats = orjson.loads(pong)
            requests, in_flight = int(stats["requests"]), int(stats["in_flight"])
        except (ValueError, KeyError, TypeError):
            return
        seen = self._served.get(replica)
        self._served[replica] = (requests, replica.sent)
        if seen is not None and requests - seen[0] > replica.sent - seen[1]:
            self.last_request_at = max(self.last_request_at, at)
        self._peak = max(self._peak, self._active + len(self._waiters) - replica.in_flight + in_flight)

    def _ping(self, replica: ReplicaHandle, now: float) -> None:
        task = asyncio.get_running_loop().create_task(replica.ping(timeout=self.health_seconds))
        self._pings[replica] = (now, task)

    def _forget_ping(self, replica: ReplicaHandle) -> None:
        self._served.pop(replica, None)
        sent = self._pings.pop(replica, None)
        if sent is not None:
            sent[1].cancel()
            if sent[1].done() and not sent[1].cancelled():
                sent[1].exception()  # retrieved: no "exception was never retrieved" at exit

    # ---- admission ---------------------------------------------------------------------------
    def _wake(self) -> None:
        while self._waiters and self._active < self.capacity:
            fut = self._waiters.popleft()
            if not fut.done():
                self._active += 1
                fut.set_result(None)

    async def _admit(self, deadline: float) -> None:
        if self._active < self.capacity and not self._waiters:
            self._active += 1
            return
        if len(self._waiters) >= self.queue_limit:
            raise RequestLimitExceeded(
                f"Served entity '{self.name}' is at its maximum concurrency ({self.capacity} in flight, "
                f"{len(self._waiters)} queued); retry shortly.",
                retry_after=1,
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        idle = not self.ready_replicas and not self._starting and self._cold_start_task is None
        if idle and not self.closed:
            self._cold_start_task = asyncio.get_running_loop().create_task(self._cold_start())
        try:
            await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                self._release()
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)
            raise DeadlineExceeded(
                f"Served entity '{self.name}' did not get a free replica in time."
            ) from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)
            raise

    def _release(self) -> None:
        self._active -= 1
        self._wake()

    async def _cold_start(self) -> None:
        """Start the replicas of a set at zero for the requests waiting (one at a time: see
        ``_cold_start_task``); if they cannot start, those requests get 503."""
        self.cold_starts += 1
        started = time.monotonic()
        try:
            await self.scale_to(max(1, self.band.min_replicas))
            self._on_event(
                "cold_start", {"seconds": time.monotonic() - started, "replicas": len(self.ready_replicas)}
            )
        except ReplicaStartFailed as exc:
            log.error("cold start failed", extra={"entity": self.name, "reason": exc.message})
            while self._waiters:
                fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_exception(
                        TemporarilyUnavailable(
                            f"Served entity '{self.name}' could not start: {exc.message}", retry_after=5
                        )
                    )
        finally:
            self._cold_start_task = None

    def _pick(self) -> ReplicaHandle:
        ready = self.ready_replicas
        if not ready:
            raise TemporarilyUnavailable(
                f"Served entity '{self.name}' has no running replica.", retry_after=1
            )
        return min(ready, key=lambda r: r.in_flight)

    async def predict(self, body: bytes, timeout: float) -> bytes:
        """The answer body of the least busy replica to the request ``body``. Raises the
        ``ModelportError`` of its error answer, ``DeadlineExceeded`` after ``timeout``
        seconds (admission included), ``TemporarilyUnavailable`` when the replica goes away,
        ``RequestLimitExceeded`` when the queue is full, and ``SetClosed``."""
        answer, _ = await self.predict_with_trailer(body, timeout)
        return answer

    async def predict_with_trailer(
        self, body: bytes, timeout: float, *, recorded: bool = False
    ) -> tuple[bytes, protocol.Trailer | None]:
        """:meth:`predict`, with the answer's trailer: what a model that looks its features up
        says beside its answer (``None`` from any other model). ``recorded``: the endpoint
        records the query (an inference table), so that model also sends the rows its raw
        model received (``Trailer.request``)."""
        kind = protocol.PREDICT_RECORDED if recorded else protocol.PREDICT
        return protocol.answer_of(*await self.submit(kind, body, timeout))

    async def predict_agent(
        self, body: bytes, context: protocol.AgentContext | None, timeout: float
    ) -> tuple[bytes, protocol.Trailer | None]:
        """An agent's answer to ``body`` (as :meth:`predict`), sent with the request's agent
        ``context``, and its trailer (``Trailer.trace``: the request's MLflow trace)."""
        payload = protocol.agent_payload(context, body)
        return protocol.answer_of(*await self.submit(protocol.AGENT_PREDICT, payload, timeout))

    async def open_agent_stream(
        self, body: bytes, context: protocol.AgentContext | None, timeout: float
    ) -> ReplicaChunks:
        """An agent's streamed answer (as :meth:`open_stream`); once iterated to its end, its
        ``trailer`` holds what the replica sent with the END (the trace)."""
        payload = protocol.agent_payload(context, body)
        return await ReplicaChunks.open(await self.stream(payload, timeout, kind=protocol.AGENT_STREAM))

    async def open_stream(self, body: bytes, timeout: float) -> ReplicaChunks:
        """A streamed answer from the least busy replica, its first chunk already read: an
        error before any chunk (or no chunk within ``timeout``) is raised from here, as by
        :meth:`predict`. Iterate it for each chunk's bytes until the end; an error answer
        mid-stream is raised as its ``ModelportError``. The caller must ``aclose()`` it in
        every case: that releases the admission slot and, before the end, tells the
        replica to stop generating."""
        return await ReplicaChunks.open(await self.stream(body, timeout))

    async def submit(self, kind: int, body: bytes, timeout: float) -> tuple[int, bytes]:
        """Send one request to the least busy replica; answers the frame ``(kind, payload)``
        (what :meth:`predict` decodes; PINGs and the tests use it as it is)."""
        if self.closed:
            raise SetClosed(self.name)
        deadline = time.monotonic() + timeout
        self.last_request_at = time.monotonic()
        self._peak = max(self._peak, self._active + len(self._waiters) + 1)
        await self._admit(deadline)
        try:
            replica = self._pick()
            if kind == protocol.PREDICT_RECORDED and replica.protocol < 2:
                kind = protocol.PREDICT  # a replica of an older modelport does not know it
            try:
                return await replica.call(kind, body, max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                raise DeadlineExceeded(
                    f"The model did not answer within {timeout:g} seconds (request timeout)."
                ) from None
            except ReplicaDied:
                raise TemporarilyUnavailable(
                    f"The replica of '{self.name}' serving this request stopped; retry the request.",
                    retry_after=1,
                ) from None
        finally:
            self._release()

    async def stream(self, body: bytes, timeout: float, *, kind: int = protocol.STREAM) -> AdmittedFrames:
        """Send a STREAM (or AGENT_STREAM: ``kind``) request to the least busy replica and wait
        for its first frame (an error before any chunk is raised from here). The admission slot is held until
        the stream is closed, which the caller must do (:meth:`open_stream` decodes its frames)."""
        if self.closed:
            raise SetClosed(self.name)
        deadline = time.monotonic() + timeout
        self.last_request_at = time.monotonic()
        self._peak = max(self._peak, self._active + len(self._waiters) + 1)
        await self._admit(deadline)
        try:
            replica = self._pick()
            frames = replica.open_stream(body) if kind == protocol.STREAM else replica.open_stream(body, kind)
        except BaseException:
            self._release()
            raise
        stream = AdmittedFrames(frames, self.name, self._release)
        try:
            await stream.first(max(0.001, deadline - time.monotonic()), timeout)
        except BaseException:
            await stream.aclose()
            raise
        return stream

    def stats(self) -> dict[str, Any]:
        return {
            "replicas": len(self.ready_replicas),
            "starting": self._starting,
            "in_flight": self._active,
            "queued": len(self._waiters),
            "cold_starts": self.cold_starts,
            "restarts": self.restarts,
        }

    async def release(self) -> None:
        """Close the set, leaving its replicas running for another process to adopt."""
        self.closed = True
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(
                    TemporarilyUnavailable(f"Served entity '{self.name}' moved.", retry_after=1)
                )
        self._waiters.clear()
        for r in list(self._pings):
            self._forget_ping(r)
        replicas, self.replicas = self.replicas, []
        await asyncio.gather(*(r.release() for r in replicas), return_exceptions=True)
        self._ready.clear()

    async def close(self, *, reason: str = "closed") -> None:
        """Stop the set's replicas (``reason``: what their ``replica_stopped`` events say)."""
        self.closed = True
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(
                    TemporarilyUnavailable(f"Served entity '{self.name}' is stopping.", retry_after=1)
                )
        self._waiters.clear()
        for r in list(self._pings):
            self._forget_ping(r)
        await self.scale_to(0, reason=reason)
        self.closed = True
