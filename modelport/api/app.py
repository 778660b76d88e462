"""The ASGI application: routes, the error handler, request ids, metrics and start-up.

Start-up opens and migrates the store, creates the first admin, starts the reconciler,
and then imports MLflow in the background, so discovery, health and the control plane
answer within about a second while the registry (seconds to import) comes up.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from modelport.api import system
from modelport.api.control import endpoints, permissions, scim, tokens
from modelport.api.control import secrets as secret_routes
from modelport.api.control import tables as table_routes
from modelport.api.data import invocations, openai_compat
from modelport.api.errors import handle_exception, handle_http_exception, internal_error_response
from modelport.api.mlflow_mount import MlflowMount, is_mlflow_path, load_registry
from modelport.api.services import Services
from modelport.config import Settings, inherited_environment
from modelport.control.cipher import load_cipher
from modelport.control.endpoints import EndpointService
from modelport.control.identity import IdentityService
from modelport.control.permissions import AccessControl
from modelport.control.reconciler import Reconciler
from modelport.control.secrets import SecretService
from modelport.control.system_endpoints import ensure_system_endpoints
from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import ModelportError
from modelport.gateway.auth import Authenticator
from modelport.gateway.dataplane import DataPlane
from modelport.gateway.external import ExternalPlane
from modelport.gateway.ratelimit import LocalCounters, RateLimiter, RedisCounters
from modelport.gateway.recording import Recorder
from modelport.log_format import request_id_var
from modelport.metrics import Metrics
from modelport.runtime.local import LocalBackend, RuntimeOptions
from modelport.runtime.logs import LogStore
from modelport.store import open_database
from modelport.tables.writer import TableWriter
from modelport.ui import routes as ui_routes

__all__ = ["ModelportApp", "build_services"]

log = logging.getLogger("modelport.server")


def build_services(settings: Settings) -> tuple[Services, str | None]:
    """Open the store and wire the services (blocking). Returns them and a new admin token, if any."""
    settings.data_path.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.store_url)
    workspace_id = db.meta_setdefault("workspace_id", str(secrets.randbelow(9 * 10**15) + 10**15))
    secret_service = SecretService(db, load_cipher(settings.secrets_key, settings.data_path, db))
    auth = Authenticator(db)
    identity = IdentityService(db, auth.forget)
    new_token = identity.bootstrap(settings.admin_user, settings.admin_token or None, settings.data_path)
    registry = RegistryHandle()
    logs = LogStore(settings.logs_path)
    metrics = Metrics()
    options = RuntimeOptions(
        run_dir=settings.run_path,
        models_dir=settings.models_path,
        per_replica_concurrency=settings.replica_concurrency,
        per_replica_in_flight=settings.replica_in_flight,
        queue_limit=settings.queue_limit,
        max_replicas=settings.max_replicas,
        scale_to_zero_seconds=float(settings.scale_to_zero_seconds),
        batching=settings.batching,
        max_batch_size=settings.max_batch_size,
        max_batch_wait_ms=float(settings.max_batch_wait_ms),
        env_manager=settings.env_manager,
        envs_dir=settings.envs_path,
        prefork=settings.prefork,
    )
    backend = LocalBackend(
        registry, logs, options, inherited_environment(), resolve_secret=secret_service.resolve
    )
    external = ExternalPlane(
        secret_service.resolve,
        resolve_async=secret_service.resolve_async,
        timeout=float(settings.external_timeout),
    )
    limiter = RateLimiter(RedisCounters(settings.redis) if settings.redis else LocalCounters())
    tables = TableWriter(
        settings.tables_location,
        settings.spool_path,
        fsync=settings.tables_fsync,  # type: ignore[arg-type]
        flush_interval=float(settings.tables_flush_seconds),
        max_batch=50_000,
    )
    dataplane = DataPlane(
        db,
        backend,
        metrics,
        timeout=float(settings.request_timeout),
        external=external,
        limiter=limiter,
        recorder=Recorder(tables),
    )
    reconciler = Reconciler(
        db, backend, logs, max_concurrent=settings.max_concurrent_deployments, on_change=dataplane.invalidate
    )
    access = AccessControl(db)
    services = Services(
        settings=settings,
        db=db,
        auth=auth,
        identity=identity,
        endpoints=EndpointService(
            db,
            access,
            reconciler,
            logs,
            registry,
            on_change=dataplane.invalidate,
            secrets=secret_service,
        ),
        reconciler=reconciler,
        registry=registry,
        metrics=metrics,
        workspace_id=workspace_id,
        backend=backend,
        dataplane=dataplane,
        secrets=secret_service,
        tables=tables,
    )
    return services, new_token


def _open_tables(tables: TableWriter) -> None:
    """Take the spool and replay what an earlier run recorded but did not write (a kill -9)."""
    tables.open()
    replayed = tables.recover()
    if replayed:
        log.info("replayed recorded queries into their tables", extra={"rows": replayed})


def _announce_token(token: str, settings: Settings) -> None:
    path = settings.data_path / "admin-token"
    print(
        f"modelport: created the first admin token (shown once, also saved to {path}):\n  {token}",
        file=sys.stderr,
        flush=True,
    )


_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics", "/.well-known/databricks-config"})


def _route_label(scope: Scope) -> str:
    endpoint = scope.get("endpoint")
    return getattr(endpoint, "__name__", "unmatched")


class ModelportApp:
    """Top-level ASGI app: request ids and path normalisation, then MLflow or the API routes."""

    def __init__(self, settings: Settings, on_started: Callable[[Services], None] | None = None) -> None:
        self.settings = settings
        self._on_started = on_started
        self.api = Starlette(
            routes=[
                *system.routes,
                *openai_compat.routes,
                *invocations.routes,
                *endpoints.routes,
                *permissions.routes,
                *tokens.routes,
                *secret_routes.routes,
                *table_routes.routes,
                *scim.routes,
                *ui_routes.routes,
            ],
            exception_handlers={
                HTTPException: handle_http_exception,
                Exception: handle_exception,
                ModelportError: handle_exception,
            },
            lifespan=self._lifespan,
        )
        self.mlflow: MlflowMount | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def services(self) -> Services:
        services: Services = self.api.state.services
        return services

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        started = time.monotonic()
        services, new_token = await asyncio.to_thread(build_services, self.settings)
        self.api.state.services = services
        if new_token:
            _announce_token(new_token, self.settings)
        self.mlflow = MlflowMount(services.auth, services.registry)
        await asyncio.to_thread(_open_tables, services.tables)
        await services.tables.start()
        await services.backend.start()
        await services.reconciler.start()
        if self.settings.system_endpoints:
            await asyncio.to_thread(ensure_system_endpoints, services.db, services.endpoints.create)
        services.started = True
        self._spawn(self._load_registry(services, started))
        log.info(
            "control plane up",
            extra={"seconds": round(time.monotonic() - started, 3), "store": services.db.dialect},
        )
        try:
            yield
        finally:
            await services.reconciler.stop()
            await services.backend.stop()
            await services.dataplane.aclose()
            await services.tables.stop()
            for task in self._background:
                task.cancel()
            services.db.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _load_registry(self, services: Services, started: float) -> None:
        try:
            registry, wsgi = await asyncio.to_thread(load_registry, self.settings)
        except Exception as exc:
            log.exception("model registry failed to load")
            services.registry.set(None, f"{type(exc).__name__}: {exc}")
            return
        if self.mlflow is not None:
            self.mlflow.app = wsgi
        services.registry.set(registry)
        # Everything imported and built so far lives as long as the server: keep it out of
        # the garbage collector's full passes, which otherwise walk MLflow's and SQLAlchemy's
        # object graphs and pause every query in flight.
        gc.freeze()
        log.info(
            "ready",
            extra={
                "seconds": round(time.monotonic() - started, 3),
                "registry": "embedded" if wsgi else self.settings.registry_uri,
            },
        )
        if self._on_started is not None:
            await asyncio.to_thread(self._on_started, services)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/") and not path.startswith("/ui/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        token = request_id_var.set(rid)
        status = 500
        responded = False
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            ready = getattr(self.api.state, "services", None)
            query = invocations.QUERY_PATH.match(scope["path"]) if scope["method"] == "POST" else None
            mlflow = self.mlflow is not None and self.settings.embedded_registry
            if query is not None and ready is not None:
                scope["endpoint"] = invocations.invocations  # the route label in metrics
                name, served = query.group(1), query.group(2)
                await invocations.serve_query(ready, scope, receive, send_with_id, name, served)
            elif ready is not None and scope["method"] == "POST" and scope["path"] in openai_compat.PATHS:
                task = openai_compat.PATHS[scope["path"]]
                scope["endpoint"] = openai_compat.HANDLERS[task]
                await openai_compat.serve_openai(ready, scope, receive, send_with_id, task)
            elif mlflow and is_mlflow_path(scope["path"]):
                scope["endpoint"] = MlflowMount
                await self.mlflow(scope, receive, send_with_id)
            else:
                await self.api(scope, receive, send_with_id)
        except Exception:
            # Starlette has logged it and sent the 500 (api/errors.py), then re-raises for the
            # server to log again; stop it here so each failure is logged once.
            if not responded:
                await internal_error_response()(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_label(scope)
            services = getattr(self.api.state, "services", None)
            if services is not None:
                services.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
                services.metrics.http_latency.labels(scope["method"], route).observe(elapsed)
            quiet = scope["path"] in _QUIET_PATHS
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)
