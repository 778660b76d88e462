"""The services one server process holds, built at start-up and shared by all routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from modelport.batch.replay_runner import ReplayRunner
from modelport.batch.runner import BatchRunner
from modelport.batch.table_runner import TableJobRunner
from modelport.config import Settings
from modelport.control.cluster import Cluster
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
from modelport.control.reconciler import Reconciler
from modelport.control.replays import ReplayService
from modelport.control.rollout_runner import RolloutRunner
from modelport.control.rollouts import RolloutService
from modelport.control.secrets import SecretService
from modelport.entities.registry_handle import RegistryHandle
from modelport.gateway.agent_traces import AgentTraces
from modelport.gateway.auth import Authenticator
from modelport.gateway.pipeline import DataPlane
from modelport.gateway.rollout_tally import RolloutTally
from modelport.metrics import Metrics
from modelport.metrics_exchange import MetricsExchange
from modelport.runtime.event_sink import EventSink
from modelport.runtime.local import LocalBackend
from modelport.spec.identity import Caller
from modelport.store import Database
from modelport.store.metric_history import MetricHistoryRepository
from modelport.tables.writer import TableWriter

__all__ = ["Services", "caller_of", "services_of"]


@dataclass
class Services:
    settings: Settings
    db: Database
    auth: Authenticator
    identity: IdentityService
    endpoints: EndpointService
    reconciler: Reconciler
    registry: RegistryHandle
    metrics: Metrics
    workspace_id: str
    backend: LocalBackend
    dataplane: DataPlane
    secrets: SecretService
    tables: TableWriter
    cluster: Cluster
    features: FeatureService
    feature_usage: FeatureUsage
    feature_specs: FeatureSpecService
    feature_functions: FeatureFunctionService
    started: bool = False
    # Set when several HTTP workers share the port: /metrics and endpoint metrics then merge
    # every worker's samples (metrics_exchange.py) instead of this process's alone.
    metrics_exchange: MetricsExchange | None = None
    #: Bulk jobs (OpenAI's Files and Batch APIs, ``batch/runner.py``).
    batches: BatchRunner | None = None
    #: Quality monitors on tables (``control/monitors.py``) and their refreshes' runner.
    monitors: MonitorService | None = None
    monitor_runner: MonitorRunner | None = None
    #: Bulk jobs on tables (``modelport batch run``, ``batch/table_runner.py``).
    table_jobs: TableJobRunner | None = None
    #: Comparison reports of a candidate against live traffic (``control/comparisons.py``), and
    #: replays of logged traffic against it (``control/replays.py``) with their runner.
    comparisons: ComparisonService | None = None
    replays: ReplayService | None = None
    replay_runner: ReplayRunner | None = None
    #: Canary rollouts (``control/rollouts.py``), the leader's runner of them, and this
    #: process's tallies of their steps (a data-plane observer, ``gateway/rollout_tally.py``).
    rollouts: RolloutService | None = None
    rollout_runner: RolloutRunner | None = None
    rollout_tally: RolloutTally | None = None
    #: The writer of the endpoint event log for the leader's work (``runtime/event_sink.py``).
    events: EventSink | None = None
    #: Agents' traces logged into the MLflow tracking store (a data-plane observer with its
    #: writer thread, ``gateway/agent_traces.py``).
    agent_traces: AgentTraces | None = None
    #: Metrics history (``control/metric_history.py``): its rows, this process's recorder of
    #: them and the leader's downsampling.
    metric_history: MetricHistoryRepository | None = None
    history_recorder: HistoryRecorder | None = None
    history_keeper: HistoryKeeper | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def caller_of(request: Request) -> Caller:
    """Authenticate the request (an in-memory cache answers most of these)."""
    caller: Caller = services_of(request).auth.authenticate(request.headers.get("authorization"))
    request.state.caller = caller
    request.scope["modelport.caller"] = caller  # for the audit log (api/middleware.py)
    return caller
