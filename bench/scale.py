"""Does a query cost more when the server holds more endpoints?

Two servers run side by side, one with ``--small`` endpoints (10) and one with ``--large``
(1,000), every endpoint an external chat model in front of one loopback OpenAI fake (no
replicas: the cost measured is the gateway's and the control plane's). Rounds alternate between
the two servers; in each round, on each server:

- ``query``: ``--queries`` sequential queries (c=1) of one endpoint, latency p50 / p99;
- ``query+churn``: the same while another thread creates, updates (``PUT ai-gateway``) and
  deletes other endpoints of that server as fast as it can;
- ``list``: ``GET /api/2.0/serving-endpoints``, p50 over 20 calls;
- ``create``: creating one more endpoint (then deleting it), p50 over 10.

Then each server is restarted and the first query after ``/ready`` is timed (``restart first
query``, with the slowest of the first 20 queries).

Targets (issue 13): with 1,000 endpoints, query p50 and p99 within 10 % (or 0.2 ms) of 10
endpoints, also under churn; listing 1,000 endpoints within 100 ms; no stall after a restart.

Run: ``python bench/scale.py [--large 1000] [--rounds 3] [--source DIR] [--out bench/RESULTS.md]``
(``--source``: run the server from another checkout, e.g. an older commit, for comparison).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.openai_server import API_KEY, FakeOpenAI  # noqa: E402
from tests.serverproc import ADMIN_TOKEN, ServerProcess  # noqa: E402

API = "/api/2.0/serving-endpoints"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHAT = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 4}


def endpoint_body(name: str, fake_url: str) -> dict[str, object]:
    config = {"custom_provider_url": f"{fake_url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    entity = {
        "name": "gpt",
        "external_model": {
            "provider": "custom",
            "name": "m",
            "task": "llm/v1/chat",
            "custom_provider_config": config,
        },
    }
    return {"name": name, "config": {"served_entities": [entity]}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Fleet:
    """One server and the endpoints it holds."""

    label: str
    size: int
    server: ServerProcess
    fake_url: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.server.url, headers=HEADERS, timeout=60)

    def populate(self) -> None:
        for i in range(self.size):
            r = self.client.post(API, json=endpoint_body(f"ep-{i:05d}", self.fake_url))
            r.raise_for_status()

    def query_latencies(self, count: int, name: str = "ep-00000") -> list[float]:
        out = []
        for _ in range(count):
            started = time.perf_counter()
            r = self.client.post(f"/serving-endpoints/{name}/invocations", json=CHAT)
            out.append((time.perf_counter() - started) * 1000)
            r.raise_for_status()
        return out

    def timed(self, calls: int, call: Callable[[], httpx.Response]) -> list[float]:
        out = []
        for _ in range(calls):
            started = time.perf_counter()
            call().raise_for_status()
            out.append((time.perf_counter() - started) * 1000)
        return out


class Churn:
    """Creates, updates and deletes endpoints of a fleet in a thread until stopped."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.changes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.fleet.server.url, headers=HEADERS, timeout=60) as client:
            i = 0
            while not self._stop.is_set():
                name = f"churn-{i % 20}"
                client.post(API, json=endpoint_body(name, self.fleet.fake_url))
                target = f"ep-{(i * 7) % self.fleet.size:05d}"
                limits = {"rate_limits": [{"calls": 100000 + i, "renewal_period": "minute"}]}
                client.put(f"{API}/{target}/ai-gateway", json=limits)
                client.delete(f"{API}/{name}")
                self.changes += 3
                i += 1


def measure_round(fleet: Fleet, queries: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    fleet.query_latencies(20)  # warm the connection and the server's caches
    out["query"] = fleet.query_latencies(queries)
    with Churn(fleet) as churn:
        time.sleep(0.2)
        out["query+churn"] = fleet.query_latencies(queries)
    out["churn changes"] = [float(churn.changes)]
    out["list"] = fleet.timed(20, lambda: fleet.client.get(API))

    def create_and_delete() -> httpx.Response:
        r = fleet.client.post(API, json=endpoint_body("scale-probe", fleet.fake_url))
        fleet.client.delete(f"{API}/scale-probe")
        return r

    out["create+delete"] = fleet.timed(10, create_and_delete)
    return out


def restart_first_query(fleet: Fleet) -> tuple[float, float]:
    fleet.client.close()
    fleet.server.stop()
    fleet.server.start(timeout=300)
    fleet.client = httpx.Client(base_url=fleet.server.url, headers=HEADERS, timeout=60)
    latencies = fleet.query_latencies(20)
    return latencies[0], max(latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--source", type=Path, default=None, help="run the servers from this checkout")
    parser.add_argument("--out", type=Path, default=None, help="append the tables to this file")
    args = parser.parse_args(argv)

    cwd = os.getcwd()
    if args.source is not None:
        os.chdir(args.source)  # `python -m modelport` imports the package from the working directory
    fake = FakeOpenAI().start()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    fleets = []
    load_before = os.getloadavg()
    try:
        for label, size in (("small", args.small), ("large", args.large)):
            server = ServerProcess(work / label).start(timeout=300)
            fleet = Fleet(label, size, server, fake.url)
            started = time.perf_counter()
            fleet.populate()
            print(f"{label}: {size} endpoints created in {time.perf_counter() - started:.1f} s", flush=True)
            fleets.append(fleet)
        results: dict[str, dict[str, list[list[float]]]] = {f.label: {} for f in fleets}
        for round_ in range(args.rounds):
            order = fleets if round_ % 2 == 0 else list(reversed(fleets))
            for fleet in order:
                for metric, values in measure_round(fleet, args.queries).items():
                    results[fleet.label].setdefault(metric, []).append(values)
                print(f"round {round_ + 1}: {fleet.label} done", flush=True)
        restarts = {f.label: restart_first_query(f) for f in fleets}
    finally:
        for fleet in fleets:
            fleet.client.close()
            fleet.server.stop()
        fake.stop()
        os.chdir(cwd)
    table = render(args, fleets, results, restarts, load_before)
    print(table)
    if args.out is not None:
        with args.out.open("a") as out:
            out.write("\n" + table)
    return 0


def _median_of_rounds(rounds: list[list[float]], q: float) -> float:
    return statistics.median(percentile(r, q) for r in rounds)


def render(
    args: argparse.Namespace,
    fleets: list[Fleet],
    results: dict[str, dict[str, list[list[float]]]],
    restarts: dict[str, tuple[float, float]],
    load: tuple[float, float, float],
) -> str:
    small, large = fleets[0], fleets[1]
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: endpoints at scale (bench/scale.py)",
        "",
        f"- Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in load)}",
        f"- Servers: {small.size} and {large.size} external-model endpoints (a loopback OpenAI fake), "
        f"side by side; {args.rounds} alternating rounds of {args.queries} sequential queries per cell; "
        f"source: {args.source or 'this checkout'}",
        f"- Command: `python bench/scale.py --large {args.large} --rounds {args.rounds} "
        f"--queries {args.queries}`",
        "",
        f"| measure | {small.size} endpoints | {large.size} endpoints | ratio |",
        "|---|---:|---:|---:|",
    ]
    for metric, q, name in (
        ("query", 0.5, "query p50 ms"),
        ("query", 0.99, "query p99 ms"),
        ("query+churn", 0.5, "query p50 ms, while endpoints change"),
        ("query+churn", 0.99, "query p99 ms, while endpoints change"),
        ("list", 0.5, "list endpoints p50 ms"),
        ("create+delete", 0.5, "create + delete one p50 ms"),
    ):
        a = _median_of_rounds(results[small.label][metric], q)
        b = _median_of_rounds(results[large.label][metric], q)
        lines.append(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
    changes = [statistics.median(v[0] for v in results[f.label]["churn changes"]) for f in fleets]
    lines.append(f"| changes made during the churn cell | {changes[0]:.0f} | {changes[1]:.0f} | |")
    (a1, amax), (b1, bmax) = restarts[small.label], restarts[large.label]
    lines.append(
        f"| restart: first query ms (slowest of 20) | {a1:.1f} ({amax:.1f}) | {b1:.1f} ({bmax:.1f}) | |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
