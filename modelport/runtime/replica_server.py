"""The replica server: one model behind a unix socket (or TCP: ``runtime/transport.py``),
whatever kind of model it is.

:class:`ReplicaServer` does everything about the socket and the process, the way uvicorn's
``Server`` runs any ASGI app; a :class:`Handler` answers the requests. Two handlers exist:
``runtime/custom_handler.py`` (an MLflow pyfunc model behind the Batcher) and
``runtime/engine_handler.py`` (an LLM or embedding engine, with streams). The server:

- listens on the socket and reads ``runtime/protocol.py`` frames from each connection;
- runs each PREDICT (or PREDICT_RECORDED) and STREAM in a task of its own, answered with OK
  (OK_TRAILER when the handler has a trailer), or CHUNKs then END, or an error frame; CANCEL
  cancels that task (no answer); PING is answered at once with a PONG of the server's counters
  and the handler's;
- answers what a handler raises with :func:`protocol.error_frame`: a ``ModelportError`` as
  it is (status and ``retry_after`` included), anything else as a 500 with its traceback
  in the replica's log;
- stops on SIGTERM or SIGINT, or when its server is gone (``runtime/stopping.py``): it stops
  listening, answers requests that still arrive with 503 and ``retry_after=1``, waits up to
  :data:`DRAIN_SECONDS` for the requests in flight, then answers those left with that 503.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import itertools
import os
import ssl
import stat
import sys
import traceback
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

import orjson

from modelport.errors import BadRequest, ModelportError, TemporarilyUnavailable
from modelport.runtime import protocol
from modelport.runtime.stopping import Watch, stop_when_told
from modelport.runtime.transport import ReplicaAddress, serve_replica

__all__ = ["DRAIN_SECONDS", "Handler", "ReplicaServer", "stopping"]

DRAIN_SECONDS = 10.0


def stopping() -> TemporarilyUnavailable:
    """The answer to a request the replica will not serve because it is stopping."""
    return TemporarilyUnavailable("The replica is stopping; retry the request.", retry_after=1)


class Handler(abc.ABC):
    """What a replica serves. Every method runs on the server's event loop, ``predict`` and
    ``stream`` for many requests at once (each in its task, cancelled when its request is);
    a ``ModelportError`` they raise is the request's answer, anything else is a bug."""

    #: What the replica loaded, for its log (``modelport-worker: loaded <what> in 0.12s``).
    what = ""

    @staticmethod  # noqa: B027 (a handler may have no options)
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the handler's options to the replica's command line (``runtime/worker.py``)."""

    @classmethod
    def load(cls, args: argparse.Namespace) -> Handler | Coroutine[Any, Any, Handler]:
        """Load the model the options name; a coroutine where loading needs the event loop."""
        raise NotImplementedError

    def details(self) -> str:
        """More for that log line, after the time (``; settings {...}``)."""
        return ""

    @abc.abstractmethod
    async def predict(self, payload: bytes) -> bytes:
        """The answer body to the request body ``payload``."""

    async def predict_with_trailer(
        self, payload: bytes, recorded: bool
    ) -> tuple[bytes, protocol.Trailer | None]:
        """:meth:`predict`, and what the gateway should know beside the answer (a feature-aware
        model's lookups: ``runtime/custom_handler.py``); ``recorded``: the request came as
        PREDICT_RECORDED. The default has nothing to add."""
        return await self.predict(payload), None

    def stream(self, payload: bytes) -> AsyncGenerator[bytes, None]:
        """The chunks (JSON bytes each) answering ``payload``. The server closes the generator,
        also when the request is cancelled, so what the answer holds is freed at once."""
        raise BadRequest("This model does not stream its answers.")

    async def predict_agent(
        self, payload: bytes, context: protocol.AgentContext | None
    ) -> tuple[bytes, protocol.Trailer | None]:
        """An agent's answer to ``payload`` (an AGENT_PREDICT) and its trailer (the trace);
        ``context``: what its tools call other endpoints with."""
        raise BadRequest("This model is not an agent.")

    def stream_agent(
        self, payload: bytes, context: protocol.AgentContext | None
    ) -> AsyncGenerator[bytes | protocol.Trailer, None]:
        """An agent's streamed answer (an AGENT_STREAM): chunks, then at most one trailer, last.
        Closed by the server like :meth:`stream`."""
        raise BadRequest("This model is not an agent.")

    def stats(self) -> dict[str, Any]:
        """The handler's counters, sent in PONG after the server's."""
        return {}

    async def run(self) -> None:
        """Work beside the requests, until cancelled (the Batcher's loop); returning is a bug."""
        await asyncio.Event().wait()

    async def aclose(self) -> None:  # noqa: B027 (a model may hold nothing to free)
        """Release the model; the server has answered or cancelled every request."""


class ReplicaServer:
    """Serves one handler on one socket. Guarantees: every PREDICT or STREAM read gets
    exactly one final answer (OK, END or an error frame) on its connection, unless it is
    cancelled or that connection closes first; ``in_flight`` counts those not answered yet."""

    def __init__(
        self,
        handler: Handler,
        parent_pid: int = 0,
        drain_seconds: float = DRAIN_SECONDS,
        *,
        owner_pid: int = 0,
        orphan_seconds: float = 0.0,
    ) -> None:
        self.handler = handler
        #: The server; a server killed with -9 cannot stop its replicas, so they watch it
        #: (``runtime/stopping.py``: with several servers, they wait to be adopted).
        self.parent_pid = parent_pid or os.getppid()
        self.watch = Watch(self.parent_pid, owner_pid, orphan_seconds)
        self.drain_seconds = drain_seconds
        self.stopping = False
        self._stop = asyncio.Event()
        self.requests = 0
        self._tasks: dict[tuple[int, int], asyncio.Task[None]] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._connections = itertools.count(1)
        self._shutting_down = False
        self._last_error = ""

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def stats(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "requests": self.requests,
            "in_flight": self.in_flight,
            "protocol": protocol.VERSION,
            **self.handler.stats(),
        }

    def stop(self) -> None:
        """Refuse new requests from now on, and let :meth:`run` drain (SIGTERM calls this)."""
        self.stopping = True  # at once, not when run() resumes: no request read after it starts
        self._stop.set()

    async def serve(
        self,
        address: str,
        *,
        secret: bytes | None = None,
        tls: ssl.SSLContext | None = None,
        address_file: str = "",
    ) -> bool:
        """Listen on ``address`` (a unix socket's path, or ``tcp://HOST:PORT/NAME`` with the
        replica's ``secret``: ``runtime/transport.py``) and :meth:`run` until told to stop
        (SIGTERM, SIGINT, the server gone); returns what :meth:`run` returns. The address it
        listens on (a TCP port 0 replaced) is written to ``address_file`` when given."""
        watcher = stop_when_told(self.watch, self.stop)
        where = ReplicaAddress.parse(address)
        if not where.is_tcp:
            _remove_stale_socket(where.path)
        server, listening = await serve_replica(address, self.connection, secret=secret, tls=tls)
        if address_file:
            partial = f"{address_file}.partial"
            with open(partial, "w") as fh:
                fh.write(listening)
            os.replace(partial, address_file)
        try:
            return await self.run(server.close)
        finally:
            watcher.cancel()
            if not where.is_tcp:
                with contextlib.suppress(OSError):
                    os.unlink(where.path)

    async def run(self, stop_listening: Callable[[], None]) -> bool:
        """Run the handler's loop until :meth:`stop`; then call ``stop_listening``, wait up to
        ``drain_seconds`` for the requests in flight, answer those left with 503, close the
        connections and the handler. Returns whether every request in flight was answered
        within the drain (False: handler work may still run, e.g. a predict thread)."""
        loop = asyncio.get_running_loop()
        background = loop.create_task(self.handler.run(), name="handler")
        stopped = loop.create_task(self._stop.wait())
        try:
            await asyncio.wait([background, stopped], return_when=asyncio.FIRST_COMPLETED)
            if background.done():  # only a bug ends it: let the server restart the replica
                background.result()
                raise RuntimeError("the handler's loop ended")
            stop_listening()
            if self._tasks:
                await asyncio.wait(list(self._tasks.values()), timeout=self.drain_seconds)
            return not self._tasks
        finally:
            stopped.cancel()
            await self._shut_down(background)

    async def _shut_down(self, background: asyncio.Task[None]) -> None:
        self._shutting_down = True
        background.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await background
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()  # each answers 503 as it ends
        await asyncio.gather(*tasks, return_exceptions=True)
        writers = list(self._writers)
        for writer in writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(w.wait_closed() for w in writers)), 1.0)
        await self.handler.aclose()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read frames from one connection until it closes (``start_unix_server``'s callback)."""
        self._writers.add(writer)
        conn = next(self._connections)
        try:
            while True:
                try:
                    request_id, kind, payload = await protocol.read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return  # closed, or a frame we cannot skip: the stream is lost
                if kind in _REQUESTS:
                    self._start(writer, conn, request_id, kind, payload)
                elif kind == protocol.PING:
                    writer.write(protocol.encode(request_id, protocol.PONG, orjson.dumps(self.stats())))
                elif kind == protocol.ADOPT:
                    if payload.isdigit():
                        self.watch.adopt(int(payload))
                    writer.write(protocol.encode(request_id, protocol.PONG, orjson.dumps(self.stats())))
                elif kind == protocol.RELEASE:
                    if payload.isdigit():
                        self.watch.release(int(payload))
                elif kind == protocol.CANCEL:
                    task = self._tasks.get((conn, request_id))
                    if task is not None:
                        task.cancel()
                else:
                    writer.write(protocol.error_frame(request_id, BadRequest(f"Unknown frame kind {kind}.")))
        finally:
            self._writers.discard(writer)
            for (c, _), task in list(self._tasks.items()):
                if c == conn:
                    task.cancel()  # the server is gone: nobody reads these answers
            writer.close()

    def _start(
        self, writer: asyncio.StreamWriter, conn: int, request_id: int, kind: int, payload: bytes
    ) -> None:
        self.requests += 1
        if self.stopping:
            writer.write(protocol.error_frame(request_id, stopping()))
            return
        key = (conn, request_id)
        task = asyncio.get_running_loop().create_task(self._answer(writer, request_id, kind, payload))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    async def _answer(self, writer: asyncio.StreamWriter, request_id: int, kind: int, payload: bytes) -> None:
        def send(frame: bytes) -> None:
            if not writer.is_closing():
                writer.write(frame)

        try:
            if kind == protocol.STREAM:
                async with contextlib.aclosing(self.handler.stream(payload)) as chunks:
                    async for chunk in chunks:
                        send(protocol.encode(request_id, protocol.CHUNK, chunk))
                send(protocol.encode(request_id, protocol.END))
            elif kind == protocol.AGENT_STREAM:
                context, body = _unwrap(payload)
                trailer: protocol.Trailer | None = None
                async with contextlib.aclosing(self.handler.stream_agent(body, context)) as events:
                    async for event in events:
                        if isinstance(event, protocol.Trailer):
                            trailer = event
                        else:
                            send(protocol.encode(request_id, protocol.CHUNK, event))
                send(protocol.end_frame(request_id, trailer))
            elif kind == protocol.AGENT_PREDICT:
                context, body = _unwrap(payload)
                answer, trailer = await self.handler.predict_agent(body, context)
                send(protocol.ok_frame(request_id, answer, trailer))
            else:
                recorded = kind == protocol.PREDICT_RECORDED
                body, trailer = await self.handler.predict_with_trailer(payload, recorded)
                send(protocol.ok_frame(request_id, body, trailer))
        except asyncio.CancelledError:
            if self._shutting_down:  # not CANCEL: the replica stops before this request is done
                send(protocol.error_frame(request_id, stopping()))
            raise
        except ModelportError as exc:
            self._log(exc)
            send(protocol.error_frame(request_id, exc))
        except Exception as exc:  # a bug: answer, don't drop the request or the connection
            traceback.print_exc()
            send(protocol.error_frame(request_id, ModelportError(f"{type(exc).__name__}: {exc}")))

    def _log(self, error: ModelportError) -> None:
        # What the model or engine raised goes to the replica's log, once per distinct message
        # (a model failing on every request would flood it).
        cause = error.__cause__
        if error.status >= 500 and cause is not None and error.message != self._last_error:
            self._last_error = error.message
            traceback.print_exception(cause, file=sys.stderr)


#: The frames that are requests, each answered in a task of its own.
_REQUESTS = frozenset(
    {
        protocol.PREDICT,
        protocol.STREAM,
        protocol.PREDICT_RECORDED,
        protocol.AGENT_PREDICT,
        protocol.AGENT_STREAM,
    }
)


def _unwrap(payload: bytes) -> tuple[protocol.AgentContext | None, bytes]:
    try:
        return protocol.unwrap_agent(payload)
    except ValueError as exc:
        raise BadRequest(f"Unreadable agent request: {exc}.") from None


def _remove_stale_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
