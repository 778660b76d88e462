"""The runner of rollouts: the leader drives every rollout not over (``control/rollouts.py``).

Every second, and whenever a rollout is begun or steered (:meth:`RolloutRunner.wake`), the
leader lists the WAITING, RUNNING and PAUSED rollouts and starts a task for each one no task of
this process drives. The task calls :meth:`RolloutService.tick` (in a thread) until the rollout
is over: WAITING → RUNNING once its config version serves (FAILED or CANCELED when the update
fails or is cancelled), then an evaluation every ``evaluation_seconds`` (and when the step's
time is up) that holds, advances, promotes or rolls back.

Everything a rollout needs is in the store (its step, when the step started, the tallies of
every process), so a new leader, after a restart or a takeover, goes on where the last one
was. A process that stops leading stops its tasks (``LeaderWork``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from modelport.control.leader_work import LeaderWork
from modelport.control.rollouts import RolloutService

__all__ = ["RolloutRunner"]

log = logging.getLogger("modelport.rollouts")


class RolloutRunner(LeaderWork):
    """Drives ``service``'s rollouts while ``leading()`` says this process leads."""

    what = "rollout"

    def __init__(
        self, service: RolloutService, *, leading: Callable[[], bool], interval: float = 1.0
    ) -> None:
        super().__init__(leading=leading, interval=interval, log=log)
        self.service = service

    async def scan(self) -> None:
        busy = self.busy()
        active = await asyncio.to_thread(self.service.active_ids)
        for rollout_id in active:
            if rollout_id not in busy:
                self.launch(rollout_id, self._drive(rollout_id))

    async def _drive(self, rollout_id: str) -> None:
        while True:
            try:
                delay = await asyncio.to_thread(self.service.tick, rollout_id)
            except Exception:
                log.exception("rollout tick failed", extra={"rollout": rollout_id})
                delay = 1.0
            if delay is None:
                return
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        await super().stop()
        self.service.close()
