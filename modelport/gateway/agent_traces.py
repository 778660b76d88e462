"""Agents' traces in the MLflow tracking store, where ``mlflow.search_traces()`` finds them.

Each answer of an agent endpoint carries the MLflow trace of its request (``Exchange.trace``,
``Trace.to_json()`` made in the replica). :class:`AgentTraces`, a data-plane observer
(``gateway/observers.py``), queues it when the query ends and one thread writes it with
MLflow's own tracking-store API (``log_spans`` then ``start_trace``: the spans are kept in the
store's database, no artifact is written): the embedded registry's store in this process, or
the remote tracking server of ``--registry-uri``.

- Which traces: every live query of an agent endpoint that came back with a trace, whatever
  its status and whether the endpoint records queries or not (Databricks logs an agent's
  traces to its experiment whenever it is deployed with tracing; the inference table's
  ``trace`` column, ``gateway/recording.py``, is the other copy, written only when the
  endpoint has an inference table). Shadow copies and replays are not logged here (their
  inference rows keep their traces).
- Where: one experiment per endpoint, :func:`experiment_name` (``/Shared/modelport/endpoints/
  <endpoint name>``), created on first use with the tag ``modelport.endpoint``. An
  ``MLFLOW_EXPERIMENT_ID`` among the served entity's ``environment_vars`` is not followed (it
  would let an endpoint's creator write into any experiment). A deleted experiment of that name
  is not restored: its endpoint's traces are counted as failed until an admin restores it.
  Trace routes of the embedded server are open to admins only (``api/mlflow_routes.py``).
- What: the replica's trace as it came (its trace id, spans, state and previews), moved to the
  endpoint's experiment, with ``client_request_id`` set to the gateway's request id (the
  ``x-request-id`` of the answer, the inference row's ``databricks_request_id``), the tags
  :data:`TAG_ENDPOINT`, :data:`TAG_ENDPOINT_ID`, :data:`TAG_SERVED_ENTITY`,
  :data:`TAG_REQUEST_ID`, and the metadata ``mlflow.trace.user`` (the requester) and
  ``mlflow.databricks.modelServingEndpointName`` (the endpoint). Find a query's trace with
  ``mlflow.search_traces(locations=[<experiment id>], filter_string="tags.`modelport.request_id`
  = '<request id>'")``.
- Bounds: at most :data:`MAX_PENDING` traces and :data:`MAX_PENDING_BYTES` wait; beyond that a
  trace is dropped (counted). A trace that cannot be written (not a trace's JSON, the store
  refusing it) is logged and counted, never raised into the query. At shutdown the thread
  writes what waits for up to a few seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelport.entities.registry_handle import RegistryHandle
from modelport.gateway.exchange import Answer, Exchange
from modelport.gateway.routing import Route

__all__ = [
    "EXPERIMENT_PREFIX",
    "MAX_PENDING",
    "MAX_PENDING_BYTES",
    "TAG_ENDPOINT",
    "TAG_ENDPOINT_ID",
    "TAG_REQUEST_ID",
    "TAG_SERVED_ENTITY",
    "AgentTraces",
    "PendingTrace",
    "experiment_name",
    "registry_tracking_store",
]

log = logging.getLogger("modelport.gateway")

#: The experiment of endpoint ``<name>``'s traces is ``EXPERIMENT_PREFIX + <name>``.
EXPERIMENT_PREFIX = "/Shared/modelport/endpoints/"
#: Traces waiting to be written, at most (more are dropped).
MAX_PENDING = 1000
#: Bytes of trace JSON waiting to be written, at most (more are dropped).
MAX_PENDING_BYTES = 64 * 1024 * 1024

TAG_ENDPOINT = "modelport.endpoint"
TAG_ENDPOINT_ID = "modelport.endpoint_id"
TAG_SERVED_ENTITY = "modelport.served_entity"
#: The gateway's request id: the inference row's ``databricks_request_id``.
TAG_REQUEST_ID = "modelport.request_id"
_USER_METADATA = "mlflow.trace.user"
_ENDPOINT_METADATA = "mlflow.databricks.modelServingEndpointName"
#: Tags the tracking store sets itself (where the trace's files and spans are): a trace the
#: replica took from a store of its own may carry them, naming that store.
_STORE_TAGS = frozenset({"mlflow.artifactLocation", "mlflow.trace.spansLocation"})

#: Seconds :meth:`AgentTraces.stop` waits for the waiting traces to be written.
_DRAIN_SECONDS = 5.0


def experiment_name(endpoint: str) -> str:
    """The MLflow experiment that holds endpoint ``endpoint``'s traces."""
    return EXPERIMENT_PREFIX + endpoint


@dataclass(frozen=True, slots=True)
class PendingTrace:
    """A trace waiting to be written, with what names its query."""

    #: ``Trace.to_json()`` of the request, as the replica sent it.
    trace: bytes
    endpoint: str
    endpoint_id: str
    served_entity: str | None
    #: The gateway's request id (``x-request-id``, the inference row's ``databricks_request_id``).
    request_id: str
    requester: str | None


def registry_tracking_store(registry: RegistryHandle, *, embedded: bool) -> Callable[[], Any]:
    """The tracking store traces go to, once the registry has loaded (blocking: call it from
    the writer's thread): the embedded server's own store object, else the store of the remote
    registry's tracking URI."""

    def store() -> Any:
        loaded = registry.get()  # waits while MLflow loads; raises when it failed to
        if embedded:
            from mlflow.server import handlers

            return handlers._get_tracking_store()
        from mlflow.tracking._tracking_service.utils import _get_store

        return _get_store(loaded.tracking_uri)

    return store


class AgentTraces:
    """Writes agents' traces into the MLflow tracking store from one thread (see the module's
    docstring). Called as a data-plane observer on the event loop: it only queues."""

    def __init__(self, store: Callable[[], Any]) -> None:
        """``store``: the MLflow tracking store (an ``AbstractStore``), asked for in the writer's
        thread before its first write, again after a failure to get it."""
        self._store_of = store
        self._store: Any = None
        self._queue: queue.Queue[PendingTrace | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self._pending_bytes = 0
        self._experiments: dict[str, str] = {}  # endpoint name -> experiment id
        self._thread: threading.Thread | None = None
        #: Traces written, dropped (the bounds were reached, or the writer stopped) and failed.
        self.written = 0
        self.dropped = 0
        self.failed = 0

    # -- the query path (event loop) ---------------------------------------------------------

    def __call__(
        self, ex: Exchange, route: Route, status: int, latency_ms: float, answer: Answer | None
    ) -> None:
        """The observer: queue ``ex``'s trace, when its answer had one."""
        if ex.trace is None:
            return
        self.submit(
            PendingTrace(
                trace=ex.trace,
                endpoint=route.name,
                endpoint_id=route.endpoint_id,
                served_entity=ex.entity,
                request_id=ex.request_id,
                requester=ex.caller.name,
            )
        )

    def submit(self, item: PendingTrace) -> bool:
        """Queue ``item`` for the writer; False (and counted as dropped) past the bounds."""
        size = len(item.trace)
        with self._lock:
            full = self._pending >= MAX_PENDING or self._pending_bytes + size > MAX_PENDING_BYTES
            if full:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._pending += 1
                self._pending_bytes += size
        if full:
            if dropped == 1 or dropped % 100 == 0:
                log.warning("agent trace dropped: too many wait to be written", extra={"dropped": dropped})
            return False
        self._queue.put(item)
        return True

    @property
    def pending(self) -> int:
        """Traces waiting to be written."""
        return self._pending

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer's thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="modelport-agent-traces", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = _DRAIN_SECONDS) -> None:
        """Write what waits (for up to ``timeout`` seconds), then end the thread (blocking).
        What still waits then is lost with the process (logged)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("agent traces not written at shutdown", extra={"traces": self._pending})

    # -- the writer's thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.write(item)
                self.written += 1
            except Exception as exc:
                self.failed += 1
                log.warning(
                    "agent trace not written to the MLflow tracking store: %s",
                    exc,
                    extra={"endpoint": item.endpoint, "request_id": item.request_id},
                )
            finally:
                with self._lock:
                    self._pending -= 1
                    self._pending_bytes -= len(item.trace)

    def write(self, item: PendingTrace) -> str:
        """Write one trace into its endpoint's experiment (blocking; raises what fails). Returns
        the trace id."""
        from mlflow.entities import Trace, TraceLocation

        trace = Trace.from_json(item.trace.decode("utf-8"))
        store = self._tracking_store()
        experiment_id = self._experiment(store, item.endpoint)
        info = trace.info
        info.trace_location = TraceLocation.from_experiment_id(experiment_id)
        info.client_request_id = item.request_id
        tags = {
            TAG_ENDPOINT: item.endpoint,
            TAG_ENDPOINT_ID: item.endpoint_id,
            TAG_REQUEST_ID: item.request_id,
        }
        if item.served_entity is not None:
            tags[TAG_SERVED_ENTITY] = item.served_entity
        kept = {k: v for k, v in info.tags.items() if k not in _STORE_TAGS}
        info.tags = {**kept, **tags}
        metadata = {_ENDPOINT_METADATA: item.endpoint}
        if item.requester:
            metadata[_USER_METADATA] = item.requester
        info.trace_metadata = {**info.trace_metadata, **metadata}
        try:
            # Spans first: log_spans makes the trace's row when it is missing, and start_trace then
            # completes it (MLflow's store takes either order). The other order let a search that
            # came between the two find a trace without spans ("Failed to download trace data").
            store.log_spans(experiment_id, trace.data.spans)
            store.start_trace(info)
        except Exception:
            self._experiments.pop(item.endpoint, None)  # deleted or renamed meanwhile: look again
            raise
        return str(info.trace_id)

    def _tracking_store(self) -> Any:
        if self._store is None:
            self._store = self._store_of()
        return self._store

    def _experiment(self, store: Any, endpoint: str) -> str:
        """The id of ``endpoint``'s experiment, created when there is none."""
        found = self._experiments.get(endpoint)
        if found is not None:
            return found
        from mlflow.exceptions import MlflowException

        name = experiment_name(endpoint)
        experiment = store.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = str(store.create_experiment(name, tags=_experiment_tags(endpoint)))
            except MlflowException as exc:  # another server made it first
                experiment = store.get_experiment_by_name(name)
                if experiment is None:
                    raise exc from None
        if experiment is not None:
            if experiment.lifecycle_stage != "active":
                raise RuntimeError(f"the experiment '{name}' of the endpoint's traces is deleted")
            experiment_id = str(experiment.experiment_id)
        self._experiments[endpoint] = experiment_id
        return experiment_id


def _experiment_tags(endpoint: str) -> list[Any]:
    from mlflow.entities import ExperimentTag

    return [
        ExperimentTag(TAG_ENDPOINT, endpoint),
        ExperimentTag("mlflow.note.content", f"Traces of the agent endpoint '{endpoint}' (modelport)."),
    ]
