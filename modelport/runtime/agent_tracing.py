"""The MLflow traces of an agent replica's requests, kept in memory, never exported.

MLflow's agent interfaces trace their ``predict`` and ``predict_stream`` (``ResponsesAgent``
does it by itself; the agent's own ``@mlflow.trace`` functions and autologged libraries add
spans). Outside Databricks, MLflow would export every finished trace to its tracking URI (by
default a ``mlflow.db`` SQLite file in the working directory). :func:`install` replaces that:
before anything traces, it gives MLflow's tracer provider one span processor
(MLflow's own ``MlflowV3SpanProcessor``, which builds the trace) whose exporter is a
:class:`TraceCapture`: a finished trace is kept in memory under its trace id until the handler
takes it (:meth:`TraceCapture.take`) and sends it in the request's trailer (``runtime/protocol.py``).

:meth:`TraceCapture.request_span` opens the root span of one request (named for the endpoint,
the request as its inputs, the answer as its outputs), so every request has exactly one trace
whose id the handler knows, whichever interface the agent uses.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["MAX_KEPT", "TraceCapture", "install"]

log = logging.getLogger("modelport.runtime")

#: Traces kept at most (the oldest dropped first): a trace nobody takes (its request failed
#: after its span ended) must not grow the replica's memory.
MAX_KEPT = 256


class TraceCapture:
    """Finished traces by trace id (an OpenTelemetry ``SpanExporter``: MLflow's span processor
    hands it each root span as it ends, with the trace it completes)."""

    def __init__(self) -> None:
        self._traces: dict[str, Any] = {}
        self._lock = threading.Lock()

    # ---- SpanExporter --------------------------------------------------------------------------
    def export(self, spans: Sequence[Any]) -> Any:
        from mlflow.tracing.trace_manager import InMemoryTraceManager
        from opentelemetry.sdk.trace.export import SpanExportResult

        manager = InMemoryTraceManager.get_instance()
        for span in spans:
            if span.parent is not None:
                continue
            finished = manager.pop_trace(span.context.trace_id)
            if finished is None:
                continue
            trace = finished.trace
            with self._lock:
                self._traces[trace.info.trace_id] = trace
                while len(self._traces) > MAX_KEPT:
                    self._traces.pop(next(iter(self._traces)))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._traces.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # ---- the handler's side --------------------------------------------------------------------
    def take(self, trace_id: str) -> bytes | None:
        """The finished trace ``trace_id`` as JSON (``Trace.to_json()``), removed; None when
        tracing was off or the trace is unknown."""
        with self._lock:
            trace = self._traces.pop(trace_id, None)
        if trace is None:
            return None
        try:
            return str(trace.to_json()).encode("utf-8")
        except Exception:  # a span attribute MLflow cannot encode must not fail the answer
            log.exception("agent trace not encoded")
            return None

    @contextlib.contextmanager
    def request_span(self, name: str, inputs: Any, request_id: str | None) -> Iterator[Any]:
        """The root span of one request (``span.trace_id`` names its trace once it ended)."""
        import mlflow

        with mlflow.start_span(name=name, span_type="AGENT") as span:
            span.set_inputs(inputs)
            if request_id:
                with contextlib.suppress(Exception):
                    mlflow.update_current_trace(client_request_id=request_id)
            yield span


def install() -> TraceCapture:
    """Route MLflow's traces in this process to a new :class:`TraceCapture` from now on (in a
    replica: before anything traces, so MLflow never sets up its exporter to a tracking store)."""
    from mlflow.tracing.processor.mlflow_v3 import MlflowV3SpanProcessor
    from mlflow.tracing.provider import provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    capture = TraceCapture()

    def set_up() -> None:
        tracer_provider = TracerProvider(resource=Resource({"telemetry.sdk.name": "mlflow"}))
        tracer_provider.add_span_processor(MlflowV3SpanProcessor(span_exporter=capture, export_metrics=False))  # type: ignore[arg-type]
        provider.set(tracer_provider)

    provider.once.do_once(lambda: None)  # MLflow's own set-up never runs after this
    set_up()
    return capture
