"""The ASGI application: which code answers a request, and the order things start and stop in.

Every HTTP request passes ``api/middleware.py`` (request id, metrics, access log), the security
headers (``security_headers.py``), the failed-authentication limit (``auth_throttle.py``) and the
body limits (``body_limits.py``), then goes to the data plane's router (queries), MLflow's mount
(the registry's paths) or Starlette (the control plane, the UI). Start-up builds the services
(``api/wiring.py``), replays the tables' spool, loads the routing table, starts the replicas'
backend and the reconciler, and then imports MLflow in the background, so discovery, health
and the control plane answer within about a second while the registry (seconds to import)
comes up.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from modelport.api import mlflow_ui, openapi_document, system
from modelport.api.auth_throttle import AuthThrottle
from modelport.api.body_limits import BodyLimits
from modelport.api.control import batch_jobs as batch_job_routes
from modelport.api.control import batches as batch_routes
from modelport.api.control import comparisons as comparison_routes
from modelport.api.control import config_versions as config_version_routes
from modelport.api.control import endpoints, permissions, scim, table_permissions, tokens
from modelport.api.control import events as event_routes
from modelport.api.control import feature_functions as feature_function_routes
from modelport.api.control import feature_specs as feature_spec_routes
from modelport.api.control import feature_usage as feature_usage_routes
from modelport.api.control import features as feature_routes
from modelport.api.control import metric_history as metric_history_routes
from modelport.api.control import monitor_metrics as monitor_metric_routes
from modelport.api.control import monitors as monitor_routes
from modelport.api.control import registry_permissions as registry_permission_routes
from modelport.api.control import rollouts as rollout_routes
from modelport.api.control import secrets as secret_routes
from modelport.api.control import session as session_routes
from modelport.api.control import status as status_routes
from modelport.api.control import tables as table_routes
from modelport.api.data.router import match, serve_query
from modelport.api.errors import handle_exception, handle_http_exception, send_error
from modelport.api.middleware import Observed
from modelport.api.mlflow_mount import MlflowMount, is_mlflow_path, load_registry
from modelport.api.mlflow_seal import sealed_app
from modelport.api.mlflow_ui import mlflow_api_path
from modelport.api.security_headers import SecurityHeaders
from modelport.api.services import Services
from modelport.api.sessions import SessionCookies
from modelport.api.wiring import build_services
from modelport.config import Settings
from modelport.control.cluster import Role
from modelport.control.registry_owners import backfill_owners_once
from modelport.control.system_endpoints import ensure_system_endpoints
from modelport.errors import ModelportError
from modelport.metrics import Metrics
from modelport.metrics_exchange import MetricsExchange
from modelport.tables.writer import TableWriter
from modelport.ui import routes as ui_routes

__all__ = ["ModelportApp"]

log = logging.getLogger("modelport.server")


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


class ModelportApp:
    """Top-level ASGI app: request ids and path normalisation, then MLflow or the API routes."""

    def __init__(
        self,
        settings: Settings,
        on_started: Callable[[Services], None] | None = None,
        *,
        role: Role = "server",
        worker_index: int = 0,
    ) -> None:
        self.settings = settings
        self._on_started = on_started
        self.role: Role = role
        self.worker_index = worker_index
        self.api = Starlette(
            routes=[
                *system.routes,
                *batch_routes.routes,
                *batch_job_routes.routes,
                *config_version_routes.routes,
                *event_routes.routes,
                *metric_history_routes.routes,
                *rollout_routes.routes,
                *comparison_routes.routes,
                *endpoints.routes,
                *permissions.routes,
                *tokens.routes,
                *secret_routes.routes,
                *table_routes.routes,
                *table_permissions.routes,
                *feature_routes.routes,
                *feature_usage_routes.routes,
                *feature_spec_routes.routes,
                *feature_function_routes.routes,
                *monitor_routes.routes,
                *monitor_metric_routes.routes,
                *registry_permission_routes.routes,
                *scim.routes,
                *openapi_document.routes,
                *session_routes.routes,
                *status_routes.routes,
                *mlflow_ui.routes(),
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
        # Outermost first: request id, metrics and access log (every answer, refusals too);
        # security headers; session cookies to bearer tokens (CSRF checked); failed
        # authentications per client address; body limits.
        limited = BodyLimits(
            self._handle,
            control=settings.max_body_mb << 20,
            upload=(settings.max_upload_mb << 20) or None,
        )
        throttled = AuthThrottle(limited, settings.auth_failure_limit, settings.auth_failure_window)
        self._observed = Observed(
            SecurityHeaders(SessionCookies(throttled)),
            self._metrics,
            lambda: getattr(self.api.state, "services", None),
        )

    def _metrics(self) -> Metrics | None:
        services = getattr(self.api.state, "services", None)
        return None if services is None else services.metrics

    @property
    def services(self) -> Services:
        services: Services = self.api.state.services
        return services

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        started = time.monotonic()
        services, new_token = await asyncio.to_thread(
            build_services, self.settings, self.role, self.worker_index
        )
        self.api.state.services = services
        if new_token:
            _announce_token(new_token, self.settings)
        self.mlflow = MlflowMount(services.auth, services.registry, services.db)
        await asyncio.to_thread(_open_tables, services.tables)
        await services.tables.start()
        await services.dataplane.start()
        if services.agent_traces is not None:
            services.agent_traces.start()  # writes agents' traces into the MLflow tracking store
        serving = self.role == "server"
        if serving:
            await services.backend.start()
            await services.features.start()  # follows continuously published feature tables
        await services.reconciler.start()
        await services.cluster.start()
        if serving and services.batches is not None:
            await services.batches.start()  # runs bulk jobs while this process leads
        if serving and services.monitor_runner is not None:
            await services.monitor_runner.start()  # runs monitor refreshes while this process leads
        if serving and services.table_jobs is not None:
            await services.table_jobs.start()  # runs table jobs while this process leads
        if serving and services.replay_runner is not None:
            await services.replay_runner.start()  # runs replays while this process leads
        if services.history_recorder is not None:
            await services.history_recorder.start()  # this process's metrics history rows
        if serving and services.history_keeper is not None:
            await services.history_keeper.start()  # downsamples the history while this process leads
        if services.rollout_tally is not None:
            await services.rollout_tally.start()  # writes this process's canary tallies every second
        if serving and services.rollout_runner is not None:
            await services.rollout_runner.start()  # drives rollouts while this process leads
        if self.settings.workers > 1:  # /metrics answers for every process of the port
            services.metrics_exchange = MetricsExchange(
                self.settings.run_path / "metrics",
                services.metrics,
                f"w{self.worker_index}",
                replicas=services.backend if serving else None,
            )
            await services.metrics_exchange.start()
        if self.settings.system_endpoints and serving:
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
            if services.metrics_exchange is not None:
                await services.metrics_exchange.stop()
            if services.batches is not None:
                await services.batches.stop()
            if services.monitor_runner is not None:
                await services.monitor_runner.stop()
            if services.table_jobs is not None:
                await services.table_jobs.stop()
            if services.replay_runner is not None:
                await services.replay_runner.stop()
            if services.rollout_runner is not None:
                await services.rollout_runner.stop()
            if services.rollout_tally is not None:
                await services.rollout_tally.aclose()
            await services.cluster.stop()
            await services.reconciler.stop()
            if serving:
                await services.features.stop()
                await services.backend.stop()
            await services.dataplane.aclose()
            if services.history_keeper is not None:
                await services.history_keeper.stop()
            if services.history_recorder is not None:  # the last seconds' counts, before the store closes
                await services.history_recorder.stop()
            if services.agent_traces is not None:  # what waits, written for a few seconds
                await asyncio.to_thread(services.agent_traces.stop)
            await services.tables.stop()
            if services.events is not None:  # the replicas' last events, before the store closes
                await asyncio.to_thread(services.events.close)
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
            self.mlflow.app = await sealed_app(wsgi, registry, services.db, self.settings.artifacts_path)
        services.registry.set(registry)
        if wsgi is not None:
            await asyncio.to_thread(backfill_owners_once, services.db)
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
        inner = mlflow_api_path(scope["path"])  # MLflow's UI calls /mlflow/ajax-api/...
        if inner is not None:
            scope = {**scope, "path": inner, "raw_path": inner.encode()}
        await self._observed(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Queries to the data plane's router, MLflow's paths to MLflow, the rest to Starlette."""
        responded = False

        async def tracked(message: Message) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            services: Services | None = getattr(self.api.state, "services", None)
            query = match(scope["path"]) if services is not None else None
            if query is not None:
                assert services is not None
                scope["route_label"] = query.label
                await serve_query(services, query, scope, receive, tracked)
            elif (
                self.mlflow is not None and self.settings.embedded_registry and is_mlflow_path(scope["path"])
            ):
                scope["route_label"] = "MlflowMount"
                await self.mlflow(scope, receive, tracked)
            else:
                await self.api(scope, receive, tracked)
        except Exception as exc:
            # Starlette has logged it and sent the 500 (api/errors.py), then re-raises for the
            # server to log again; stop it here so each failure is logged once.
            if not responded:
                await send_error(send, exc, scope["path"])
