"""The composition root: the services of one server process, built from its settings.

:func:`build_services` opens (and migrates) the store, creates the first admin, and wires every
service with its collaborators; nothing is started here (``api/app.py`` starts them in order).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from modelport.api.services import Services
from modelport.batch.files import FileStore
from modelport.batch.jobs import JobStore
from modelport.batch.replay_runner import ReplayRunner
from modelport.batch.runner import BatchRunner
from modelport.batch.table_jobs import TableJobStore
from modelport.batch.table_runner import TableJobRunner
from modelport.config import Settings, inherited_environment
from modelport.control.cipher import load_cipher
from modelport.control.cluster import Cluster, Role
from modelport.control.comparisons import ComparisonService
from modelport.control.endpoints import EndpointService
from modelport.control.feature_functions import FeatureFunctionService
from modelport.control.feature_specs import FeatureSpecService
from modelport.control.feature_usage import FeatureUsage
from modelport.control.features import FeatureService
from modelport.control.identity import IdentityService
from modelport.control.metric_history import HistoryKeeper, HistoryRecorder
from modelport.control.monitor_runner import MonitorRunner
from modelport.control.monitors import MonitorService
from modelport.control.permissions import AccessControl
from modelport.control.reconciler import Reconciler
from modelport.control.registry_acl import RegistryAccess
from modelport.control.replays import ReplayService
from modelport.control.rollout_runner import RolloutRunner
from modelport.control.rollouts import RolloutService
from modelport.control.secrets import SecretService
from modelport.entities.foundation.detect import EngineDefaults
from modelport.entities.registry_handle import RegistryHandle
from modelport.gateway.agent_tokens import AgentTokens
from modelport.gateway.agent_traces import AgentTraces, registry_tracking_store
from modelport.gateway.auth import Authenticator
from modelport.gateway.cache_store import LocalCache, RedisCache
from modelport.gateway.external import ExternalPlane
from modelport.gateway.feature_serving import FeaturePlane
from modelport.gateway.pipeline import DataPlane
from modelport.gateway.ratelimit import LocalCounters, RateLimiter, RedisCounters
from modelport.gateway.recording import Recorder
from modelport.gateway.refusal_bursts import RefusalBursts
from modelport.gateway.rollout_tally import RolloutTally
from modelport.metrics import Metrics
from modelport.runtime.event_sink import EventSink
from modelport.runtime.local import LocalBackend, RuntimeOptions
from modelport.runtime.logs import LogStore
from modelport.runtime.model_check import ModelCheck
from modelport.runtime.ray_backend import RayBackend, RayOptions
from modelport.runtime.transport import ReplicaKeys, client_tls
from modelport.spec.images import ImageLimits
from modelport.store import Database, open_database
from modelport.store.metric_history import MetricHistoryRepository
from modelport.tables.writer import TableWriter

__all__ = ["build_services"]


def build_services(
    settings: Settings, role: Role = "server", worker_index: int = 0
) -> tuple[Services, str | None]:
    """Open the store and wire the services (blocking). Returns them and a new admin token, if any.

    ``role``: ``server`` for the process that may lead (runs the reconciler and the replicas
    while it does), ``worker`` for the other HTTP processes of ``--workers N`` (``worker_index``
    1 to N-1 names its spool, replayed by the worker that replaces it)."""
    settings.data_path.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.store_url)
    workspace_id = db.meta_setdefault("workspace_id", str(secrets.randbelow(9 * 10**15) + 10**15))
    secret_service = SecretService(db, load_cipher(settings.secrets_key, settings.data_path, db))
    agent_tokens = AgentTokens.for_store(db, settings)  # agents' tool calls (on-behalf-of tokens)
    auth = Authenticator(db, agents=agent_tokens)
    identity = IdentityService(db, auth.forget)
    new_token = (
        identity.bootstrap(settings.admin_user, settings.admin_token or None, settings.data_path)
        if role == "server"
        else None  # the server process bootstrapped before starting its workers
    )
    registry = RegistryHandle()
    logs = LogStore(settings.logs_path)
    metrics = Metrics()
    options = RuntimeOptions(
        run_dir=settings.run_path,
        models_dir=settings.models_path,
        per_replica_concurrency=settings.replica_concurrency,
        per_replica_in_flight=settings.replica_in_flight,
        health_seconds=float(settings.replica_health_seconds),
        queue_limit=settings.queue_limit,
        max_replicas=settings.max_replicas,
        scale_to_zero_seconds=float(settings.scale_to_zero_seconds),
        batching=settings.batching,
        max_batch_size=settings.max_batch_size,
        max_batch_wait_ms=float(settings.max_batch_wait_ms),
        env_manager=settings.env_manager,
        envs_dir=settings.envs_path,
        prefork=settings.prefork,
        # Several servers may share a PostgreSQL store: a dead leader's replicas wait this long
        # for the next leader to adopt them (3 lease periods, and the time a takeover takes).
        orphan_seconds=3.0 * settings.leader_lease_seconds + 10 if db.dialect == "postgresql" else 0.0,
        # Other processes may route to an old config version until their next change poll.
        retire_grace_seconds=2.0 if settings.workers > 1 or db.dialect == "postgresql" else 0.2,
        engines=EngineDefaults(
            llm_parallel=settings.llm_parallel,
            llm_context=settings.llm_context,
            llm_threads=settings.llm_threads,
            embed_threads=settings.embed_threads,
        ),
    )
    keys = _replica_keys(settings, db) if settings.backend == "ray" else None
    # Replicas of models that look their features up read the online store (Ray replicas too).
    base_env = {**inherited_environment(), "MODELPORT_ONLINE_STORE": settings.online_store_location}
    backend_args = (registry, logs, options, base_env)
    # The endpoint event log of the leader's work (updates, replicas): written off the event loop.
    events = EventSink(db.events.add, prune=db.events.prune)
    backend_kwargs = {
        "resolve_secret": secret_service.resolve,
        "model_check": ModelCheck(db.digests, embedded=settings.embedded_registry),
        "on_event": events,
    }
    if keys is not None:
        backend: LocalBackend = RayBackend(
            *backend_args,
            ray=RayOptions(
                address=settings.ray_address,
                namespace=settings.ray_namespace,
                cpus_per_replica=settings.ray_cpus_per_replica,
                tls=_tls_pem(settings),
            ),
            keys=keys,
            **backend_kwargs,  # type: ignore[arg-type]
        )
    else:
        backend = LocalBackend(*backend_args, **backend_kwargs)  # type: ignore[arg-type]
    external = ExternalPlane(
        secret_service.resolve,
        resolve_async=secret_service.resolve_async,
        timeout=float(settings.external_timeout),
        base_urls=settings.provider_base_urls,
        images=ImageLimits(settings.max_image_bytes, settings.max_images_per_request),
    )
    limiter = RateLimiter(RedisCounters(settings.redis) if settings.redis else LocalCounters())
    tables = TableWriter(
        settings.tables_location,
        settings.spool_path if role == "server" else settings.worker_spool_path(worker_index),
        fsync=settings.tables_fsync,  # type: ignore[arg-type]
        flush_interval=float(settings.tables_flush_seconds),
        max_batch=50_000,
        memory_records=settings.tables_memory_records,
    )
    _watch_faults(metrics, limiter, tables)
    reconciler = Reconciler(
        db, backend, logs, max_concurrent=settings.max_concurrent_deployments, events=events
    )
    cluster = Cluster(
        db,
        backend,
        reconciler,
        role=role,
        worker_index=worker_index,
        lease_seconds=float(settings.leader_lease_seconds),
        per_replica_in_flight=settings.replica_in_flight,
        queue_limit=settings.queue_limit,
        keys=keys,
    )
    dataplane = DataPlane(
        db,
        cluster,
        metrics,
        timeout=float(settings.request_timeout),
        external=external,
        limiter=limiter,
        recorder=Recorder(tables),
        cache=RedisCache(settings.redis) if settings.redis else LocalCache(settings.response_cache_bytes),
        # Feature-spec endpoints read the online store the replicas read.
        features=FeaturePlane(settings.online_store_location, metrics),
        shadow_max_in_flight=settings.shadow_max_in_flight,
        agent_context=agent_tokens.context_for,  # each agent request's token for its tools
        # rate-limit and guardrail refusals, one event per burst in the endpoint event log
        refusals=RefusalBursts(
            events,
            quiet_seconds=settings.refusal_burst_quiet_seconds,
            max_open_seconds=settings.refusal_burst_max_seconds,
        ),
    )
    reconciler.on_change = dataplane.invalidate
    store = dataplane.cache.store
    metrics.watch(
        "modelport_response_cache_errors",
        "Response-cache calls to Redis that failed (lookups, stores, drops): a failed lookup is "
        "answered as a miss, a failed store keeps nothing.",
        lambda: float(getattr(store, "errors", 0)),
        "counter",
    )
    if isinstance(store, LocalCache):
        metrics.watch(
            "modelport_response_cache_bytes",
            "Bytes of answers held in this process's response cache.",
            lambda: float(store.bytes),
            "gauge",
        )
    cluster.changes.subscribe_blocking("routes", dataplane.routes.sync)
    cluster.changes.subscribe_blocking("tokens", auth.forget)
    cluster.changes.subscribe_blocking("secrets", secret_service.forget_all)
    access = AccessControl(db)
    feature_functions = FeatureFunctionService(settings.tables_location)
    feature_specs = FeatureSpecService(db, settings.tables_location, functions=feature_functions.definition)
    endpoint_service = EndpointService(
        db,
        access,
        reconciler,
        logs,
        registry,
        on_change=dataplane.invalidate,
        secrets=secret_service,
        models=RegistryAccess(db) if settings.embedded_registry else None,
        feature_specs=feature_specs,
    )
    features = FeatureService(db, settings.tables_location, settings.online_store_location)
    services = Services(
        settings=settings,
        db=db,
        auth=auth,
        identity=identity,
        endpoints=endpoint_service,
        reconciler=reconciler,
        registry=registry,
        metrics=metrics,
        workspace_id=workspace_id,
        backend=backend,
        dataplane=dataplane,
        secrets=secret_service,
        tables=tables,
        cluster=cluster,
        features=features,
        feature_specs=feature_specs,
        feature_functions=feature_functions,
        # the online store's state of a table, whoever may read it: the endpoint page's problems
        feature_usage=FeatureUsage(endpoint_service, registry, features.tables, features.online_state),
        events=events,
    )
    batch_root = settings.data_path / "batch"  # bulk jobs: files and job state (batch/jobs.py)
    files = FileStore(batch_root)
    leading = lambda: cluster.leading  # noqa: E731 (both runners ask it)
    services.batches = BatchRunner(JobStore(batch_root, files), dataplane, db, leading=leading)
    services.table_jobs = TableJobRunner(
        TableJobStore(batch_root),
        files,
        dataplane,
        db,
        endpoint_service,
        registry,
        settings.tables_location,
        leading=leading,
    )
    # Quality monitors: files under the tables root; the leader runs their refreshes.
    services.monitors = MonitorService(db, settings.tables_location, secrets=secret_service)
    services.monitor_runner = MonitorRunner(services.monitors, leading=lambda: cluster.leading)
    services.monitors.wake = services.monitor_runner.wake
    # Comparisons and replays (the leader sends the replays' requests).
    services.comparisons = ComparisonService(
        db,
        endpoint_service,
        settings.tables_location,
        embed=_embedder(dataplane, float(settings.request_timeout)),
    )
    services.replay_runner = ReplayRunner(
        db,
        dataplane,
        services.comparisons,
        leading=leading,
        flush_seconds=float(settings.tables_flush_seconds),
    )
    services.replays = ReplayService(db, endpoint_service, services.comparisons, services.replay_runner.wake)
    # Canary rollouts: begun by config updates, driven by the leader, counted by every process.
    services.rollouts = RolloutService(db, access, on_change=dataplane.invalidate)
    services.rollouts.endpoints = endpoint_service
    endpoint_service.rollouts = services.rollouts
    services.rollout_runner = RolloutRunner(services.rollouts, leading=leading)
    services.rollouts.wake = services.rollout_runner.wake
    services.rollout_tally = RolloutTally(db, cluster.holder, dataplane.shadows)
    dataplane.observers.append(services.rollout_tally)
    # Agents' traces, logged into the MLflow tracking store from one thread.
    services.agent_traces = AgentTraces(
        registry_tracking_store(registry, embedded=settings.embedded_registry)
    )
    dataplane.observers.append(services.agent_traces)
    _watch_traces(metrics, services.agent_traces)
    # Metrics history: every process writes its own minute rows; the leader downsamples them.
    services.metric_history = MetricHistoryRepository(db.engine)
    services.history_recorder = HistoryRecorder(
        services.metric_history,
        metrics,
        cluster.holder,
        replicas=backend if role == "server" else None,
        interval=settings.metric_history_flush_seconds,
    )
    services.history_keeper = HistoryKeeper(
        services.metric_history,
        leading=leading,
        interval=settings.metric_history_downsample_seconds,
        days=settings.metric_history_days,
        minute_hours=settings.metric_history_minute_hours,
    )
    return services, new_token


def _embedder(dataplane: DataPlane, timeout: float) -> Callable[[list[str]], list[list[float]]]:
    """Texts to vectors through the system embeddings endpoint, from a worker thread (comparison
    reports' similarity of LLM answers; raises when the endpoint does not serve here)."""

    def embed(texts: list[str]) -> list[list[float]]:
        loop = dataplane.cache.loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the data plane is not running")
        vectors: list[list[float]] = []
        for start in range(0, len(texts), 64):
            batch = [t[:2000] for t in texts[start : start + 64]]
            future = asyncio.run_coroutine_threadsafe(dataplane.embed(batch), loop)
            vectors.extend(future.result(timeout))
        return vectors

    return embed


def _replica_keys(settings: Settings, db: Database) -> ReplicaKeys:
    """The secrets of TCP replicas: derived from a key every server of the store reads (made
    by the first), with TLS pinned to the server's certificate when it has one."""
    key = db.meta_setdefault("replica_key", secrets.token_hex(32))
    return ReplicaKeys(
        bytes.fromhex(key), client_tls(settings.tls_certfile) if settings.tls_certfile else None
    )


def _tls_pem(settings: Settings) -> tuple[str, str] | None:
    if not settings.tls_certfile:
        return None
    with open(settings.tls_certfile) as cert, open(settings.tls_keyfile) as key:
        return cert.read(), key.read()


def _watch_traces(metrics: Metrics, traces: AgentTraces) -> None:
    """Counters of agents' traces logged into the MLflow tracking store (``gateway/agent_traces.py``)."""
    metrics.watch(
        "modelport_agent_traces_written",
        "Agents' traces written into the MLflow tracking store.",
        lambda: float(traces.written),
        "counter",
    )
    metrics.watch(
        "modelport_agent_traces_failed",
        "Agents' traces the MLflow tracking store did not take (logged; the queries were answered).",
        lambda: float(traces.failed),
        "counter",
    )
    metrics.watch(
        "modelport_agent_traces_dropped",
        "Agents' traces dropped because too many waited to be written.",
        lambda: float(traces.dropped),
        "counter",
    )


def _watch_faults(metrics: Metrics, limiter: RateLimiter, tables: TableWriter) -> None:
    """Counters of degraded service on ``/metrics``: rate limits not checked (Redis away) and
    table records held in memory or refused (the spool's disk full)."""
    metrics.watch(
        "modelport_ratelimit_unchecked_admits",
        "Queries admitted without a rate-limit check because the counters (Redis) were unreachable.",
        lambda: limiter.unchecked_admits,
        "counter",
    )
    metrics.watch(
        "modelport_ratelimit_backend_errors",
        "Rate-limit counter calls that failed (Redis unreachable or erroring).",
        lambda: limiter.backend_errors,
        "counter",
    )
    metrics.watch(
        "modelport_spool_records_in_memory",
        "Table records kept in memory because the spool's disk refuses writes (written when it has room).",
        lambda: tables.stats.in_memory,
        "gauge",
    )
    metrics.watch(
        "modelport_spool_records_refused",
        "Queries and records refused with 503: the spool's disk was full and its memory bound reached.",
        lambda: tables.stats.refused,
        "counter",
    )
