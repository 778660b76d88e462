"""How a replica process learns it must stop: SIGTERM/SIGINT, or its server gone (kill -9)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

__all__ = ["stop_when_told"]


def stop_when_told(parent_pid: int, on_stop: Callable[[], None]) -> asyncio.Task[None]:
    """Call ``on_stop`` on SIGTERM or SIGINT, or once ``parent_pid`` is no longer this process's
    parent (a server killed with -9 cannot stop its replicas: they notice and stop themselves).
    Returns the watching task; cancel it when the process is done."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop)

    async def watch_parent() -> None:
        while os.getppid() == parent_pid:
            await asyncio.sleep(1.0)
        on_stop()

    return loop.create_task(watch_parent())
