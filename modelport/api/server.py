"""Running the app under uvicorn until SIGTERM or SIGINT, then shutting down cleanly.

Before anything is opened or logged, :func:`run` checks that the data directory is not in
use by another server and that the port is free, so that those mistakes are reported as one
:class:`~modelport.errors.ModelportError` (``modelport serve`` prints it as one line). A
start-up that fails later, inside uvicorn's lifespan, is raised from :func:`run` as well,
instead of ending in uvicorn's traceback and ``sys.exit``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
from collections.abc import Callable

import uvicorn
from starlette.types import Message, Receive, Scope, Send
from uvicorn._types import ASGIApplication

from modelport.api.app import ModelportApp
from modelport.api.header_limits import limited_protocol
from modelport.api.services import Services
from modelport.api.workers import WorkerSupervisor, reuseport_socket
from modelport.config import Settings
from modelport.errors import InvalidParameterValue, ModelportError, ResourceConflict
from modelport.log_format import configure_logging, flush_logging
from modelport.tables.spool import spool_holder, spool_in_use

__all__ = ["check_data_dir", "check_port", "run", "uvicorn_config"]

log = logging.getLogger("modelport.server")


def check_data_dir(settings: Settings) -> None:
    """Raise :class:`ResourceConflict` when another server holds the data directory."""
    if spool_in_use(settings.spool_path):
        pid = spool_holder(settings.spool_path)
        holder = f"another modelport server (pid {pid})" if pid else "another modelport server"
        raise ResourceConflict(
            f"the data directory {settings.data_path} is in use by {holder}; "
            "stop it or use another --data-dir."
        )


def check_port(host: str, port: int) -> None:
    """Raise when ``host:port`` cannot be listened on, as uvicorn would bind it.

    A probe: the sockets are closed again, so a process that takes the port in between is
    still reported by uvicorn (on its own terms). Port 0 (any free port) is not checked.
    """
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidParameterValue(f"cannot listen on {host}: {exc.strerror}") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # What asyncio's create_server sets, so that the probe binds exactly when it would.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ResourceConflict(
                        f"port {port} on {host} is already in use; stop what listens there "
                        "or use another --port."
                    ) from None
                raise InvalidParameterValue(
                    f"cannot listen on port {port} on {host}: {exc.strerror}"
                ) from None


class _StartupGuard:
    """Passes everything to the app; keeps the exception a failed start-up raised.

    Starlette reports a failed lifespan start-up to uvicorn with the traceback as text, which
    uvicorn would log before exiting. :func:`run` reports the exception in one line instead;
    the traceback of one that is not a :class:`ModelportError` is logged at debug level.
    """

    def __init__(self, app: ModelportApp) -> None:
        self.app = app
        self.error: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        report: str | None = None  # the traceback text, once the start-up has failed

        async def quiet_send(message: Message) -> None:
            nonlocal report
            if message["type"] == "lifespan.startup.failed":
                report = str(message.get("message") or "")
                message = {"type": message["type"], "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, quiet_send)
        except BaseException as exc:
            if report is not None:  # the start-up failed (not the shutdown)
                self.error = exc
                if not isinstance(exc, ModelportError):
                    log.debug(report)
            raise


def uvicorn_config(app: ASGIApplication, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for the app, the same in every process of ``--workers N``."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http=limited_protocol(settings.max_header_kb * 1024, settings.max_headers),
        # X-Forwarded-For/-Proto are believed only from the proxies the settings name (uvicorn's
        # own default believes any local process).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        timeout_graceful_shutdown=15,
        server_header=False,
        ssl_certfile=settings.tls_certfile or None,
        ssl_keyfile=settings.tls_keyfile or None,
    )


class _SupervisingServer(uvicorn.Server):
    """uvicorn's server for the first process of ``--workers N``: at shutdown the workers drain
    first, while this process still runs the replicas they call."""

    def __init__(self, config: uvicorn.Config, supervisor: WorkerSupervisor) -> None:
        super().__init__(config)
        self.supervisor = supervisor

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await asyncio.to_thread(self.supervisor.stop)
        await super().shutdown(sockets)


def run(settings: Settings, on_started: Callable[[Services], None] | None = None) -> None:
    """Serve until a signal arrives. ``on_started`` runs in a thread once the registry is up.

    Raises :class:`ModelportError` when the server cannot start: the data directory or the
    port is taken, or the app's start-up failed (a non-modelport exception is wrapped).
    """
    check_data_dir(settings)
    check_port(settings.host, settings.port)
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting", extra={"settings": settings.redacted()})
    app = _StartupGuard(ModelportApp(settings, on_started=on_started))
    server: uvicorn.Server
    sockets: list[socket.socket] | None = None
    if settings.workers > 1:
        # Every process binds its own socket on the port (SO_REUSEPORT); port 0 becomes the
        # port this first socket got, which the workers then bind too.
        listener = reuseport_socket(settings.host, settings.port)
        sockets = [listener]
        supervisor = WorkerSupervisor(settings, listener.getsockname()[1], settings.workers - 1)
        server = _SupervisingServer(uvicorn_config(app, settings), supervisor)
        supervisor.start_when(lambda: server.started)
    else:
        server = uvicorn.Server(uvicorn_config(app, settings))
    # uvicorn catches SIGTERM/SIGINT: it stops accepting, finishes requests in flight and runs
    # the app's shutdown (reconciler stop, store close). Afterwards it re-raises the signal
    # through the handler it found installed; these no-op handlers turn that into a normal
    # return, so a clean shutdown exits with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=sockets)
    except SystemExit:
        flush_logging()  # what the start-up logged comes before the one error line
        # uvicorn exits when the start-up fails; report why instead.
        if app.error is None:
            raise
        check_data_dir(settings)  # another server took the directory since the first check
        if isinstance(app.error, ModelportError):
            raise app.error from None
        first_line = (str(app.error).strip().splitlines() or [""])[0]
        raise ModelportError(
            f"the server failed to start: {type(app.error).__name__}: {first_line} "
            "(--log-level debug logs the traceback)"
        ) from None
    log.info("stopped")
    flush_logging()
