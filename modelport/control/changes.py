"""Following the store: every server process learns of other processes' changes within
``interval`` seconds (0.5 by default), by polling the store's change counter
(``store/changes.py``), one primary-key read.

When the counter moved, the listeners run, in the order they subscribed, each in a worker
thread: the routing table re-reads the endpoints whose markers changed, the token and secret
caches are dropped, the replica registry is re-read, and the leader scans for work recorded by
other processes. No notification is needed for correctness (a lost one cannot hide a change):
the counter is read every interval whatever happens, and a listener that fails is run again at
the next poll. While the store is unreachable the caches keep serving; that is logged once
when it starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from modelport.store.changes import ChangeCounter
from modelport.store.connectivity import is_unreachable

__all__ = ["ChangeFeed"]

log = logging.getLogger("modelport.changes")

Listener = Callable[[], Awaitable[None]]


class ChangeFeed:
    def __init__(self, counter: ChangeCounter, *, interval: float = 0.5) -> None:
        self._counter = counter
        self.interval = interval
        self._listeners: list[tuple[str, Listener]] = []
        self._seen: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._store_down = False
        self.polls = 0

    def subscribe(self, name: str, listener: Listener) -> None:
        """Run ``listener`` (a coroutine function) whenever the store changed."""
        self._listeners.append((name, listener))

    def subscribe_blocking(self, name: str, fn: Callable[[], object]) -> None:
        """Run the blocking ``fn`` in a worker thread whenever the store changed."""

        async def run() -> None:
            await asyncio.to_thread(fn)

        self.subscribe(name, run)

    async def start(self) -> None:
        """Read the counter now (what is loaded at start-up is current to it), then follow it."""
        try:
            self._seen = await asyncio.to_thread(self._counter.version)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def poll(self) -> bool:
        """One poll: True when the counter moved and every listener ran."""
        self.polls += 1
        version = await asyncio.to_thread(self._counter.version)
        if version == self._seen:
            return False
        failed = False
        for name, listener in self._listeners:
            try:
                await listener()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed = True
                if is_unreachable(exc):
                    raise
                log.exception("change listener %s failed", name)
        if not failed:  # else the next poll runs every listener again
            self._seen = version
        return not failed

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unreachable(exc):
                    log.exception("following the store's changes failed")
                elif not self._store_down:
                    log.warning("metadata store unreachable: serving what is in memory until it is back")
                self._store_down = self._store_down or is_unreachable(exc)
                continue
            if self._store_down:
                self._store_down = False
                log.info("metadata store reachable again: changes followed")
