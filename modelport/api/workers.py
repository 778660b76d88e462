"""``--workers N``: N processes answering HTTP on one port, supervised by the first.

Each process listens on its own socket bound with ``SO_REUSEPORT``, so the kernel spreads new
connections over them (one shared socket would leave most connections to whichever process
accepts fastest). The first process (the **server**) starts as ``modelport serve`` always
does: it migrates the store, may lead (the reconciler, the zygote and the replicas) and
supervises the others. Once it listens, it starts N-1 **workers** (``multiprocessing``'s spawn:
a fresh interpreter, nothing inherited but the settings), each a whole ``ModelportApp`` in the
worker role: it answers every route, follows the store's changes, and reaches the replicas
over their unix sockets through the replica registry (``runtime/remote.py``).

Supervision, as uvicorn's multiprocess supervisor:

- a worker that exits (crash, kill -9) is replaced with the same index (so it replays the
  spool the dead one left, ``Settings.worker_spool_path``); one that keeps dying within
  :data:`QUICK_EXIT_SECONDS` of its start is restarted after a growing pause (up to 10 s);
- SIGTERM or SIGINT to the server drains everything: the workers get SIGTERM first and finish
  what they are answering (uvicorn's graceful shutdown) while the server still runs the
  replicas they call; the server then stops as it does alone;
- a worker whose server is gone (kill -9 of the server) stops by itself within a second.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from modelport.config import Settings

__all__ = ["QUICK_EXIT_SECONDS", "WorkerSupervisor", "reuseport_socket", "worker_main"]

log = logging.getLogger("modelport.server")

#: A worker that exits within this many seconds of its start is restarted after a pause.
QUICK_EXIT_SECONDS = 5.0
#: How long the workers get to drain at shutdown before they are killed.
DRAIN_SECONDS = 20.0


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other processes of this user may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class WorkerSupervisor:
    """Starts, replaces and stops the worker processes 1 to ``count`` (see the module docstring)."""

    def __init__(self, settings: Settings, port: int, count: int) -> None:
        self._settings = settings
        self._port = port
        self._count = count
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[int, BaseProcess] = {}
        self._started_at: dict[int, float] = {}
        self._pauses: dict[int, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.replaced = 0

    @property
    def pids(self) -> dict[int, int | None]:
        return {index: p.pid for index, p in self._processes.items()}

    def start_when(self, ready: Callable[[], bool]) -> None:
        """Start the workers once ``ready()`` (the server listens), then supervise them."""
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="modelport-workers", daemon=True
        )
        self._thread.start()

    def _spawn(self, index: int) -> None:
        process = self._context.Process(
            target=worker_main,
            args=(self._settings, index, self._port, os.getpid()),
            name=f"modelport-worker-{index}",
            daemon=False,
        )
        process.start()
        self._processes[index] = process
        self._started_at[index] = time.monotonic()
        log.info("worker started", extra={"worker": index, "pid": process.pid})

    def _run(self, ready: Callable[[], bool]) -> None:
        while not ready():
            if self._stopping.wait(0.05):
                return
        for index in range(1, self._count + 1):
            self._spawn(index)
        while not self._stopping.wait(0.5):
            for index, process in list(self._processes.items()):
                if process.is_alive() or self._stopping.is_set():
                    continue
                lived = time.monotonic() - self._started_at[index]
                pause = self._pauses.get(index, 0.0)
                pause = min(10.0, max(0.5, pause * 2)) if lived < QUICK_EXIT_SECONDS else 0.0
                self._pauses[index] = pause
                log.warning(
                    "worker exited; starting another",
                    extra={"worker": index, "pid": process.pid, "exit": process.exitcode, "pause": pause},
                )
                if pause and self._stopping.wait(pause):
                    return
                self.replaced += 1
                self._spawn(index)

    def stop(self, timeout: float = DRAIN_SECONDS) -> None:
        """SIGTERM every worker, wait ``timeout`` seconds for them to drain, then SIGKILL."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        for process in self._processes.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self._processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker did not drain in time; killing it", extra={"pid": process.pid})
                process.kill()
                process.join(5)


def _watch_server(server_pid: int) -> None:
    """Stop this worker (SIGTERM to itself: a graceful shutdown) once its server is gone."""
    while os.getppid() == server_pid:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


def worker_main(settings: Settings, index: int, port: int, server_pid: int) -> None:
    """A worker process: the app in the worker role, served on its own SO_REUSEPORT socket."""
    import uvicorn

    from modelport.api.app import ModelportApp
    from modelport.api.server import uvicorn_config
    from modelport.log_format import configure_logging, flush_logging

    configure_logging(settings.log_level, settings.log_format)
    threading.Thread(
        target=_watch_server, args=(server_pid,), name="modelport-server-watch", daemon=True
    ).start()
    sock = reuseport_socket(settings.host, port)
    app = ModelportApp(settings, role="worker", worker_index=index)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        uvicorn.Server(uvicorn_config(app, settings)).run(sockets=[sock])
    finally:
        flush_logging()
