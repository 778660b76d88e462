"""Start the real ``modelport serve`` on a free port, wait for /ready, stop or kill it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

ADMIN_TOKEN = "dapi-test-admin-token"

#: Ports :func:`free_port` hands out: below Linux's default ephemeral range (32768-60999), so
#: no outgoing connection of any process takes one as its source port, and no ``bind(0)``.
PORT_RANGE = range(10000, 32000)
#: One lock file per port handed out: whoever holds its ``flock`` owns the port until it exits.
PORT_LOCKS = Path(tempfile.gettempdir()) / f"modelport-test-ports-{os.getuid()}"
_held: dict[int, IO[bytes]] = {}
_rng = random.Random()  # seeded from os.urandom, whatever a test does to the random module


def free_port() -> int:
    """A port on 127.0.0.1 that no other test process (this run's xdist workers, other runs on
    the machine) gets from this function while this process lives, and that is free now.

    A port found with ``bind(0)`` and closed again can be handed to someone else before the
    server that was meant to bind it does (another worker's ``bind(0)``, or an outgoing
    connection's source port), and a stopped server restarts on its port later. So each port
    is reserved with an ``flock`` on ``PORT_LOCKS/<port>``, held until this process exits, and
    never handed out twice by it."""
    PORT_LOCKS.mkdir(exist_ok=True)
    for _ in range(500):
        port = _rng.choice(PORT_RANGE)
        if port in _held:
            continue
        lock = (PORT_LOCKS / str(port)).open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another test process holds it
            lock.close()
            continue
        if not _bindable(port):  # something else listens there (or a connection lingers)
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
            continue
        _held[port] = lock
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1} after 500 tries")


def _bindable(port: int) -> bool:
    with socket.socket() as s, contextlib.suppress(OSError):
        s.bind(("127.0.0.1", port))
        return True
    return False


class ServerProcess:
    """One ``modelport serve`` process; restartable on the same port and data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        store: str | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> None:
        """``cwd``: the server's working folder (``python -m modelport`` imports from it first);
        ``new_session``: start it in a session of its own (``os.killpg(proc.pid, ...)`` then
        reaches it and what it starts; the benchmarks use both)."""
        self.data_dir = data_dir
        self.store = store
        self.port = free_port()
        self.extra_args = extra_args or []
        self.env = env or {}
        self.cwd = cwd
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self.scheme = "https" if "--tls-certfile" in self.extra_args else "http"
        self.ready_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServerProcess:
        """Start and wait until ``/ready`` answers 200 (the registry is loaded)."""
        return self.start_until("/ready", timeout)

    def start_until(self, path: str, timeout: float = 90.0) -> ServerProcess:
        """Start and wait until ``path`` answers 200 (``/health``: the control plane is up)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "modelport",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "text",
            *self.extra_args,
        ]
        if self.store:
            args += ["--store", self.store]
        # System endpoints (foundation models) are on by default in modelport; tests that
        # count or list endpoints get a server without them unless they ask.
        # The failed-authentication limit (per client address, and every test client is
        # 127.0.0.1) is off unless a test turns it on: suites that check 401s would trip it.
        env = {
            **os.environ,
            "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN,
            "MODELPORT_SYSTEM_ENDPOINTS": "false",
            "MODELPORT_AUTH_FAILURE_LIMIT": "0",
            **self.env,
        }
        log = self.log_path.open("ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            start_new_session=self.new_session,
        )
        self.wait_ready(path, timeout, started)
        return self

    def wait_ready(self, path: str = "/ready", timeout: float = 90.0, started: float | None = None) -> None:
        """Poll ``path`` until it answers 200; fail at once if the process exits."""
        assert self.proc is not None
        started = time.monotonic() if started is None else started
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelport serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}{path}", timeout=2, verify=False).status_code == 200:
                    if path == "/ready":
                        self.ready_seconds = time.monotonic() - started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"modelport serve: {path} did not answer after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
