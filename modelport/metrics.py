"""Prometheus metrics: server-wide ones for ``/metrics`` and per-endpoint ones.

Per-endpoint metrics carry an ``endpoint`` label; ``render_endpoint`` writes only the
samples of one endpoint, which is what ``GET /api/2.0/serving-endpoints/{name}/metrics``
returns. The data plane (replicas, providers) records its requests here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["Metrics", "render_endpoint_text"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def _fmt(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return (
        repr(float(value))
        if not float(value).is_integer()
        else str(int(value))
        if abs(value) < 1e15
        else repr(value)
    )


def _label(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render_endpoint_text(
    families: Iterable[Metric],
    name: str,
    gauges: dict[str, tuple[str, float]],
    entity_gauges: dict[str, tuple[str, dict[str, float]]] | None = None,
) -> str:
    """Prometheus text with the samples of ``families`` labelled ``endpoint=name`` plus the
    given state gauges (``entity_gauges`` carry one value per served entity). Label values
    and help texts are escaped as the text format requires."""
    lines: list[str] = []
    for family in families:
        samples = [s for s in family.samples if s.labels.get("endpoint") == name]
        if not samples:
            continue
        lines.append(f"# HELP {family.name} {_help(family.documentation)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for s in samples:
            labels = ",".join(f'{k}="{_label(v)}"' for k, v in s.labels.items())
            lines.append(f"{s.name}{{{labels}}} {_fmt(s.value)}")
    for metric, (help_text, value) in gauges.items():
        lines.append(f"# HELP {metric} {_help(help_text)}")
        lines.append(f"# TYPE {metric} gauge")
        lines.append(f'{metric}{{endpoint="{_label(name)}"}} {_fmt(value)}')
    for metric, (help_text, values) in (entity_gauges or {}).items():
        lines.append(f"# HELP {metric} {_help(help_text)}")
        lines.append(f"# TYPE {metric} gauge")
        for entity, value in values.items():
            labels = f'endpoint="{_label(name)}",served_entity="{_label(entity)}"'
            lines.append(f"{metric}{{{labels}}} {_fmt(value)}")
    return "\n".join(lines) + "\n"


def histogram_quantile(bounds: Sequence[float], counts: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0 to 1) of a histogram (``counts``: one per bucket, the bucket above
    every bound last, not cumulative), in the bounds' unit: linear within the bucket where it
    falls, as Prometheus' ``histogram_quantile``; the largest bound when it falls above every
    bound; None when the histogram is empty. The metrics history and the rollout tallies use it."""
    total = sum(counts)
    if total <= 0 or not bounds:
        return None
    rank = q * total
    seen = 0.0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i >= len(bounds):
                return float(bounds[-1])
            lower = 0.0 if i == 0 else float(bounds[i - 1])
            return lower + (float(bounds[i]) - lower) * max(0.0, rank - seen) / n
        seen += n
    return float(bounds[-1])


class _Read(Collector):
    """One sample read from a callable at each scrape (a counter kept by its owner)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float], kind: str) -> None:
        self._name, self._doc, self._read, self._kind = name, documentation, read, kind

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily if self._kind == "counter" else GaugeMetricFamily
        yield family(self._name, self._doc, value=float(self._read()))


class Metrics:
    def __init__(self) -> None:
        self._forget_listeners: list[Callable[[str], None]] = []
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "modelport_http_requests",
            "HTTP requests answered by the server.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "modelport_http_request_duration_seconds",
            "Time to answer HTTP requests.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.config_updates = Counter(
            "modelport_endpoint_config_updates",
            "Endpoint config updates by result.",
            ["endpoint", "result"],
            registry=r,
        )
        self.endpoint_requests = Counter(
            "modelport_endpoint_requests",
            "Queries to an endpoint.",
            ["endpoint", "served_entity", "status"],
            registry=r,
        )
        self.endpoint_latency = Histogram(
            "modelport_endpoint_request_duration_seconds",
            "Time to answer queries to an endpoint.",
            ["endpoint", "served_entity"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.endpoint_in_flight = Gauge(
            "modelport_endpoint_in_flight_requests",
            "Queries being answered now.",
            ["endpoint", "served_entity"],
            registry=r,
        )
        self.response_cache = Counter(
            "modelport_response_cache_lookups",
            "Queries of endpoints with a response cache, by result: hit (answered from the cache), "
            "miss (looked up, answered by the model) or bypass (not cacheable: non-deterministic).",
            ["endpoint", "result"],
            registry=r,
        )
        self.feature_lookup_missing = Counter(
            "modelport_feature_lookup_missing",
            "Key rows of queries to feature-spec endpoints and to models that look their features "
            "up that found no row in a feature table's online copy (their features were null, or "
            "their default values).",
            ["endpoint", "table"],
            registry=r,
        )
        self.shadow_requests = Counter(
            "modelport_shadow_requests",
            "Copies of live queries sent to an endpoint's shadow entity (gateway/shadow.py), by "
            "outcome: sent (answered), error (failed or timed out), dropped (never sent: too many "
            "copies in flight).",
            ["endpoint", "served_entity", "outcome"],
            registry=r,
        )

    def server_text(self) -> bytes:
        return generate_latest(self.registry)

    def count_missing_rows(self, endpoint: str, missing: Mapping[str, int]) -> None:
        """Count the key rows of a query to ``endpoint`` that found no row in each feature table's
        online copy (``missing``: table name → rows)."""
        for table, count in missing.items():
            self.feature_lookup_missing.labels(endpoint, table).inc(count)

    def watch(
        self, name: str, documentation: str, read: Callable[[], float], kind: Literal["counter", "gauge"]
    ) -> None:
        """Export a value its owner keeps (read at each scrape of ``/metrics``); a counter's
        ``name`` is given without ``_total``, which Prometheus adds."""
        self.registry.register(_Read(name, documentation, read, kind))

    def on_forget(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` after each ``forget_endpoint`` (the metrics exchange tells
        the other worker processes)."""
        self._forget_listeners.append(listener)

    def forget_endpoint(self, name: str) -> None:
        """Drop every series labelled ``endpoint=name`` (the endpoint was deleted), then tell
        the listeners."""
        for metric in (
            self.config_updates,
            self.endpoint_requests,
            self.endpoint_latency,
            self.endpoint_in_flight,
            self.response_cache,
            self.feature_lookup_missing,
            self.shadow_requests,
        ):
            for labels in list(metric._metrics):  # prometheus_client keeps children keyed by label tuple
                names = metric._labelnames
                if dict(zip(names, labels, strict=True)).get("endpoint") == name:
                    metric.remove(*labels)
        for listener in self._forget_listeners:
            listener(name)

    def render_endpoint(
        self,
        name: str,
        gauges: dict[str, tuple[str, float]],
        entity_gauges: dict[str, tuple[str, dict[str, float]]] | None = None,
    ) -> str:
        """Prometheus text with this endpoint's samples plus the given state gauges
        (``entity_gauges`` carry one value per served entity)."""
        return render_endpoint_text(self.registry.collect(), name, gauges, entity_gauges)
