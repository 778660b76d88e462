"""How a replica process learns it must stop: SIGTERM/SIGINT, or its server gone (kill -9).

With one server (the default), a replica stops as soon as its parent is gone: a server killed
with -9 cannot stop its replicas, so they notice and stop themselves.

When several servers share one store (``orphan_seconds`` > 0), a replica whose server died
may be **adopted** by the next leader instead, so that its queries go on: it keeps serving for
``orphan_seconds`` after its owner (the server that started it) is gone or released it (it
stopped leading, :meth:`Watch.release`), and stops then unless a new owner adopted it (an
ADOPT frame, :meth:`Watch.adopt`); from then on it watches that process instead. A replica
whose parent (the zygote) is gone while its owner still runs stops
at once, as with one server: its owner has counted it dead and started another.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

__all__ = ["Watch", "alive", "stop_when_told"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Watch:
    """What :func:`stop_when_told` watches; :meth:`adopt` hands the replica to a new owner."""

    def __init__(self, parent_pid: int, owner_pid: int = 0, orphan_seconds: float = 0.0) -> None:
        self.parent_pid = parent_pid
        self.owner_pid = owner_pid or parent_pid
        self.orphan_seconds = orphan_seconds
        self.orphaned_at: float | None = None
        self.adopted = False
        self.released = False

    def adopt(self, owner_pid: int) -> None:
        self.owner_pid = owner_pid
        self.orphaned_at = None
        self.adopted = True
        self.released = False

    def release(self, owner_pid: int) -> None:
        """The owner ``owner_pid`` gave the replica up (it stopped leading): wait to be adopted
        as if it were gone. From any other process (one that lost it already), ignored."""
        if owner_pid == self.owner_pid:
            self.released = True

    def must_stop(self, now: float) -> bool:
        if self.orphan_seconds <= 0:
            return os.getppid() != self.parent_pid
        if not self.released and alive(self.owner_pid):
            self.orphaned_at = None
            # the owner lives but the parent (its zygote) is gone: the owner counts it dead
            return not self.adopted and os.getppid() != self.parent_pid
        if self.orphaned_at is None:
            self.orphaned_at = now
        return now - self.orphaned_at >= self.orphan_seconds


def stop_when_told(watch: Watch | int, on_stop: Callable[[], None]) -> asyncio.Task[None]:
    """Call ``on_stop`` on SIGTERM or SIGINT, or once :class:`Watch` says so (checked every
    second; an int is a parent pid, watched as with one server). Returns the watching task;
    cancel it when the process is done."""
    if isinstance(watch, int):
        watch = Watch(watch)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop)

    async def watch_owner() -> None:
        assert isinstance(watch, Watch)
        while not watch.must_stop(time.monotonic()):
            await asyncio.sleep(1.0)
        on_stop()

    return loop.create_task(watch_owner())
