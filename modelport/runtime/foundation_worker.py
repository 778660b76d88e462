"""The replica process of a foundation model: one engine, served on a unix socket.

Started like the custom-model worker (``runtime/worker.py`` hands over when its argv
holds ``--engine``)::

    python -m modelport.runtime.worker --socket PATH --engine llama.cpp --engine-path FILE
        --task llm/v1/chat --model-name NAME [--engine-options JSON] [--parent-pid PID]

It speaks ``runtime/protocol.py``: PREDICT answers a chat, completions or embeddings body
with one OK frame; STREAM answers with CHUNK frames (OpenAI chunk objects) and END;
CANCEL abandons a request whose client went away, which closes the engine's iterator
and so frees its sequence at once. Every request runs in its own task: the engine
batches what is in flight. PING answers with the worker's and the engine's counters
(``tokens_per_second`` among them, which the server uses for provisioned throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

import orjson

from modelport.entities.foundation import answers
from modelport.entities.foundation.catalog import EngineSpec
from modelport.entities.foundation.engine import EmbeddingEngine, Engine, GenerationEngine
from modelport.entities.foundation.loader import ENGINES, load_engine
from modelport.entities.foundation.requests import parse
from modelport.errors import BadRequest, MalformedRequest, ModelportError, TemporarilyUnavailable
from modelport.runtime import protocol
from modelport.runtime.stopping import stop_when_told

__all__ = ["FoundationWorker", "main", "parse_args"]

EXIT_LOAD_FAILED = 3
DRAIN_SECONDS = 10.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelport.runtime.worker",
        description="Serve one foundation model on a unix socket (modelport replica).",
    )
    parser.add_argument("--socket", required=True)
    parser.add_argument("--engine", required=True, choices=ENGINES)
    parser.add_argument("--engine-path", required=True, help="The model file or folder the engine loads.")
    parser.add_argument("--task", required=True)
    parser.add_argument("--model-name", required=True, help="What answers carry as 'model'.")
    parser.add_argument("--engine-options", default="{}", help="JSON object of engine options.")
    parser.add_argument("--parent-pid", type=int, default=0)
    # Accepted for symmetry with the custom-model worker's argv (ignored here).
    parser.add_argument("--model-path", default="")
    parser.add_argument("--batching", default="auto")
    parser.add_argument("--max-batch-size", default="0")
    parser.add_argument("--max-batch-wait-ms", default="0")
    return parser.parse_args(argv)


def _error_body(error: ModelportError) -> bytes:
    return orjson.dumps({"error_code": error.error_code, "message": error.message})


class FoundationWorker:
    def __init__(self, engine: Engine, model_name: str, parent_pid: int = 0) -> None:
        self.engine = engine
        self.model_name = model_name
        self.parent_pid = parent_pid or os.getppid()
        self.stopping = False
        self.requests = 0
        self.in_flight = 0
        self.cancelled = 0
        self._tasks: dict[tuple[int, int], asyncio.Task[None]] = {}
        self._writers: set[asyncio.StreamWriter] = set()

    # ---- serving ---------------------------------------------------------------------------
    async def serve(self, socket_path: str) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal() -> None:
            self.stopping = True
            stop.set()

        watcher = stop_when_told(self.parent_pid, on_signal)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        server = await asyncio.start_unix_server(self._connection, path=socket_path)
        try:
            await stop.wait()
            server.close()
            deadline = loop.time() + DRAIN_SECONDS
            while self.in_flight > 0 and loop.time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            watcher.cancel()
            for task in list(self._tasks.values()):
                task.cancel()
            for writer in list(self._writers):
                writer.close()
            await self.engine.aclose()
            with contextlib.suppress(OSError):
                os.unlink(socket_path)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = id(writer)
        try:
            while True:
                try:
                    request_id, kind, payload = await protocol.read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                if kind in (protocol.PREDICT, protocol.STREAM):
                    self._start(writer, conn, request_id, kind, payload)
                elif kind == protocol.CANCEL:
                    task = self._tasks.get((conn, request_id))
                    if task is not None:
                        self.cancelled += 1
                        task.cancel()
                elif kind == protocol.PING:
                    writer.write(protocol.encode(request_id, protocol.PONG, orjson.dumps(self.stats())))
                else:
                    error = BadRequest(f"Unknown frame kind {kind}.")
                    writer.write(protocol.encode(request_id, protocol.CLIENT_ERROR, _error_body(error)))
        finally:
            self._writers.discard(writer)
            for (c, _), task in list(self._tasks.items()):
                if c == conn:
                    task.cancel()  # the server is gone: nobody reads these answers
            writer.close()

    def stats(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "requests": self.requests,
            "in_flight": self.in_flight,
            "cancelled": self.cancelled,
            "engine": self.engine.info.engine,
            "task": self.engine.info.task,
            **self.engine.stats(),
        }

    def _start(
        self, writer: asyncio.StreamWriter, conn: int, request_id: int, kind: int, payload: bytes
    ) -> None:
        self.requests += 1
        if self.stopping:
            error = TemporarilyUnavailable("The replica is stopping; retry the request.", retry_after=1)
            writer.write(protocol.encode(request_id, protocol.CLIENT_ERROR, _error_body(error)))
            return
        self.in_flight += 1
        key = (conn, request_id)
        task = asyncio.get_running_loop().create_task(self._handle(writer, request_id, kind, payload))
        self._tasks[key] = task

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(key, None)
            self.in_flight -= 1

        task.add_done_callback(done)

    async def _handle(self, writer: asyncio.StreamWriter, request_id: int, kind: int, payload: bytes) -> None:
        def send(frame_kind: int, body: bytes = b"") -> None:
            if not writer.is_closing():
                writer.write(protocol.encode(request_id, frame_kind, body))

        try:
            try:
                body = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise MalformedRequest(f"Request body is not valid JSON: {exc}.") from None
            if not isinstance(body, dict):
                raise MalformedRequest("Request body must be a JSON object.")
            parsed = parse(body, self.engine.info.task)
            engine = self.engine
            if isinstance(engine, EmbeddingEngine):
                send(protocol.OK, orjson.dumps(await answers.embed(engine, parsed, self.model_name)))
            elif not isinstance(engine, GenerationEngine):
                raise ModelportError(f"Engine {engine.info.engine} cannot answer this request.")
            elif kind == protocol.STREAM:
                chunks = answers.chunks(engine, parsed, self.model_name)
                try:
                    async for chunk in chunks:
                        send(protocol.CHUNK, orjson.dumps(chunk))
                finally:
                    await chunks.aclose()
                send(protocol.END)
            else:
                send(protocol.OK, orjson.dumps(await answers.answer(engine, parsed, self.model_name)))
        except asyncio.CancelledError:
            raise  # CANCEL, or the server went away: no answer is read
        except ModelportError as exc:
            if exc.status >= 500:
                traceback.print_exc()
            send(protocol.CLIENT_ERROR if exc.status < 500 else protocol.SERVER_ERROR, _error_body(exc))
        except Exception as exc:
            traceback.print_exc()
            error = ModelportError(f"The engine failed: {type(exc).__name__}: {exc}")
            send(protocol.SERVER_ERROR, _error_body(error))


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = orjson.loads(args.engine_options)
    except orjson.JSONDecodeError:
        print(f"--engine-options is not JSON: {args.engine_options!r}", file=sys.stderr)
        return EXIT_LOAD_FAILED
    spec = EngineSpec(args.engine, args.task, args.engine_path, options)

    async def run() -> None:
        started = time.perf_counter()
        try:
            engine = await load_engine(spec, args.model_name)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            raise SystemExit(EXIT_LOAD_FAILED) from None
        info = engine.info
        print(
            f"modelport-worker: loaded {info.engine} ({info.task}, {args.engine_path}) "
            f"in {time.perf_counter() - started:.2f}s; settings {orjson.dumps(info.extra).decode()}; "
            f"stats {orjson.dumps(engine.stats()).decode()}",
            file=sys.stderr,
        )
        sys.stderr.flush()
        gc.freeze()
        await FoundationWorker(engine, args.model_name, args.parent_pid).serve(args.socket)

    with _runner() as runner:
        try:
            runner.run(run())
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0
