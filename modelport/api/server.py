"""Running the app under uvicorn until SIGTERM or SIGINT, then shutting down cleanly."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import uvicorn

from modelport.api.app import ModelportApp
from modelport.api.services import Services
from modelport.config import Settings
from modelport.log_format import configure_logging

__all__ = ["run"]

log = logging.getLogger("modelport.server")


def run(settings: Settings, on_started: Callable[[Services], None] | None = None) -> None:
    """Serve until a signal arrives. ``on_started`` runs in a thread once the registry is up."""
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting", extra={"settings": settings.redacted()})
    app = ModelportApp(settings, on_started=on_started)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=15,
        server_header=False,
        ssl_certfile=settings.tls_certfile or None,
        ssl_keyfile=settings.tls_keyfile or None,
    )
    # uvicorn catches SIGTERM/SIGINT: it stops accepting, finishes requests in flight and runs
    # the app's shutdown (reconciler stop, store close). Afterwards it re-raises the signal
    # through the handler it found installed; these no-op handlers turn that into a normal
    # return, so a clean shutdown exits with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run()
    log.info("stopped")
