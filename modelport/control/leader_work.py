"""Work that only the leader runs: a scan every ``interval`` seconds (or at once when woken) that
starts a task per piece of work found, all of them cancelled when this process stops leading.

The bulk jobs (``batch/runner.py``), the table jobs (``batch/table_runner.py``) and the monitor
refreshes (``control/monitor_runner.py``) are such work: :class:`LeaderWork` holds their common
loop; each says in :meth:`LeaderWork.scan` what to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["LeaderWork"]


class LeaderWork:
    """Runs :meth:`scan` while ``leading()`` says this process leads (see the module docstring)."""

    #: What the log says when a scan fails.
    what = "leader work"

    def __init__(self, *, leading: Callable[[], bool], interval: float, log: logging.Logger) -> None:
        self._leading = leading
        self._interval = interval
        self._log = log
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._scan_loop())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()

    def wake(self) -> None:
        """Something was created or cancelled: scan now rather than at the next tick (any thread)."""
        task = self._task
        if task is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
            task.get_loop().call_soon_threadsafe(self._wake.set)

    async def _scan_loop(self) -> None:
        while True:
            try:
                if self._leading():
                    await self.scan()
                else:
                    for task in self._running.values():
                        task.cancel()
            except Exception:
                self._log.exception("%s scan failed", self.what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()

    async def scan(self) -> None:
        """Start (with :meth:`launch`) the work there is to start now; called while leading."""
        raise NotImplementedError

    def launch(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as the task of ``key`` (at most one per key: see :meth:`busy`)."""
        task = asyncio.get_running_loop().create_task(work)
        self._running[key] = task
        task.add_done_callback(lambda _t: self._running.pop(key, None))

    def busy(self) -> set[str]:
        """The keys whose task runs now."""
        return set(self._running)
