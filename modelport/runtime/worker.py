"""The replica process: load one model, serve it on a unix socket (or TCP) until told to stop.

Started by ``runtime/replica.py`` (through ``runtime/launcher.py``) as::

    python -m modelport.runtime.worker --socket PATH [--kind custom|engine|agent] [--parent-pid PID]
        <the handler's options>

or, on a Ray node (``runtime/ray_actor.py``), ``--listen tcp://NODE_IP:0/NAME --address-file
FILE`` instead of ``--socket`` (the secret in ``$MODELPORT_REPLICA_SECRET``).

``--kind`` picks the handler (``custom``, the default: ``runtime/custom_handler.py``;
``engine``: ``runtime/engine_handler.py``; ``agent``: ``runtime/agent_handler.py``), and
``--help`` after it lists that handler's options. The process keeps this module's name so
that ``ps`` and ``pgrep -f`` find every replica as ``modelport.runtime.worker --socket <path>``
(the socket's name holds the endpoint id); the zygote gives forked replicas the same title.

It loads the model first (a failure prints the traceback to stderr and exits with status
:data:`EXIT_LOAD_FAILED`), prints ``modelport-worker: loaded <what> in <s>s`` to stderr,
then runs :class:`~modelport.runtime.replica_server.ReplicaServer` until SIGTERM, SIGINT or
the server's exit, drains, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import traceback
from collections.abc import Sequence

from modelport.runtime.launcher import NICE_ENV
from modelport.runtime.replica_server import Handler, ReplicaServer
from modelport.runtime.transport import SECRET_ENV, server_tls

__all__ = ["EXIT_LOAD_FAILED", "KINDS", "main", "parse_args"]

EXIT_LOAD_FAILED = 3
KINDS = ("custom", "engine", "agent")


def handler_class(kind: str) -> type[Handler]:
    """The handler of ``kind``, imported only when used: an engine replica never imports MLflow."""
    if kind == "engine":
        from modelport.runtime.engine_handler import EngineHandler

        return EngineHandler
    if kind == "agent":
        from modelport.runtime.agent_handler import AgentHandler

        return AgentHandler
    from modelport.runtime.custom_handler import CustomHandler

    return CustomHandler


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    kind_only = argparse.ArgumentParser(add_help=False)
    kind_only.add_argument("--kind", choices=KINDS, default="custom")
    kind = kind_only.parse_known_args(argv)[0].kind
    parser = argparse.ArgumentParser(
        prog="python -m modelport.runtime.worker",
        description="Serve one model on a unix socket (a modelport replica).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="Path of the unix socket to listen on.")
    where.add_argument(
        "--listen",
        help="tcp://HOST:PORT/NAME to listen on instead (port 0: any); clients prove the secret "
        f"in ${SECRET_ENV} (runtime/transport.py).",
    )
    parser.add_argument(
        "--address-file", default="", help="Write the address the replica listens on here once it does."
    )
    parser.add_argument("--tls-certfile", default="", help="Serve TCP with TLS: PEM certificate.")
    parser.add_argument("--tls-keyfile", default="", help="PEM private key for --tls-certfile.")
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="custom",
        help="An MLflow pyfunc model, an LLM/embedding engine, or an MLflow agent.",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=0,
        help="The server's pid: the replica stops when that process is gone (0: the parent at start).",
    )
    parser.add_argument(
        "--owner-pid",
        type=int,
        default=0,
        help="The server that started the replica (0: the parent); with --orphan-seconds.",
    )
    parser.add_argument(
        "--orphan-seconds",
        type=float,
        default=0.0,
        help="Keep serving this long after the owner is gone, for a new leader to adopt the "
        "replica (0: stop when the parent is gone).",
    )
    handler_class(kind).add_arguments(parser)
    return parser.parse_args(argv)


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def main(argv: Sequence[str] | None = None) -> int:
    """Load, serve, drain; the exit status (0, or :data:`EXIT_LOAD_FAILED`)."""
    args = parse_args(argv)
    secret = os.environ.pop(SECRET_ENV, "")  # read before the model's code runs, and gone for it
    niceness = os.environ.pop(NICE_ENV, "")
    if niceness:  # a shadow's replica: lower priority than the live ones (runtime/local.py)
        os.nice(int(niceness))
    with _runner() as runner:
        started = time.perf_counter()
        try:
            # A custom model loads outside the event loop (its own loading may run one);
            # an engine loads on it.
            loaded = handler_class(args.kind).load(args)
            handler = loaded if isinstance(loaded, Handler) else runner.run(loaded)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            return EXIT_LOAD_FAILED
        took = f"{time.perf_counter() - started:.2f}s"
        print(f"modelport-worker: loaded {handler.what} in {took}{handler.details()}", file=sys.stderr)
        sys.stderr.flush()
        gc.freeze()  # the model and the libraries stay: keep them out of full GC passes
        tls = server_tls(args.tls_certfile, args.tls_keyfile) if args.tls_certfile else None
        drained = runner.run(
            ReplicaServer(
                handler, args.parent_pid, owner_pid=args.owner_pid, orphan_seconds=args.orphan_seconds
            ).serve(
                args.listen or args.socket,
                secret=bytes.fromhex(secret) if secret else None,
                tls=tls,
                address_file=args.address_file,
            )
        )
    if not drained:
        # A predict still runs after the drain period: its thread cannot be interrupted,
        # and interpreter shutdown would wait for it.
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
