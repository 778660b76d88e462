"""Starting replica processes: forked from the pre-warmed zygote, or a fresh interpreter.

:class:`ZygoteClient` is the server's side of ``runtime/zygote.py``: it starts the zygote
in the background when the runtime starts, forks replicas from it once it has imported
MLflow (a replica then starts in the time it takes to load its model), and restarts it
when it dies. A replica is started the classic way, ``python -m modelport.runtime.worker``
in a new interpreter, when it cannot be forked faithfully: another Python (a per-model
environment), environment variables that libraries read while being imported (thread
pools, allocators, interpreter flags), or the zygote is off or failed to start.

Both kinds of process look the same to ``runtime/replica.py``: ``pid``, ``returncode``,
``wait()``, ``terminate()``, ``kill()`` (an ``asyncio.subprocess.Process`` or a
:class:`ForkedProcess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

__all__ = [
    "IMPORT_TIME_PREFIXES",
    "ForkedProcess",
    "ReplicaProcess",
    "ZygoteClient",
    "ZygoteUnavailable",
    "forkable",
    "launch",
]

log = logging.getLogger("modelport.runtime")

#: Variables read while libraries are imported (already done in the zygote): a replica
#: whose environment sets one differently from the zygote's starts in a fresh interpreter.
IMPORT_TIME_PREFIXES = (
    "PYTHON",
    "LD_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "GOTO",
    "KMP_",
    "VECLIB_",
    "NUMEXPR_",
    "MALLOC",
    "SKLEARN_",
    "PANDAS_",
    "MLFLOW_",
)
#: After the zygote failed to start, replicas start in fresh interpreters for this long.
RETRY_SECONDS = 60.0
#: Variables the server itself sets per replica; the child gets them after the fork.
#: A replica's niceness (``os.nice``), applied by the worker before the model loads.
NICE_ENV = "MODELPORT_REPLICA_NICE"
_PER_REPLICA = frozenset({"PYTHONUNBUFFERED", "CUDA_VISIBLE_DEVICES", NICE_ENV})


class ReplicaProcess(Protocol):
    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class ZygoteUnavailable(Exception):
    """The zygote is off, still failing to start, or died; start a fresh interpreter instead."""


class ForkedProcess:
    """A replica forked by the zygote: not our child, so its exit comes from the zygote."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    def exited(self, status: int) -> None:
        if self.returncode is None:
            self.returncode = status
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def _signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class ZygoteClient:
    """One zygote per server: started in the background when the first model entity is
    prepared (a server without custom models never pays its imports), restarted after it dies."""

    def __init__(self, socket_path: Path, log_path: Path, env: Mapping[str, str]) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        self.env = {**env, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
        self._ids = itertools.count(1)
        self._starting: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[ForkedProcess]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._failed_at = 0.0
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Begin starting the zygote unless it runs, is starting, or failed a moment ago."""
        if self._closed or self._connected:
            return
        if self._starting is not None and not self._starting.done():
            return
        if self._failed_at and time.monotonic() - self._failed_at < RETRY_SECONDS:
            return
        self._starting = asyncio.get_running_loop().create_task(self._start())

    @property
    def _connected(self) -> bool:
        return self._writer is not None and self._reader_task is not None and not self._reader_task.done()

    async def _start(self) -> None:
        try:
            await self._start_process()
        except BaseException:
            self._failed_at = time.monotonic()
            if self._process is not None and self._process.returncode is None:
                self._process.kill()
            raise

    async def _start_process(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        started = time.monotonic()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "modelport.runtime.zygote",
                "--socket",
                str(self.socket_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                env=self.env,
                start_new_session=True,
            )
        finally:
            os.close(log_fd)
        while True:
            if self._process.returncode is not None:
                raise ZygoteUnavailable(f"the zygote exited with status {self._process.returncode}")
            if self.socket_path.exists():
                try:
                    reader, self._writer = await asyncio.open_unix_connection(str(self.socket_path))
                    break
                except OSError:
                    pass
            await asyncio.sleep(0.02)
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop(reader))
        log.info("replica zygote ready", extra={"seconds": round(time.monotonic() - started, 2)})

    async def close(self) -> None:
        self._closed = True
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        with contextlib.suppress(BaseException):
            if self._starting is not None:
                await self._starting
        if self._writer is not None:
            self._writer.close()  # the zygote stops its children and exits on EOF
        if self._process is not None and self._process.returncode is None:
            try:
                await asyncio.wait_for(self._process.wait(), 15.0)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task

    # ---- forking ---------------------------------------------------------------------------
    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: str
    ) -> ForkedProcess:
        if self._closed:
            raise ZygoteUnavailable("the runtime is stopping")
        if not self._connected:
            self.start()
        if self._starting is None:
            raise ZygoteUnavailable("the zygote is not running")
        try:
            await asyncio.shield(self._starting)
        except ZygoteUnavailable:
            raise
        except Exception as exc:
            raise ZygoteUnavailable(f"the zygote did not start: {exc}") from exc
        if not self._connected or self._writer is None:
            raise ZygoteUnavailable("the zygote went away")
        request_id = next(self._ids)
        fut: asyncio.Future[ForkedProcess] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        message: dict[str, Any] = {
            "id": request_id,
            "argv": list(argv),
            "env": dict(env),
            "log": str(log_path),
            "cwd": cwd,
        }
        self._writer.write(orjson.dumps(message) + b"\n")
        try:
            return await asyncio.wait_for(fut, 30.0)
        finally:
            self._pending.pop(request_id, None)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                message = orjson.loads(line)
                if "exit" in message:
                    child = self._children.pop(message["exit"], None)
                    if child is not None:
                        child.exited(message["status"])
                    continue
                fut = self._pending.pop(message.get("id", -1), None)
                if "pid" in message:
                    # Tracked from here, so an exit read right after is not lost.
                    child = self._children[message["pid"]] = ForkedProcess(message["pid"])
                    if fut is None or fut.done():  # the start was given up: nobody owns it
                        child.kill()
                    else:
                        fut.set_result(child)
                elif fut is not None and not fut.done():
                    fut.set_exception(ZygoteUnavailable(message.get("error", "the zygote refused")))
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            self._writer = None
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ZygoteUnavailable("the zygote went away"))
            # Its children stop themselves when they see it gone; make sure, and tell the waiters.
            for child in self._children.values():
                child.kill()
                child.exited(-signal.SIGKILL)
            self._children.clear()
            if not self._closed:
                log.warning("replica zygote went away; it is restarted on the next replica start")


def forkable(python: str, env: Mapping[str, str], zygote_env: Mapping[str, str]) -> bool:
    """Whether a replica with this interpreter and environment may be forked from the zygote."""
    if os.path.abspath(python) != os.path.abspath(sys.executable):  # a venv links the same binary
        return False
    for key in set(env) | set(zygote_env):
        if key in _PER_REPLICA or not key.startswith(IMPORT_TIME_PREFIXES):
            continue
        if env.get(key) != zygote_env.get(key):
            return False
    return True


async def launch(
    *,
    python: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    log_fd: int,
    zygote: ZygoteClient | None,
) -> tuple[ReplicaProcess, str]:
    """Start ``modelport.runtime.worker <argv>``; returns the process and how it was started."""
    if zygote is not None and forkable(python, env, zygote.env):
        try:
            child = await zygote.spawn(argv, env, log_path, os.getcwd())
            return child, "forked from the zygote"
        except ZygoteUnavailable as exc:
            os.write(log_fd, f"modelport: starting a fresh interpreter ({exc})\n".encode())
    process = await asyncio.create_subprocess_exec(
        python,
        "-m",
        "modelport.runtime.worker",
        *argv,
        "--parent-pid",
        str(os.getpid()),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        env=dict(env),
        start_new_session=True,
    )
    return process, "a new interpreter"
