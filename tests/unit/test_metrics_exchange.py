"""The metrics of several worker processes merged (modelport/metrics_exchange.py).

Each "process" is a ``Metrics`` with its own ``MetricsExchange`` in one folder; they all run in
this test process, so a process that has exited is made by rewriting the pid in its file to
one that does not exist. The merged text is read back with prometheus_client's parser.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelport.metrics import Metrics
from modelport.metrics_exchange import MetricsExchange

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str | bytes) -> Samples:
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def _process(
    folder: Path, process_id: str, clock: Callable[[], float] = time.time
) -> tuple[Metrics, MetricsExchange]:
    metrics = Metrics()
    return metrics, MetricsExchange(folder, metrics, process_id, clock=clock)


def _file_of(exchange: MetricsExchange) -> Path:
    return exchange.directory / f"{exchange.process_id}.{os.getpid()}.json"


def _dead_pid() -> int:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    for pid in range(pid_max - 1, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("every pid is taken")


def _exited(exchange: MetricsExchange) -> None:
    """Make ``exchange``'s published file look like that of a process that has exited."""
    path = _file_of(exchange)
    doc = orjson.loads(path.read_bytes())
    doc["pid"] = _dead_pid()
    path.write_bytes(orjson.dumps(doc))


def test_counters_are_summed_by_label_set_across_processes(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    c, ex_c = _process(tmp_path, "w2")
    a.http_requests.labels("GET", "/x", "200").inc(1)
    b.http_requests.labels("GET", "/x", "200").inc(2)
    b.http_requests.labels("POST", "/x", "500").inc(5)
    c.http_requests.labels("GET", "/x", "200").inc(4)
    ex_b.publish()
    ex_c.publish()

    merged = _parse(ex_a.server_text())

    assert merged[_key("modelport_http_requests_total", method="GET", route="/x", status="200")] == 7
    assert merged[_key("modelport_http_requests_total", method="POST", route="/x", status="500")] == 5


def test_this_process_counts_now_and_the_others_as_last_published(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    b.http_requests.labels("GET", "/x", "200").inc(2)
    ex_b.publish()
    b.http_requests.labels("GET", "/x", "200").inc(10)  # not published yet
    a.http_requests.labels("GET", "/x", "200").inc(1)

    merged = _parse(ex_a.server_text())

    assert merged[_key("modelport_http_requests_total", method="GET", route="/x", status="200")] == 3


def test_histogram_buckets_sum_and_count_are_summed(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    a.http_latency.labels("GET", "/x").observe(0.003)
    b.http_latency.labels("GET", "/x").observe(0.003)
    b.http_latency.labels("GET", "/x").observe(0.2)
    ex_b.publish()

    merged = _parse(ex_a.server_text())

    name = "modelport_http_request_duration_seconds"
    assert merged[_key(f"{name}_bucket", method="GET", route="/x", le="0.0025")] == 0
    assert merged[_key(f"{name}_bucket", method="GET", route="/x", le="0.005")] == 2
    assert merged[_key(f"{name}_bucket", method="GET", route="/x", le="0.25")] == 3
    assert merged[_key(f"{name}_bucket", method="GET", route="/x", le="+Inf")] == 3
    assert merged[_key(f"{name}_count", method="GET", route="/x")] == 3
    assert merged[_key(f"{name}_sum", method="GET", route="/x")] == pytest.approx(0.206)


def test_created_is_the_earliest_not_a_sum(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    b.http_requests.labels("GET", "/x", "200").inc()
    ex_b.publish()
    time.sleep(0.01)
    a.http_requests.labels("GET", "/x", "200").inc()
    published = _parse(b.server_text())

    merged = _parse(ex_a.server_text())

    key = _key("modelport_http_requests_created", method="GET", route="/x", status="200")
    assert merged[key] == published[key]


def test_gauges_of_live_processes_are_summed(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    a.endpoint_in_flight.labels("e", "m").set(2)
    b.endpoint_in_flight.labels("e", "m").set(3)
    ex_b.publish()

    merged = _parse(ex_a.server_text())

    assert merged[_key("modelport_endpoint_in_flight_requests", endpoint="e", served_entity="m")] == 5


def test_an_exited_process_keeps_its_counters_and_histograms_but_not_its_gauges(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    a.endpoint_requests.labels("e", "m", "200").inc(1)
    b.endpoint_requests.labels("e", "m", "200").inc(6)
    b.endpoint_latency.labels("e", "m").observe(1.5)
    a.endpoint_in_flight.labels("e", "m").set(1)
    b.endpoint_in_flight.labels("e", "m").set(4)
    b.endpoint_in_flight.labels("e", "only-b").set(9)
    ex_b.publish()
    _exited(ex_b)

    merged = _parse(ex_a.server_text())

    assert (
        merged[_key("modelport_endpoint_requests_total", endpoint="e", served_entity="m", status="200")] == 7
    )
    assert (
        merged[_key("modelport_endpoint_request_duration_seconds_count", endpoint="e", served_entity="m")]
        == 1
    )
    assert merged[_key("modelport_endpoint_in_flight_requests", endpoint="e", served_entity="m")] == 1
    assert _key("modelport_endpoint_in_flight_requests", endpoint="e", served_entity="only-b") not in merged


def test_a_file_not_rewritten_for_stale_seconds_gives_no_gauges(tmp_path: Path) -> None:
    now = [1000.0]
    _a, ex_a = _process(tmp_path, "w0", clock=lambda: now[0])
    b, ex_b = _process(tmp_path, "w1", clock=lambda: now[0])
    b.endpoint_in_flight.labels("e", "m").set(4)
    b.endpoint_requests.labels("e", "m", "200").inc(3)
    ex_b.publish()
    now[0] += 11  # past the default 10 s: the pid may be someone else's by now

    merged = _parse(ex_a.server_text())

    assert _key("modelport_endpoint_in_flight_requests", endpoint="e", served_entity="m") not in merged
    assert (
        merged[_key("modelport_endpoint_requests_total", endpoint="e", served_entity="m", status="200")] == 3
    )


def test_a_replaced_worker_does_not_overwrite_its_predecessors_counts(tmp_path: Path) -> None:
    _a, ex_a = _process(tmp_path, "w0")
    old, ex_old = _process(tmp_path, "w1")
    old.http_requests.labels("GET", "/x", "200").inc(5)
    ex_old.publish()
    _exited(ex_old)
    dead_file = _file_of(ex_old)
    dead_file.rename(tmp_path / f"w1.{_dead_pid()}.json")  # its name carries its own pid
    new, ex_new = _process(tmp_path, "w1")
    new.http_requests.labels("GET", "/x", "200").inc(1)
    ex_new.publish()

    merged = _parse(ex_a.server_text())

    assert merged[_key("modelport_http_requests_total", method="GET", route="/x", status="200")] == 6


@pytest.mark.parametrize(
    "content",
    [b"", b'{"format": 1, "pid": 12, "publ', b"not json", b'{"format": 99}', b"[1, 2]", b'{"format": 1}'],
)
def test_a_corrupt_or_partial_file_is_left_out(tmp_path: Path, content: bytes) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    a.http_requests.labels("GET", "/x", "200").inc(1)
    b.http_requests.labels("GET", "/x", "200").inc(2)
    ex_b.publish()
    (tmp_path / "w9.123.json").write_bytes(content)

    merged = _parse(ex_a.server_text())

    assert merged[_key("modelport_http_requests_total", method="GET", route="/x", status="200")] == 3


def test_a_file_that_changes_is_read_again(tmp_path: Path) -> None:
    _a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    b.http_requests.labels("GET", "/x", "200").inc(2)
    ex_b.publish()
    key = _key("modelport_http_requests_total", method="GET", route="/x", status="200")
    assert _parse(ex_a.server_text())[key] == 2
    b.http_requests.labels("GET", "/x", "200").inc(30)
    ex_b.publish()

    assert _parse(ex_a.server_text())[key] == 32


def test_label_values_with_quotes_backslashes_and_newlines_survive(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    odd = 'a "quoted" \\path\\ and\na newline'
    a.endpoint_requests.labels(odd, "m", "200").inc(1)
    b.endpoint_requests.labels(odd, "m", "200").inc(2)
    ex_b.publish()

    server = _parse(ex_a.server_text())
    endpoint = _parse(ex_a.endpoint_text(odd, {"modelport_endpoint_ready": ("1 when ready.", 1.0)}))

    requests = _key("modelport_endpoint_requests_total", endpoint=odd, served_entity="m", status="200")
    assert server[requests] == 3
    assert endpoint[requests] == 3
    assert endpoint[_key("modelport_endpoint_ready", endpoint=odd)] == 1


def test_endpoint_text_merges_that_endpoint_only_and_adds_the_given_gauges(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    a.endpoint_requests.labels("e", "m", "200").inc(1)
    b.endpoint_requests.labels("e", "m", "200").inc(2)
    b.endpoint_requests.labels("other", "m", "200").inc(8)
    b.config_updates.labels("e", "ok").inc()
    ex_b.publish()

    merged = _parse(
        ex_a.endpoint_text(
            "e",
            {"modelport_endpoint_config_version": ("Config version.", 3.0)},
            {"modelport_endpoint_replicas": ("Replicas.", {"m": 2.0})},
        )
    )

    assert {k: v for k, v in merged.items() if not k[0].endswith("_created")} == {
        _key("modelport_endpoint_requests_total", endpoint="e", served_entity="m", status="200"): 3,
        _key("modelport_endpoint_config_updates_total", endpoint="e", result="ok"): 1,
        _key("modelport_endpoint_config_version", endpoint="e"): 3,  # given, not summed
        _key("modelport_endpoint_replicas", endpoint="e", served_entity="m"): 2,
    }


def test_endpoint_text_of_one_process_is_what_metrics_renders(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    a.endpoint_requests.labels("e", "m", "200").inc(2)
    a.endpoint_latency.labels("e", "m").observe(0.02)
    gauges = {"modelport_endpoint_ready": ("1 when a config serves.", 1.0)}

    assert ex_a.endpoint_text("e", gauges) == a.render_endpoint("e", gauges)


def test_watched_counters_are_summed_and_watched_gauges_of_exited_processes_dropped(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    for metrics, admits, held in ((a, 1, 10), (b, 2, 20)):
        metrics.watch("modelport_ratelimit_unchecked_admits", "Admits.", lambda n=admits: n, "counter")
        metrics.watch("modelport_spool_records_in_memory", "Held.", lambda n=held: n, "gauge")
    ex_b.publish()
    assert _parse(ex_a.server_text())[_key("modelport_spool_records_in_memory")] == 30
    _exited(ex_b)

    merged = _parse(ex_a.server_text())

    assert merged[_key("modelport_ratelimit_unchecked_admits_total")] == 3
    assert merged[_key("modelport_spool_records_in_memory")] == 10


class _Set:
    def __init__(self, name: str, stats: dict[str, int]) -> None:
        self.name = name
        self._stats = stats

    def stats(self) -> dict[str, int]:
        return self._stats


class _Backend:
    def __init__(self, sets: list[tuple[str, int, _Set]]) -> None:
        self.sets = sets

    def all_sets(self) -> list[tuple[str, int, _Set]]:
        return self.sets


def test_replica_stats_are_summed_over_live_processes(tmp_path: Path) -> None:
    leader = _Backend(
        [
            ("id-e", 2, _Set("m", {"replicas": 2, "in_flight": 3, "queued": 1})),
            ("id-e", 1, _Set("m", {"replicas": 1, "in_flight": 0, "queued": 0})),
        ]
    )
    other = _Backend([("id-e", 2, _Set("m", {"in_flight": 4}))])
    _, ex_a = _process(tmp_path, "w0")
    ex_leader = MetricsExchange(tmp_path, Metrics(), "w1", replicas=leader)
    ex_other = MetricsExchange(tmp_path, Metrics(), "w2", replicas=other)
    ex_leader.publish()
    ex_other.publish()

    assert ex_a.replica_stats("id-e", 2, {}) == {"m": {"replicas": 2.0, "in_flight": 7.0, "queued": 1.0}}
    assert ex_a.replica_stats("id-e", 2, {"m": {"in_flight": 1, "engine": "llama"}}) == {
        "m": {"replicas": 2.0, "in_flight": 8.0, "queued": 1.0}
    }
    _exited(ex_leader)
    assert ex_a.replica_stats("id-e", 2, {}) == {"m": {"in_flight": 4.0}}


def test_a_deleted_endpoint_is_forgotten_by_every_process(tmp_path: Path) -> None:
    a, ex_a = _process(tmp_path, "w0")
    b, ex_b = _process(tmp_path, "w1")
    c, ex_c = _process(tmp_path, "w2")
    for metrics in (a, b, c):
        metrics.endpoint_requests.labels("gone", "m", "200").inc(1)
        metrics.endpoint_requests.labels("kept", "m", "200").inc(1)
    for exchange in (ex_a, ex_b, ex_c):
        exchange.publish()
    _exited(ex_c)
    time.sleep(0.01)  # the tombstone must be later than the files published before it

    a.forget_endpoint("gone")  # what deleting the endpoint in process a does
    merged = _parse(ex_a.server_text())
    seen_by_b = _parse(ex_b.server_text())  # b drops its own series when it next looks

    for text in (merged, seen_by_b):
        assert not [k for k in text if ("endpoint", "gone") in k[1]]
        assert (
            text[_key("modelport_endpoint_requests_total", endpoint="kept", served_entity="m", status="200")]
            == 3
        )
    assert not [labels for labels in b.endpoint_requests._metrics if labels[0] == "gone"]
    b.endpoint_requests.labels("gone", "m", "200").inc(1)  # created again, queried in b
    ex_b.publish()
    assert (
        _parse(ex_a.server_text())[
            _key("modelport_endpoint_requests_total", endpoint="gone", served_entity="m", status="200")
        ]
        == 1
    )


def test_a_tombstone_left_before_a_process_started_does_not_drop_its_series(tmp_path: Path) -> None:
    a, _ = _process(tmp_path, "w0")
    a.forget_endpoint("e")
    b, ex_b = _process(tmp_path, "w1")
    b.endpoint_requests.labels("e", "m", "200").inc(2)

    merged = _parse(ex_b.server_text())

    assert (
        merged[_key("modelport_endpoint_requests_total", endpoint="e", served_entity="m", status="200")] == 2
    )


def test_publish_recreates_an_emptied_folder(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "metrics"
    _a, ex_a = _process(folder, "w0")
    b, ex_b = _process(folder, "w1")
    b.http_requests.labels("GET", "/x", "200").inc(2)

    ex_b.publish()

    assert (
        _parse(ex_a.server_text())[
            _key("modelport_http_requests_total", method="GET", route="/x", status="200")
        ]
        == 2
    )


def test_start_publishes_every_interval_and_stop_publishes_last_counts(tmp_path: Path) -> None:
    _a, ex_a = _process(tmp_path, "w0")
    b = Metrics()
    ex_b = MetricsExchange(tmp_path, b, "w1", interval_seconds=0.02)
    key = _key("modelport_http_requests_total", method="GET", route="/x", status="200")

    async def scenario() -> None:
        await ex_b.start()
        b.http_requests.labels("GET", "/x", "200").inc(2)
        deadline = time.monotonic() + 5
        while _parse(ex_a.server_text()).get(key) != 2:
            assert time.monotonic() < deadline, "never published"
            await asyncio.sleep(0.01)
        await ex_b.stop()
        b.http_requests.labels("GET", "/x", "200").inc(1)
        await ex_b.stop()  # stopping twice only publishes again

    asyncio.run(scenario())

    assert _parse(ex_a.server_text())[key] == 3


@pytest.mark.parametrize("process_id", ["", "a/b", "..", "w 1", "x" * 65])
def test_process_id_must_be_a_plain_file_name(tmp_path: Path, process_id: str) -> None:
    with pytest.raises(ValueError, match="process_id"):
        MetricsExchange(tmp_path, Metrics(), process_id)


def test_a_scrape_of_four_processes_with_hundreds_of_series(tmp_path: Path) -> None:
    """Measures a scrape (printed; run with -s to see it): 4 processes, 300 series each."""
    processes = [_process(tmp_path, f"w{i}") for i in range(4)]
    for metrics, _ in processes:
        for e in range(20):
            for status in ("200", "400", "429", "500", "503"):
                metrics.endpoint_requests.labels(f"endpoint-{e}", "m", status).inc()
            metrics.endpoint_latency.labels(f"endpoint-{e}", "m").observe(0.01)
            metrics.endpoint_in_flight.labels(f"endpoint-{e}", "m").set(1)
        for r in range(60):
            metrics.http_requests.labels("GET", f"/route/{r}", "200").inc()
    for _, exchange in processes[1:]:
        exchange.publish()
    first = processes[0][1]
    first.server_text()  # the files parsed once; a scrape every second reparses the changed ones

    runs = 20
    started = time.perf_counter()
    for _ in range(runs):
        text = first.server_text()
    server_ms = (time.perf_counter() - started) / runs * 1000
    started = time.perf_counter()
    for _ in range(runs):
        first._cache.clear()  # as when every file changed since the last scrape
        first.server_text()
    cold_ms = (time.perf_counter() - started) / runs * 1000
    started = time.perf_counter()
    for _ in range(runs):
        first.endpoint_text("endpoint-3", {})
    endpoint_ms = (time.perf_counter() - started) / runs * 1000
    series = sum(len(f.samples) for f in text_string_to_metric_families(text.decode()))
    print(
        f"\nmetrics exchange, 4 processes, {series} merged samples: /metrics {server_ms:.1f} ms "
        f"(files cached), {cold_ms:.1f} ms (all files reparsed); endpoint metrics {endpoint_ms:.1f} ms"
    )

    merged = _parse(text)
    assert merged[_key("modelport_http_requests_total", method="GET", route="/route/59", status="200")] == 4
    assert (
        merged[_key("modelport_endpoint_in_flight_requests", endpoint="endpoint-19", served_entity="m")] == 4
    )
