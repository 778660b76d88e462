"""MLflow's own tracking server (REST API and proxied artifact store) on modelport's port.

The Flask app of ``mlflow.server`` is imported in a thread after start-up (it takes
seconds), configured through the variables ``mlflow server`` itself sets, and run
behind a guard that checks the same bearer tokens as the rest of the API, then the caller's
permissions on the registered model or experiment each route acts on
(:mod:`modelport.api.mlflow_guard`). Until it is loaded, requests to it wait (up to the
registry's start-up limit).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport.api.errors import error_response
from modelport.api.mlflow_guard import MlflowGuard
from modelport.config import Settings
from modelport.control.registry_acl import RegistryAccess
from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import ModelportError, TemporarilyUnavailable
from modelport.gateway.auth import Authenticator
from modelport.store import Database

__all__ = ["MLFLOW_PREFIXES", "MlflowMount", "embedded_backend_uri", "load_registry"]

log = logging.getLogger("modelport.registry")

MLFLOW_PREFIXES = (
    "/api/2.0/mlflow",
    "/api/3.0/mlflow",
    "/api/2.0/mlflow-artifacts",
    "/ajax-api/",
    "/get-artifact",
    "/model-versions/get-artifact",
    "/version",
    "/graphql",
)


def is_mlflow_path(path: str) -> bool:
    return path.startswith(MLFLOW_PREFIXES)


def embedded_backend_uri(settings: Settings) -> str:
    """The database the embedded registry uses, ready for MLflow (blocking).

    With a PostgreSQL store: the schema ``Settings.mlflow_backend_uri`` names, created and
    migrated here, unless the data directory still holds the ``mlflow.db`` of an earlier release
    and the schema has no tables yet, which is then used as before (with a warning: other
    servers on the store do not see it until ``modelport migrate`` moves it). Else
    ``<data-dir>/mlflow.db``.
    """
    if not settings.store_is_postgresql:
        return settings.mlflow_sqlite_uri
    if not settings.artifacts_root:
        log.warning(
            "the embedded registry keeps its artifacts in the data directory: servers on other "
            "machines that share this PostgreSQL store will not find them; give every server "
            "the same --artifacts-root (a shared folder)",
            extra={"artifacts": str(settings.artifacts_path)},
        )
    from modelport.entities.registry_database import has_registry_tables, prepare_postgresql

    legacy = settings.data_path / "mlflow.db"
    if legacy.exists() and not has_registry_tables(settings.mlflow_backend_uri):
        log.warning(
            "the embedded registry stays in the data directory's mlflow.db, where an earlier "
            "release kept it: servers that share this PostgreSQL store do not see it. With the "
            "servers stopped, `modelport migrate --store <store URL> --to <store URL> "
            "--artifacts-root <shared folder>` moves it into the store",
            extra={"database": str(legacy)},
        )
        return settings.mlflow_sqlite_uri
    prepare_postgresql(settings.mlflow_backend_uri)
    return settings.mlflow_backend_uri


def _configure_embedded(settings: Settings, backend_uri: str) -> None:
    # mlflow.server reads its configuration from these variables at import time.
    settings.artifacts_path.mkdir(parents=True, exist_ok=True)
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = backend_uri
    os.environ["_MLFLOW_SERVER_REGISTRY_STORE"] = backend_uri
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = "mlflow-artifacts:/"
    os.environ["_MLFLOW_SERVER_SERVE_ARTIFACTS"] = "true"
    os.environ["_MLFLOW_SERVER_ARTIFACT_DESTINATION"] = str(settings.artifacts_path)
    # Host-header checks guard MLflow servers that have no auth; ours needs a bearer token.
    os.environ["MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE"] = "true"


@contextmanager
def _registry_lock(settings: Settings, backend_uri: str) -> Iterator[None]:
    """Hold ``<data-dir>/mlflow.db.lock`` (flock) while MLflow creates or migrates its SQLite
    database: Alembic's online migration fails in the process that loses the race."""
    if not backend_uri.startswith("sqlite"):
        yield  # prepare_postgresql migrated the schema under an advisory lock
        return
    settings.data_path.mkdir(parents=True, exist_ok=True)
    with open(settings.data_path / "mlflow.db.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_registry(settings: Settings) -> tuple[Any, Any]:
    """Import MLflow and build (registry, WSGI app or None). Blocking; run in a thread."""
    from modelport.entities.registry import ModelRegistry

    if not settings.embedded_registry:
        if settings.registry_token:
            os.environ["MLFLOW_TRACKING_TOKEN"] = settings.registry_token
        return ModelRegistry(settings.registry_uri), None
    backend_uri = embedded_backend_uri(settings)
    _configure_embedded(settings, backend_uri)
    from a2wsgi import WSGIMiddleware
    from mlflow.server import app as flask_app
    from mlflow.server import handlers

    # Creates/migrates MLflow's database now, not on the first request; one process at a time
    # (the processes of `--workers N` start together on one data directory's mlflow.db).
    with _registry_lock(settings, backend_uri):
        handlers._get_tracking_store()
        handlers._get_model_registry_store()
    registry = ModelRegistry(backend_uri, artifact_destination=Path(settings.artifacts_path))
    return registry, WSGIMiddleware(flask_app, workers=8)


class MlflowMount:
    """ASGI app: authenticate, wait for MLflow to load, check the caller's registry
    permissions, pass the request to ``app`` (MLflow's WSGI app, wrapped)."""

    def __init__(self, auth: Authenticator, registry: RegistryHandle, db: Database) -> None:
        self._auth = auth
        self._registry = registry
        self.access = RegistryAccess(db)
        self._guard: MlflowGuard | None = None
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            caller = self._auth.authenticate(headers.get("authorization"))
            scope["modelport.caller"] = caller
            if self.app is None:
                await self._registry.get_async()
            if self.app is None:
                raise TemporarilyUnavailable(
                    "The embedded MLflow registry is off: this server uses the one given by --registry-uri.",
                    retry_after=None,
                )
            if self._guard is None:
                self._guard = MlflowGuard(self.access)
            await self._guard(caller, self.app, scope, receive, tracked)
        except ModelportError as exc:
            if started:
                raise
            await error_response(exc)(scope, receive, send)
