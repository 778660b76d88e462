"""A canary's tallies: what this process sees of the live queries of an endpoint whose rollout runs.

:class:`RolloutTally` is one of the data plane's observers (``gateway/observers.py``). For a
route whose ``rollout`` is RUNNING it counts, per served entity of the current step: requests,
errors and latency (a fixed histogram, ``store.rollouts.LATENCY_BOUNDS_MS``). An error is an
answer with a 5xx status other than 503: a pyfunc that raises answers 500, so a candidate
failing on some inputs counts, as do a crashed replica (502) and a timeout (504). A 503 says the
entity had no replica to take the query (starting, scaling up, the server restarting): capacity,
which hits the incumbents alike, not the candidate's answers; a 429 (a full queue, or the rate
limits) neither. A 4xx is the client's (bad input refused by the schema, guardrails) and is not
the candidate's error; a stream closed by its client (499) counts as a request only. With
fallbacks, each entity tried and failed counts its failure.

When the rollout compares answers (``min_agreement`` set), each query the candidate answered is
copied to an incumbent (``Shadows.copy``: recorded with ``shadow_of`` like any shadow), and the
two answers are compared (``monitoring.agreement.agree``): ``compared`` and ``agreed`` of the
candidate. An incumbent that fails leaves the pair uncompared.

Queries to ``/served-models/{name}/invocations`` name their entity and are not counted: the
canary judges the traffic split. Counts are cumulative per (rollout, step, entity) and written
to the store every ``interval`` seconds off the event loop, as this process's rows
(``store/rollouts.py``); the leader sums every process's rows.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from typing import Any

import orjson

from modelport.clock import now_ms
from modelport.gateway.exchange import Answer, Exchange
from modelport.gateway.routing import Route
from modelport.gateway.shadow import Shadows
from modelport.monitoring.agreement import agree
from modelport.store import Database
from modelport.store.rollouts import LATENCY_BOUNDS_MS, Tally

__all__ = ["RolloutTally"]

log = logging.getLogger("modelport.gateway")

#: Tallies not touched for this long are forgotten (their rows stay in the store).
_FORGET_SECONDS = 600.0

Key = tuple[str, int, str]  # (rollout id, step, served entity)


def _failed(status: int) -> bool:
    return status >= 500 and status != 503


class RolloutTally:
    """The tallies of this process (``process``: its id in the process registry)."""

    def __init__(
        self,
        db: Database,
        process: str,
        shadows: Shadows | None = None,
        *,
        interval: float = 1.0,
        bounds_ms: tuple[float, ...] = LATENCY_BOUNDS_MS,
    ) -> None:
        self._db = db
        self.process = process
        self._shadows = shadows
        self._interval = interval
        self._bounds = list(bounds_ms)
        self._tallies: dict[Key, Tally] = {}
        self._touched: dict[Key, float] = {}
        self._dirty: set[Key] = set()
        self._task: asyncio.Task[None] | None = None

    # ---- the observer ----------------------------------------------------------------------------
    def __call__(
        self, ex: Exchange, route: Route, status: int, latency_ms: float, answer: Answer | None
    ) -> None:
        rollout = route.rollout
        if rollout is None or rollout.get("state") != "RUNNING" or ex.served is not None or ex.entity is None:
            return
        rollout_id, step = str(rollout["id"]), int(rollout["step"])
        for tried in ex.chain[:-1]:  # fallbacks: the entities that failed before the last
            failed = self._tally((rollout_id, step, str(tried["served_entity"])))
            failed.requests += 1
            failed.errors += int(_failed(int(tried.get("status_code") or 500)))
        tally = self._tally((rollout_id, step, ex.entity))
        tally.requests += 1
        if _failed(status):
            tally.errors += 1
        tally.counts[min(bisect.bisect_left(self._bounds, latency_ms), len(self._bounds))] += 1
        if (
            rollout.get("compare")
            and status == 200
            and ex.entity == rollout.get("candidate")
            and answer is not None
            and answer.stream is None
            and self._shadows is not None
        ):
            incumbent = self._incumbent(rollout)
            if incumbent is not None and incumbent in route.entities:
                self._compare(ex, route, incumbent, answer, (rollout_id, step, ex.entity))

    def _tally(self, key: Key) -> Tally:
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = Tally(
                bounds_ms=list(self._bounds), counts=[0] * (len(self._bounds) + 1)
            )
        self._dirty.add(key)
        self._touched[key] = time.monotonic()
        return tally

    @staticmethod
    def _incumbent(rollout: dict[str, Any]) -> str | None:
        """An incumbent drawn by its traffic share in the step (the first one when none has any)."""
        incumbents = list(rollout.get("incumbents") or [])
        shares = {
            r["served_entity_name"]: float(r["traffic_percentage"])
            for r in rollout.get("traffic") or []
            if r["served_entity_name"] in incumbents and float(r["traffic_percentage"]) > 0
        }
        if shares:
            return random.choices(list(shares), weights=list(shares.values()))[0]
        return incumbents[0] if incumbents else None

    def _compare(self, ex: Exchange, route: Route, incumbent: str, answer: Answer, key: Key) -> None:
        mine = answer.data

        def done(status: int, body: bytes | None, _latency_ms: float) -> None:
            if status != 200 or body is None:
                return  # the incumbent failed: nothing to compare with
            try:
                theirs = orjson.loads(body)
            except orjson.JSONDecodeError:
                return
            tally = self._tally(key)
            tally.compared += 1
            if agree(mine, theirs):
                tally.agreed += 1

        self._shadows.copy(ex, route, incumbent, done)  # type: ignore[union-attr]

    # ---- flushing ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def aclose(self) -> None:
        """Stop flushing, after one last flush."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                log.warning("rollout tallies not written (next try in %s s)", self._interval, exc_info=True)

    async def flush(self) -> None:
        """Write the tallies changed since the last flush (a copy: counting goes on meanwhile)."""
        if not self._dirty:
            self._forget()
            return
        keys, self._dirty = self._dirty, set()
        snapshot = {
            key: Tally(
                requests=t.requests,
                errors=t.errors,
                bounds_ms=list(t.bounds_ms),
                counts=list(t.counts),
                compared=t.compared,
                agreed=t.agreed,
            )
            for key in keys
            if (t := self._tallies.get(key)) is not None
        }
        try:
            await asyncio.to_thread(self._db.rollouts.save_tallies, self.process, snapshot, now_ms())
        except BaseException:
            self._dirty |= keys  # written with the next flush
            raise
        self._forget()

    def _forget(self) -> None:
        cutoff = time.monotonic() - _FORGET_SECONDS
        for key in [k for k, at in self._touched.items() if at < cutoff and k not in self._dirty]:
            self._tallies.pop(key, None)
            self._touched.pop(key, None)
