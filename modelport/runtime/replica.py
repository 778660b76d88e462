"""One replica: a worker process serving one model, and the kept-open socket to it.

``ReplicaHandle`` is the only code that touches replica processes and sockets. It starts
``python -m modelport.runtime.worker`` with the entity's environment, sends its stdout
and stderr to the entity's runtime log, connects once the model is loaded and then
multiplexes requests over that one unix-socket connection (answers may arrive in any
order; each carries its request id).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelport.entities.foundation.catalog import EngineSpec
from modelport.runtime import protocol
from modelport.runtime.launcher import ReplicaProcess, ZygoteClient, launch
from modelport.runtime.transport import ReplicaKeys

__all__ = ["ReplicaDied", "ReplicaHandle", "ReplicaSpec", "ReplicaStartFailed", "ReplicaStream"]

_ids = itertools.count(1)


class ReplicaStartFailed(Exception):
    """The worker exited or never answered while starting; ``output`` is its last output."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.message = message
        self.output = output


class ReplicaDied(Exception):
    """The replica went away while a request was in flight."""


@dataclass(frozen=True)
class ReplicaSpec:
    """How to start a replica of one served entity."""

    model_path: Path
    run_dir: Path
    socket_prefix: str
    log_path: Path
    env: Mapping[str, str]
    batching: str = "auto"
    max_batch_size: int = 1024
    max_batch_wait_ms: float = 2.0
    python: str = sys.executable
    start_timeout: float = 300.0
    #: Forks replicas from a process that has imported MLflow already; None: always exec.
    zygote: ZygoteClient | None = field(default=None, compare=False)
    #: A foundation model: the engine the replica runs instead of MLflow's pyfunc loader.
    engine: EngineSpec | None = None
    #: What a foundation model's answers carry as ``model`` (the endpoint's name).
    model_name: str = ""
    #: An agent (``entities/agents.py``): its task; the replica runs ``--kind agent``.
    agent_task: str | None = None
    #: An agent's requests that run at once in one replica (each in a thread).
    agent_concurrency: int = 4
    #: Several servers share the store: the replica outlives its server this long, for the
    #: next leader to adopt it (``runtime/stopping.py``); 0: it stops with its server.
    orphan_seconds: float = 0.0
    #: Secrets and TLS for replicas reached over TCP (``runtime/transport.py``).
    keys: ReplicaKeys | None = field(default=None, compare=False)
    #: Makes the entity's replica handles; None: local processes (:class:`ReplicaHandle`).
    #: The Ray backend places them on a cluster (``runtime/ray_backend.py``).
    make_replica: Callable[[ReplicaSpec, int], ReplicaHandle] | None = field(default=None, compare=False)
    #: What the Ray backend asks of the cluster per replica (``num_cpus``, ``num_gpus``,
    #: ``runtime_env``, ...); empty for local replicas.
    placement: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def _watch_args(self) -> list[str]:
        if self.orphan_seconds <= 0:
            return []
        return ["--owner-pid", str(os.getpid()), "--orphan-seconds", f"{self.orphan_seconds:g}"]

    def argv(self, socket_path: Path) -> list[str]:
        """The replica's command line after ``python -m modelport.runtime.worker``; ``--socket``
        comes first, so ``pgrep -f 'modelport.runtime.worker --socket .*<endpoint id>'`` finds it."""
        if self.engine is not None:
            e = self.engine
            return [
                "--socket",
                str(socket_path),
                "--kind",
                "engine",
                "--engine",
                e.engine,
                "--engine-path",
                e.path,
                "--task",
                e.task,
                "--model-name",
                self.model_name,
                "--engine-options",
                orjson.dumps(e.options).decode(),
                *self._watch_args(),
            ]
        if self.agent_task is not None:
            return [
                "--socket",
                str(socket_path),
                "--kind",
                "agent",
                "--model-path",
                str(self.model_path),
                "--task",
                self.agent_task,
                "--concurrency",
                str(self.agent_concurrency),
                *self._watch_args(),
            ]
        return [
            "--socket",
            str(socket_path),
            "--kind",
            "custom",
            "--model-path",
            str(self.model_path),
            "--batching",
            self.batching,
            "--max-batch-size",
            str(self.max_batch_size),
            "--max-batch-wait-ms",
            str(self.max_batch_wait_ms),
            *self._watch_args(),
        ]


class ReplicaStream:
    """The frames of one STREAM request, as they arrive: iterate for ``(kind, payload)``
    until a final one; ``aclose`` (always) tells the replica to stop if it has not ended."""

    def __init__(
        self, handle: ReplicaHandle, request_id: int, queue: asyncio.Queue[tuple[int, bytes] | BaseException]
    ) -> None:
        self._handle = handle
        self._id = request_id
        self._queue = queue
        self.ended = False

    def __aiter__(self) -> ReplicaStream:
        return self

    async def __anext__(self) -> tuple[int, bytes]:
        if self.ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self.ended = True
            raise item
        if item[0] in protocol.FINAL:
            self.ended = True
        return item

    async def aclose(self) -> None:
        self._handle._end_stream(self._id, cancel=not self.ended)
        self.ended = True


class ReplicaHandle:
    def __init__(self, spec: ReplicaSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        # The pid keeps names unique among the servers of one machine (a new leader starts its
        # replicas beside the ones it adopted).
        name = f"{spec.socket_prefix}-r{index}-{os.getpid()}-{next(_ids)}.sock"
        self.socket_path = spec.run_dir / name
        self.process: ReplicaProcess | None = None
        self.start_mode = ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._streams: dict[int, asyncio.Queue[tuple[int, bytes] | BaseException]] = {}
        self._reader_task: asyncio.Task[None] | None = None
        self._log_fh: int | None = None
        self.in_flight = 0
        self.sent = 0  # requests sent (pings not counted)
        self.started_at = 0.0
        self.ready = False
        self.was_ready = False  # set once the start completed: only such replicas can "die"
        self.closing = False
        self.keep_socket = False
        #: The protocol version its last PONG said (``protocol.VERSION``; 1 until one came).
        self.protocol = 1

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def address(self) -> str:
        """Where the replica listens (``runtime/transport.py``), as the registry stores it."""
        return str(self.socket_path)

    @property
    def name(self) -> str:
        """The replica's name, unique among the replicas of the deployment."""
        return self.socket_path.name

    @property
    def host(self) -> str:
        """The machine it runs on; empty: this one."""
        return ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and not self._lost

    @property
    def _lost(self) -> bool:
        return self._reader_task is not None and self._reader_task.done()

    async def start(self) -> None:
        """Start the process and wait until its model is loaded and it answers a ping."""
        spec = self.spec
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._log_fh = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        offset = os.fstat(self._log_fh).st_size
        argv = spec.argv(self.socket_path)
        self.started_at = time.monotonic()
        self.process, self.start_mode = await launch(
            python=spec.python,
            argv=argv,
            env=spec.env,
            log_path=spec.log_path,
            log_fd=self._log_fh,
            zygote=spec.zygote,
        )
        deadline = self.started_at + spec.start_timeout
        while True:
            if self.process.returncode is not None:
                raise ReplicaStartFailed(
                    f"the model server exited with status {self.process.returncode} while loading the model",
                    self._output_since(offset),
                )
            if self.socket_path.exists():
                try:
                    self._reader, self._writer = await asyncio.open_unix_connection(str(self.socket_path))
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                await self.kill()
                raise ReplicaStartFailed(
                    f"the model was not loaded after {spec.start_timeout:.0f}s", self._output_since(offset)
                )
            await asyncio.sleep(0.02)
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())
        await self.ping(timeout=30)
        self.ready = True
        self.was_ready = True

    def _output_since(self, offset: int) -> str:
        try:
            with self.spec.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read()[-8000:].decode("utf-8", errors="replace")
        except OSError:
            return ""

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                request_id, kind, payload = await protocol.read_frame(self._reader)
                if kind == protocol.PONG:  # every connection starts with one (ping or ADOPT)
                    self.protocol = protocol.version_of(payload)
                queue = self._streams.get(request_id)
                if queue is not None:
                    queue.put_nowait((kind, payload))
                    continue
                fut = self._pending.pop(request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result((kind, payload))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, OSError):
            pass
        finally:
            self.ready = False
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ReplicaDied(f"replica {self.index} (pid {self.pid}) went away"))
            self._pending.clear()
            for queue in self._streams.values():
                queue.put_nowait(ReplicaDied(f"replica {self.index} (pid {self.pid}) went away"))

    async def call(self, kind: int, payload: bytes, timeout: float | None) -> tuple[int, bytes]:
        """Send one frame and wait for its answer: ``(kind, payload)``."""
        if self._writer is None or self._lost:
            raise ReplicaDied(f"replica {self.index} is not connected")
        request_id = next(_ids)
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        self.in_flight += 1
        if kind != protocol.PING:
            self.sent += 1
        try:
            self._writer.write(protocol.encode(request_id, kind, payload))
            if timeout is None:
                return await fut
            return await asyncio.wait_for(fut, timeout)
        except (asyncio.CancelledError, TimeoutError):
            # The client went away or gave up: a foundation model stops generating for it, an
            # agent's request task is cancelled (its thread finishes what it runs).
            cancels = self.spec.engine is not None or kind == protocol.AGENT_PREDICT
            if cancels and self._writer is not None and not self._writer.is_closing():
                self._writer.write(protocol.encode(request_id, protocol.CANCEL))
            raise
        finally:
            self.in_flight -= 1
            self._pending.pop(request_id, None)

    def open_stream(self, payload: bytes, kind: int = protocol.STREAM) -> ReplicaStream:
        """Send a STREAM (or AGENT_STREAM) request; its frames arrive on the returned stream."""
        if self._writer is None or self._lost:
            raise ReplicaDied(f"replica {self.index} is not connected")
        request_id = next(_ids)
        queue: asyncio.Queue[tuple[int, bytes] | BaseException] = asyncio.Queue()
        self._streams[request_id] = queue
        self.in_flight += 1
        self.sent += 1
        self._writer.write(protocol.encode(request_id, kind, payload))
        return ReplicaStream(self, request_id, queue)

    def _end_stream(self, request_id: int, *, cancel: bool) -> None:
        if self._streams.pop(request_id, None) is None:
            return
        self.in_flight -= 1
        if cancel and self._writer is not None and not self._writer.is_closing():
            self._writer.write(protocol.encode(request_id, protocol.CANCEL))

    async def ping(self, timeout: float = 5.0) -> bytes:
        kind, payload = await self.call(protocol.PING, b"", timeout)
        if kind != protocol.PONG:
            raise ReplicaDied(f"replica {self.index} answered a ping with kind {kind}")
        return payload

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait ``grace`` seconds for in-flight work, then SIGKILL."""
        self.closing = True
        self.ready = False
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                await self.kill()
        await self._close()

    async def release(self) -> None:
        """Leave the replica running for the next leader to adopt (``runtime/stopping.py``):
        tell it, then close the connection; its socket stays."""
        self.closing = True
        self.ready = False
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(protocol.encode(0, protocol.RELEASE, str(os.getpid()).encode()))
            with contextlib.suppress(Exception):
                await self._writer.drain()
        self.keep_socket = True  # the replica's, for whoever adopts it
        await self._close()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        await self._close()

    async def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
        if self._log_fh is not None:
            os.close(self._log_fh)
            self._log_fh = None
        if not self.keep_socket:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
