"""Serve an ASGI app (a fake provider) on 127.0.0.1 with a free port, in a background thread.

:class:`LoopbackServer` binds the socket itself before uvicorn starts, so there is no
race for the port, and :meth:`LoopbackServer.start` returns only once uvicorn accepts
connections. :class:`Faults` is the shared set of knobs a fake offers its tests: answer
the next requests with an error status, or answer slowly.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["Fault", "Faults", "LoopbackServer"]


class LoopbackServer:
    """One uvicorn server for ``app`` on ``127.0.0.1:<free port>``; ``url`` has no trailing slash.

    Usable as a context manager; :meth:`stop` waits for the server thread to end.
    """

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=f"fake-{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LoopbackServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the loopback server thread ended before it started serving")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the loopback server did not start within {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class Fault:
    """An answer a fake gives instead of its normal one."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Faults:
    """Scripted failures and delays, shared by the handler thread and the test thread.

    ``error_body(status, message)`` renders the provider's own error body (Cohere's
    ``{"message"}``, Google's ``{"error": {...}}``, ...).
    """

    def __init__(self, error_body: Callable[[int, str], bytes]) -> None:
        self._error_body = error_body
        self._queue: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.delay = 0.0

    def fail(
        self,
        status: int,
        message: str | None = None,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and the provider's error body)."""
        body = self._error_body(status, message or f"fake error {status}")
        with self._lock:
            for _ in range(times):
                self._queue.append(Fault(status, body, dict(headers or {})))

    def slow(self, seconds: float) -> None:
        """Wait ``seconds`` before answering every request (until :meth:`reset`)."""
        self.delay = seconds

    def take(self) -> Fault | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
        self.delay = 0.0
