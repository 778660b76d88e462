"""The replica process: loads one MLflow model and serves it on a unix socket.

Started by ``runtime/replica.py`` as::

    python -m modelport.runtime.worker --socket PATH --model-path DIR
        [--batching auto|on|off] [--max-batch-size 1024] [--max-batch-wait-ms 2]

It loads the model first (a failure prints the traceback to stderr and exits with status
:data:`EXIT_LOAD_FAILED`), prints ``modelport-worker: loaded <flavors> in <s>s`` to stderr,
then listens on ``PATH`` and speaks ``runtime/protocol.py``: PING is answered at once with
the stats, PREDICT bodies are parsed on the event loop and queued on the
:class:`~modelport.runtime.batching.Batcher`, whose loop runs the model in one thread.
SIGTERM (or SIGINT) stops accepting connections and new requests, waits up to
:data:`DRAIN_SECONDS` for the requests in flight, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import stat
import sys
import time
import traceback
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import orjson

from modelport.entities.custom import CustomModel, ModelInput
from modelport.errors import BadRequest, ModelportError, TemporarilyUnavailable
from modelport.runtime import protocol
from modelport.runtime.batching import Batcher, BatchingMode, Outcome, Stats
from modelport.runtime.stopping import stop_when_told

__all__ = ["DRAIN_SECONDS", "EXIT_LOAD_FAILED", "Worker", "main", "parse_args"]

EXIT_LOAD_FAILED = 3
DRAIN_SECONDS = 10.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelport.runtime.worker",
        description="Serve one MLflow model on a unix socket (modelport replica).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--socket", required=True, help="Path of the unix socket to listen on.")
    parser.add_argument("--model-path", required=True, help="Local folder holding the MLmodel file.")
    parser.add_argument(
        "--batching",
        choices=["auto", "on", "off"],
        default="auto",
        help="Predict concurrent DataFrame requests together: 'auto' for batch-capable flavors.",
    )
    parser.add_argument("--max-batch-size", type=int, default=1024, help="Most rows in one batch.")
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=0,
        help="The server's pid: the replica stops when that process is gone (0: the parent at start).",
    )
    parser.add_argument(
        "--max-batch-wait-ms",
        type=float,
        default=2.0,
        help="Longest wait for a batch to fill, when requests are already waiting.",
    )
    return parser.parse_args(argv)


class Worker:
    """The socket side of a replica: connections, frames, stats and the graceful stop.

    Every PREDICT frame gets exactly one answer frame on the connection it came on (unless
    that connection closed first). ``stats.in_flight`` counts PREDICTs not answered yet.
    """

    def __init__(self, model: CustomModel, batcher: Batcher, parent_pid: int = 0) -> None:
        #: The server; a server killed with -9 cannot stop its replicas, so they watch it.
        self.parent_pid = parent_pid or os.getppid()
        self.model = model
        self.batcher = batcher
        self.stats: Stats = batcher.stats
        self.stopping = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._last_error = ""

    async def serve(self, socket_path: str) -> None:
        """Serve until SIGTERM/SIGINT, then drain; returns when the replica may exit."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal() -> None:
            # Set here, not when serve() resumes, so no PREDICT read after the signal is queued.
            self.stopping = True
            stop.set()

        parent_watch = stop_when_told(self.parent_pid, on_signal)
        _remove_stale_socket(socket_path)
        server = await asyncio.start_unix_server(self._connection, path=socket_path)
        predict_loop = loop.create_task(self.batcher.run(), name="predict-loop")
        stopped = loop.create_task(stop.wait())
        try:
            await asyncio.wait([predict_loop, stopped], return_when=asyncio.FIRST_COMPLETED)
            if predict_loop.done():  # only a bug ends it: let the server restart the replica
                predict_loop.result()
                raise RuntimeError("the predict loop ended")
            server.close()
            deadline = loop.time() + DRAIN_SECONDS
            while self.stats.in_flight > 0 and loop.time() < deadline:
                await asyncio.sleep(0.01)
        finally:
            stopped.cancel()
            parent_watch.cancel()
            predict_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await predict_loop
            for writer in list(self._writers):
                writer.close()
            self.batcher.close()
            with contextlib.suppress(OSError):
                os.unlink(socket_path)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    request_id, kind, payload = await protocol.read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return  # closed, or a frame we cannot skip: the stream is lost
                if kind == protocol.PREDICT:
                    self._predict(writer, request_id, payload)
                elif kind == protocol.PING:
                    pong = orjson.dumps(self.stats.as_dict(os.getpid()))
                    writer.write(protocol.encode(request_id, protocol.PONG, pong))
                else:
                    error = BadRequest(f"Unknown frame kind {kind}.")
                    writer.write(protocol.encode(request_id, protocol.CLIENT_ERROR, _body(error)))
        finally:
            self._writers.discard(writer)
            writer.close()

    def _predict(self, writer: asyncio.StreamWriter, request_id: int, payload: bytes) -> None:
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        reply = partial(self._reply, writer, request_id)
        if self.stopping:
            reply(TemporarilyUnavailable("The replica is stopping; retry the request.", retry_after=1))
            return
        try:
            inp: ModelInput = self.model.parse(payload)
        except ModelportError as exc:
            reply(exc)
            return
        except Exception as exc:  # a bug in parsing: answer, don't drop the connection
            traceback.print_exc()
            reply(ModelportError(f"{type(exc).__name__}: {exc}"))
            return
        self.batcher.submit(inp, reply)

    def _reply(self, writer: asyncio.StreamWriter, request_id: int, outcome: Outcome) -> None:
        self.stats.in_flight -= 1
        if isinstance(outcome, bytes):
            frame = protocol.encode(request_id, protocol.OK, outcome)
        else:
            kind = protocol.CLIENT_ERROR if outcome.status < 500 else protocol.SERVER_ERROR
            if kind == protocol.SERVER_ERROR:
                self._log_error(outcome)
            frame = protocol.encode(request_id, kind, _body(outcome))
        if not writer.is_closing():
            writer.write(frame)

    def _log_error(self, error: ModelportError) -> None:
        # The model's traceback goes to the replica's log, once per distinct message.
        if error.message != self._last_error and error.__cause__ is not None:
            self._last_error = error.message
            traceback.print_exception(error.__cause__, file=sys.stderr)


def _body(error: ModelportError) -> bytes:
    return orjson.dumps({"error_code": error.error_code, "message": error.message})


def _remove_stale_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def main(argv: Sequence[str] | None = None) -> int:
    """Load, serve, drain; the exit status (0, or :data:`EXIT_LOAD_FAILED`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--engine" in argv:  # a foundation model: its own worker (runtime/foundation_worker.py)
        from modelport.runtime import foundation_worker

        return foundation_worker.main(argv)
    args = parse_args(argv)
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

    # What `mlflow models serve` sets: type-hinted models then parse JSON values (e.g. datetimes).
    _MLFLOW_IS_IN_SERVING_ENVIRONMENT.set("true")
    started = time.perf_counter()
    try:
        model = CustomModel.load(str(Path(args.model_path)))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return EXIT_LOAD_FAILED
    flavors = ", ".join(model.flavors)
    print(f"modelport-worker: loaded {flavors} in {time.perf_counter() - started:.2f}s", file=sys.stderr)
    sys.stderr.flush()
    gc.freeze()  # the model and the libraries stay: keep them out of full GC passes
    mode: BatchingMode = args.batching
    batcher = Batcher(model, mode, args.max_batch_size, args.max_batch_wait_ms / 1000.0)
    worker = Worker(model, batcher, args.parent_pid)
    with _runner() as runner:
        runner.run(worker.serve(args.socket))
    if worker.stats.in_flight > 0:
        # A predict is still running after the drain period: its thread cannot be interrupted,
        # and interpreter shutdown would wait for it.
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
