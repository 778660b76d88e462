"""What a 25 % shadow costs live traffic: req/s and latency of one endpoint with and without it.

One ``modelport serve`` (system endpoints off) holds two endpoints that differ only in the
shadow: each serves the LogisticRegression of ``custom_model.py`` as ``live`` (100 % of the
traffic) beside a second served entity of the same model, ``shadow`` (0 %), both with an
inference table; ``sh-on`` adds ``"shadow": {"served_entity_name": "shadow", "percentage": 25}``,
so a quarter of its queries is copied to ``shadow`` (after the live answer, on a task of its
own) and recorded with ``shadow_of``. ``sh-off`` is the baseline: the same replicas, no copies.

Closed-loop clients (``loadgen.py``: wrk when installed) query ``/serving-endpoints/{name}/invocations``
with a 1-row ``dataframe_records`` body, at each concurrency, for each endpoint, in orders that
rotate from round to round (no redeploy between cells). The table shows the median over rounds of
req/s, p50 and p99, and the req/s ratio on/off as the median of the per-round ratios (each pair
measured seconds apart, so drift on a shared machine cancels out), and the CPU time per answered
query of the server process and of its replicas (where a copy's cost goes: the shadow model's own
prediction runs in its replica, on the same cores). The copies the server counted in the measured
cells (``modelport_shadow_requests_total`` of ``sh-on``: sent, dropped, error) are shown beside
the answers, as the share of live queries copied.

Targets (issue 21): the 25 % shadow costs at most 5 % of req/s and 1 ms of p50.

Run: ``python bench/shadow.py [--quick] [--rounds 3] [--duration 4] [--concurrency 1,16]
[--out bench/RESULTS.md]`` (about a minute with the defaults).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from harness import (
    FEATURES,
    HEADERS,
    MODEL_NAME,
    PeerFailed,
    Running,
    cpu_seconds,
    descendants,
    first_answer,
    header,
    install_wrk,
    load_average,
    machine,
    median_of,
    publish,
    register_model,
    rotated,
    run_arguments,
    serve_modelport,
    source,
    train_model,
    versions,
    wait_deployed,
    wait_idle,
)
from loadgen import CellResult, Load, driver_name, run_cell

ENDPOINTS = {"off": "sh-off", "on": "sh-on"}
SHADOW = {"served_entity_name": "shadow", "percentage": 25.0}


def endpoint_body(name: str, shadow: bool) -> dict[str, Any]:
    entities = [
        {"name": n, "entity_name": MODEL_NAME, "entity_version": "1", "workload_size": "Small"}
        for n in ("live", "shadow")
    ]
    routes = [
        {"served_entity_name": "live", "traffic_percentage": 100},
        {"served_entity_name": "shadow", "traffic_percentage": 0},
    ]
    config: dict[str, Any] = {"served_entities": entities, "traffic_config": {"routes": routes}}
    if shadow:
        config["shadow"] = SHADOW
    tables = {"catalog_name": "main", "schema_name": "default", "table_name_prefix": name.replace("-", "_")}
    return {
        "name": name,
        "config": config,
        "ai_gateway": {"inference_table_config": {**tables, "enabled": True}},
    }


def query_body() -> bytes:
    rng = np.random.default_rng(1)
    row = dict(zip(FEATURES, np.round(rng.normal(size=5), 4).tolist(), strict=True))
    return orjson.dumps({"dataframe_records": [row]})


BODY = query_body()


def start(workdir: Path, model: object, signature: object) -> Running:
    """The server with both endpoints answering, idle."""
    running = serve_modelport(
        Path(tempfile.mkdtemp(prefix="mp-shadow-", dir=workdir)), system_endpoints=False
    )
    try:
        register_model(running.url, model, signature)
        with httpx.Client(base_url=running.url, headers=HEADERS, timeout=30) as client:
            for key, name in ENDPOINTS.items():
                answer = client.post("/api/2.0/serving-endpoints", json=endpoint_body(name, key == "on"))
                if answer.status_code != 200:
                    raise PeerFailed(f"creating {name}: {answer.status_code} {answer.text[:500]}")
        for name in ENDPOINTS.values():
            wait_deployed(running.url, name)
            first_answer(running.proc, url(running, name), BODY, HEADERS, running.log, 60)
        wait_idle(running)
    except BaseException:
        running.stop()
        raise
    return running


def url(running: Running, name: str) -> str:
    return f"{running.url}/serving-endpoints/{name}/invocations"


def copies(running: Running) -> dict[str, int]:
    """``modelport_shadow_requests_total`` of ``sh-on`` by outcome."""
    text = httpx.get(
        f"{running.url}/api/2.0/serving-endpoints/{ENDPOINTS['on']}/metrics", headers=HEADERS, timeout=30
    ).text
    found = re.findall(r'modelport_shadow_requests_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)', text)
    return {outcome: int(float(value)) for outcome, value in found}


@dataclass
class Cells:
    """Each cell's results over rounds, and the CPU ms per answered query of the server process
    and of its replicas (every process it started) in that cell."""

    results: dict[tuple[str, int], list[CellResult]] = field(default_factory=dict)
    server_ms: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    replicas_ms: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    #: ``modelport_shadow_requests_total`` of ``sh-on`` by outcome, counted in the measured cells.
    copies: dict[str, int] = field(default_factory=dict)


def run(args: argparse.Namespace, running: Running, concurrencies: list[int]) -> Cells:
    cells = [(key, conc) for conc in concurrencies for key in ENDPOINTS]
    out = Cells()
    server = running.proc.pid
    for round_ in range(args.rounds):
        for key, conc in rotated(cells, round_):
            target = url(running, ENDPOINTS[key])
            if args.warmup > 0:
                run_cell(Load(target, BODY, HEADERS, conc, args.warmup, 0), args.driver)
            counted = copies(running) if key == "on" else {}
            children = descendants(server)
            before = cpu_seconds([server]), cpu_seconds(children)
            result = run_cell(Load(target, BODY, HEADERS, conc, args.duration, 0), args.driver)
            spent = cpu_seconds([server]) - before[0], cpu_seconds(children) - before[1]
            for outcome, value in (copies(running) if key == "on" else {}).items():
                out.copies[outcome] = out.copies.get(outcome, 0) + value - counted.get(outcome, 0)
            answered = max(result.requests, 1)
            out.results.setdefault((key, conc), []).append(result)
            out.server_ms.setdefault((key, conc), []).append(1000 * spent[0] / answered)
            out.replicas_ms.setdefault((key, conc), []).append(1000 * spent[1] / answered)
            print(
                f"round {round_ + 1} {key:3} c={conc}: {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                f"p99 {result.p99_ms:.2f} ms, {result.errors} errors; CPU ms/query: server "
                f"{out.server_ms[(key, conc)][-1]:.2f}, replicas {out.replicas_ms[(key, conc)][-1]:.2f}",
                flush=True,
            )
    return out


def report(cells: Cells, concurrencies: list[int]) -> str:
    lines = [
        "| concurrency | shadow | req/s | p50 ms | p99 ms | errors | req/s on/off | p50 on - off "
        "| CPU ms/query server | CPU ms/query replicas |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for conc in concurrencies:
        results = cells.results
        off, on = median_of(results[("off", conc)]), median_of(results[("on", conc)])
        pairs = zip(results[("off", conc)], results[("on", conc)], strict=True)
        ratio = statistics.median([b.rps / a.rps for a, b in pairs if a.rps] or [float("nan")])
        extra = on.p50_ms - off.p50_ms
        for key, m, tail in (("off", off, "| |"), ("on", on, f"| {ratio:.3f} | {extra:+.2f} ms")):
            server = statistics.median(cells.server_ms[(key, conc)])
            replicas = statistics.median(cells.replicas_ms[(key, conc)])
            lines.append(
                f"| {conc} | {'25 %' if key == 'on' else 'none'} | {m.rps:.0f} | {m.p50_ms:.2f} | "
                f"{m.p99_ms:.2f} | {m.errors} {tail} | {server:.2f} | {replicas:.2f} |"
            )
        ok = ratio >= 0.95 and extra <= 1.0
        verdicts.append(
            f"c={conc}: {'met' if ok else 'MISSED'} "
            f"(req/s {100 * (1 - ratio):+.1f} % cost, p50 {extra:+.2f} ms)"
        )
    live = sum(r.requests for (key, _), runs in cells.results.items() if key == "on" for r in runs)
    sent = cells.copies.get("sent", 0)
    lines += [
        "",
        f"Copies the server counted for `sh-on` during the measured cells: sent {sent}, dropped "
        f"{cells.copies.get('dropped', 0)}, error {cells.copies.get('error', 0)}, for {live} live "
        f"queries answered ({100 * sent / max(live, 1):.1f} % copied; wrk does not count the queries "
        "in flight when a cell ends).",
        "",
        "Targets (≤ 5 % req/s, ≤ 1 ms p50): " + "; ".join(verdicts) + ".",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="What a 25 % shadow costs live traffic (req/s, p50, p99).")
    run_arguments(parser, "1 round, 2 s cells")
    parser.set_defaults(duration=4.0, rounds=3)
    parser.add_argument("--concurrency", default="1,16", help="closed-loop connections (default %(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    if args.driver == "auto":
        install_wrk()
    driver = driver_name(args.driver)
    host = machine()  # before the run: the load average is the machine's, not ours
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp:
        model, signature, _ = train_model(Path(tmp))
        running = start(Path(tmp), model, signature)
        try:
            cells = run(args, running, concurrencies)
        finally:
            running.stop()
    tables = report(cells, concurrencies)
    items = [
        f"Machine: {host}; at the end {load_average()}",
        f"Versions: {versions('modelport', 'uvicorn', 'scikit-learn', 'mlflow')}; modelport from {source()}",
        f"Load generator: {driver}, closed loop, {args.warmup:g} s warm-up + {args.duration:g} s per cell, "
        f"{args.rounds} interleaved round(s), {time.monotonic() - started:.0f} s in all; "
        "two endpoints on one server, LogisticRegression (5 features) as `live` (100 %) beside "
        f"`shadow` (0 %), inference tables on; `sh-on` adds `{orjson.dumps(SHADOW).decode()}`; "
        f"body `{BODY.decode()}`",
    ]
    publish(header("shadow traffic (issue 21)", items, "shadow.py", argv), tables, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
