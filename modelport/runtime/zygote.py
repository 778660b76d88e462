"""The replica zygote: a process that has imported MLflow once and forks replicas from it.

Importing MLflow, pandas and scikit-learn takes a fresh interpreter 4-6 s; loading a small
model after that takes a fraction of a second. The server starts one zygote next to
itself::

    python -m modelport.runtime.zygote --socket PATH

which imports :data:`PRELOAD`, listens on ``PATH`` and then answers one JSON object per
line on the server's connection:

- ``{"id": n, "argv": [...], "env": {...}, "log": "/path", "cwd": "/dir"}`` forks a child
  that becomes ``python -m modelport.runtime.worker <argv>``: its own session, stdin from
  ``/dev/null``, stdout and stderr appended to ``log``, ``os.environ`` replaced by ``env``.
  The answer is ``{"id": n, "pid": p}`` (or ``{"id": n, "error": "..."}``).
- when a child exits, ``{"exit": pid, "status": s}`` (``s`` as ``Popen.returncode``: the
  exit status, or minus the signal number).

The zygote is single-threaded (a fork copies only the calling thread; a lock held by
another thread would stay locked in the child forever) and never imports torch or CUDA
libraries, so ``CUDA_VISIBLE_DEVICES`` set for a child still takes effect. When the
server's connection closes or the server dies, the zygote stops its children and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

import orjson
from setproctitle import setproctitle

__all__ = ["PRELOAD", "main"]

#: Imported before the first fork; optional ones are skipped when not installed. ``skops.io``
#: is what MLflow loads scikit-learn models with; it imports every estimator (and torch,
#: where installed, through scikit-learn's array API support): 4-6 s on its own.
PRELOAD: tuple[str, ...] = (
    "modelport.runtime.worker",
    "modelport.runtime.custom_handler",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    "skops.io",
)


def _preload() -> list[str]:
    loaded = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        loaded.append(name)
    return loaded


class Zygote:
    def __init__(self, listener: socket.socket, parent_pid: int) -> None:
        self.listener = listener
        self.parent_pid = parent_pid
        self.orphanable: set[int] = set()
        self.conn: socket.socket | None = None
        self.children: set[int] = set()
        self.selector = selectors.DefaultSelector()
        self._buffer = b""

    def run(self) -> None:
        selector = self.selector
        selector.register(self.listener, selectors.EVENT_READ)
        served = False
        while True:
            for key, _ in selector.select(timeout=0.05):
                if key.fileobj is self.listener:
                    conn, _ = self.listener.accept()
                    if self.conn is not None:  # one server, one connection
                        conn.close()
                        continue
                    self.conn, served = conn, True
                    selector.register(conn, selectors.EVENT_READ)
                elif not self._read():
                    selector.unregister(key.fileobj)
                    self.conn = None
            self._reap()
            if (served and self.conn is None) or os.getppid() != self.parent_pid:
                self._stop_children()
                return

    def _read(self) -> bool:
        assert self.conn is not None
        try:
            data = self.conn.recv(65536)
        except OSError:
            return False
        if not data:
            return False
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip():
                self._spawn(orjson.loads(line))
        return True

    def _send(self, message: dict[str, Any]) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.sendall(orjson.dumps(message) + b"\n")

    def _spawn(self, request: dict[str, Any]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            self._send({"id": request["id"], "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _become_worker(request, [self.selector, self.listener, self.conn])
        self.children.add(pid)
        if "--orphan-seconds" in request["argv"]:
            # Several servers share the store: the replica outlives its server for the next
            # leader to adopt, and stops on its own otherwise (runtime/stopping.py).
            self.orphanable.add(pid)
        self._send({"id": request["id"], "pid": pid})

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                self.children.discard(pid)
                self.orphanable.discard(pid)
                self._send({"exit": pid, "status": _returncode(status)})

    def _stop_children(self) -> None:
        """Stop the children that stop with their server; those that wait to be adopted by the
        next leader (``orphanable``) are left alone, also after the grace (they were killed
        10 s after their server's death, while the next leader still served with them)."""
        for pid in self.children - self.orphanable:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        while self.children - self.orphanable and time.monotonic() < deadline:
            time.sleep(0.05)
            self._reap()
        for pid in self.children - self.orphanable:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _returncode(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _become_worker(request: dict[str, Any], inherited: list[Any]) -> None:
    """In the forked child: set up the process as a fresh replica would be, run the worker."""
    code = 1
    try:
        for sock in inherited:
            if sock is not None:
                sock.close()
        os.setsid()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.close(null_fd)
        # `ps` and `pgrep -f` then see the replica, not the zygote (before the environment
        # changes: setproctitle needs the process's original environment block).
        setproctitle(" ".join([sys.executable, "-m", "modelport.runtime.worker", *request["argv"]]))
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request.get("cwd") or "/")
        _reseed()
        from modelport.runtime import worker

        code = worker.main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reseed() -> None:
    # `random` reseeds itself after fork; numpy's global generator does not.
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelport.runtime.zygote",
        description="Import MLflow once and fork modelport replicas from this process.",
    )
    parser.add_argument("--socket", required=True, help="Path of the unix socket to listen on.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    parent = os.getppid()
    started = time.perf_counter()
    loaded = _preload()
    # Children share the preloaded objects copy-on-write; a frozen generation is never
    # walked by the collector, so those pages stay shared (Python's gc docs advise this).
    gc.freeze()
    if threading.active_count() != 1:
        # Forking a process with other threads can deadlock the children: refuse to serve.
        names = ", ".join(t.name for t in threading.enumerate())
        print(f"modelport-zygote: threads started by the preload ({names}); not forking", file=sys.stderr)
        return 4
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    listener.listen(1)
    print(
        f"modelport-zygote: preloaded {', '.join(loaded)} in {time.perf_counter() - started:.2f}s",
        file=sys.stderr,
        flush=True,
    )
    try:
        Zygote(listener, parent).run()
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
