"""Feature-spec endpoints against Feast's Python feature server (issue 18, item 5).

The same feature table, served two ways on the same machine, queried for 1 key and 10 features:

- ``modelport``: ``modelport serve`` (as shipped: one process, the embedded SQLite online store),
  a feature table ``main.bench_fs.customers`` (int64 ``customer_id``, ``f0``..``f9`` float64)
  written with ``FeatureEngineeringClient.create_table`` and published, a feature spec of its 10
  features (``create_feature_spec``) and an endpoint serving it (``"is_feature_serving": true``);
  the query is ``POST /serving-endpoints/{name}/invocations {"dataframe_records": [{"customer_id": k}]}``
  and the answer ``{"outputs": [{...10 features}]}``, through the whole governed pipeline
  (token auth, CAN_QUERY, metrics).
- ``feast (redis)`` and ``feast (sqlite)``: ``feast serve`` configured as Feast's docs advise for
  throughput (``--workers -1`` = 2 x cores + 1 processes, ``--worker-connections 1000``,
  ``--registry_ttl_sec 60``, ``--no-access-log``), from a virtual environment of its own under
  ``bench/.venvs/feast`` (Feast's pins clash with modelport's), over the same rows: one entity
  and one feature view of the 10 features, ``feast apply`` then ``feast materialize``; Redis on
  127.0.0.1:6379 (Feast's recommended production store; its published p99 figures are on Redis)
  and Feast's default SQLite store. The query is ``POST /get-online-features {"features":
  ["customers:f0", ...], "entities": {"customer_id": [k]}}``; no authentication (Feast's server
  has none unless configured).

Both answer the same 10 numbers for the key (checked before measuring). Cells: wrk
(``loadgen.py``) at c=1 (latency) and c=64 (throughput), interleaved rounds whose order rotates;
tables show medians over rounds, ratios are medians of per-round ratios.

Run: ``python bench/feature_spec_serving.py [--quick] [--rounds 3] [--rows 100000]
[--feast redis,sqlite] [--out bench/RESULTS.md]`` (``make bench-feature-serving``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from harness import (
    ADMIN_TOKEN,
    BENCH,
    HEADERS,
    PeerFailed,
    Running,
    free_port,
    header,
    install_wrk,
    load_average,
    machine,
    median_of,
    peer_venv,
    publish,
    rotated,
    run_arguments,
    serve_modelport,
    source,
    wait_deployed,
    wait_get,
    wait_idle,
)
from loadgen import CellResult, Load, driver_name, run_cell

FEAST_SPEC = ("feast[redis]==0.67.0",)
FEAST_VENV = BENCH / ".venvs" / "feast"
TABLE = "main.bench_fs.customers"
SPEC = "main.bench_fs.customer_features"
ENDPOINT = "bench-feature-spec"
FEATURES = [f"f{i}" for i in range(10)]
KEY = 4242
REDIS_URL = "127.0.0.1:6379"
REDIS_DB = 7  # Feast's keys land in a database of their own, flushed before and after


def feast_python() -> Path | None:
    """The Python of Feast's own environment, built when missing."""
    return peer_venv(FEAST_VENV, FEAST_SPEC, "Feast")


def make_data(rows: int) -> pa.Table:
    rng = np.random.default_rng(18)
    columns: dict[str, Any] = {"customer_id": pa.array(np.arange(rows, dtype=np.int64))}
    for name in FEATURES:
        columns[name] = pa.array(rng.normal(size=rows).round(6))
    return pa.table(columns)


# ---- modelport ---------------------------------------------------------------------------------------
def start_modelport(workdir: Path, data: pa.Table) -> tuple[Running, Load]:
    from modelport.features import FeatureEngineeringClient, FeatureLookup

    running = serve_modelport(workdir / "modelport")
    fe = FeatureEngineeringClient(host=running.url, token=ADMIN_TOKEN)
    fe.create_table(name=TABLE, primary_keys="customer_id", df=data, description="bench")
    started = time.monotonic()
    fe.publish_table(TABLE, mode="snapshot")
    running.phases["publish"] = time.monotonic() - started
    fe.create_feature_spec(name=SPEC, features=[FeatureLookup(table_name=TABLE, lookup_key="customer_id")])
    body = {
        "name": ENDPOINT,
        "config": {"served_entities": [{"entity_name": SPEC}]},
        "is_feature_serving": True,
    }
    answer = httpx.post(f"{running.url}/api/2.0/serving-endpoints", json=body, headers=HEADERS, timeout=60)
    if answer.status_code != 200:
        raise PeerFailed(f"modelport: creating the feature-spec endpoint: {answer.status_code} {answer.text}")
    wait_deployed(running.url, ENDPOINT)
    load = Load(
        f"{running.url}/serving-endpoints/{ENDPOINT}/invocations",
        orjson.dumps({"dataframe_records": [{"customer_id": KEY}]}),
        {"Content-Type": "application/json", **HEADERS},
        1,
    )
    return running, load


def modelport_values(load: Load) -> list[float]:
    answer = httpx.post(load.url, content=load.body, headers=dict(load.headers), timeout=30)
    answer.raise_for_status()
    row = answer.json()["outputs"][0]
    return [float(row[name]) for name in FEATURES]


# ---- Feast -----------------------------------------------------------------------------------------
REPO = """
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64, Int64

customer = Entity(name="customer", join_keys=["customer_id"])
source = FileSource(path="{parquet}", timestamp_field="event_timestamp")
customers = FeatureView(
    name="customers",
    entities=[customer],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="customer_id", dtype=Int64),
        *[Field(name=f"f{{i}}", dtype=Float64) for i in range(10)],
    ],
    online=True,
    source=source,
)
"""


def _flush_redis() -> None:
    import redis

    host, port = REDIS_URL.split(":")
    redis.Redis(host=host, port=int(port), db=REDIS_DB).flushdb()


def start_feast(python: Path, workdir: Path, data: pa.Table, store: str) -> Running:
    repo = workdir / f"feast-{store}"
    repo.mkdir()
    parquet = repo / "customers.parquet"
    stamp = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    pq.write_table(
        data.append_column("event_timestamp", pa.array([stamp] * len(data), pa.timestamp("us", "UTC"))),
        parquet,
    )
    (repo / "repo.py").write_text(REPO.format(parquet=parquet))
    online = (
        f'  type: redis\n  connection_string: "{REDIS_URL},db={REDIS_DB}"\n'
        if store == "redis"
        else f"  type: sqlite\n  path: {repo / 'online.db'}\n"
    )
    (repo / "feature_store.yaml").write_text(
        "project: bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        f"online_store:\n{online}"
        "offline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n"
    )
    if store == "redis":
        _flush_redis()
    feast = str(python.parent / "feast")
    log = repo / "feast.log"
    started = time.monotonic()
    for cmd in (
        [feast, "apply"],
        [
            feast,
            "materialize",
            (stamp - dt.timedelta(days=1)).isoformat(),
            dt.datetime.now(dt.UTC).isoformat(),
        ],
    ):
        done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            raise PeerFailed(f"feast {cmd[1]}: {(done.stderr or done.stdout)[-1500:]}")
    materialize = time.monotonic() - started
    port = free_port()
    cmd = [
        feast, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "-1",
        "--worker-connections", "1000", "--registry_ttl_sec", "60", "--no-access-log",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=repo,
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    running = Running(url, {}, 0.0, proc, log, str(repo))
    try:
        wait_get(proc, f"{url}/health", log, 120)
    except PeerFailed:
        running.stop()
        raise
    running.startup_s = time.monotonic() - started
    running.phases["materialize"] = materialize
    return running


def feast_load(running: Running) -> Load:
    body = {"features": [f"customers:{n}" for n in FEATURES], "entities": {"customer_id": [KEY]}}
    return Load(
        f"{running.url}/get-online-features", orjson.dumps(body), {"Content-Type": "application/json"}, 1
    )


def feast_values(load: Load) -> list[float]:
    answer = httpx.post(load.url, content=load.body, headers=dict(load.headers), timeout=30)
    answer.raise_for_status()
    doc = answer.json()
    names = doc["metadata"]["feature_names"]
    results = doc["results"]
    # Column-oriented (one result per feature, in metadata order), as the proto says.
    values = {name: result["values"][0] for name, result in zip(names, results, strict=True)}
    return [float(values[name]) for name in FEATURES]


# ---- rounds -------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    cells: dict[tuple[str, int], list[CellResult]] = field(default_factory=dict)
    ratios: dict[tuple[str, int], list[float]] = field(default_factory=dict)


def run_rounds(loads: dict[str, Load], args: argparse.Namespace) -> Outcome:
    out = Outcome()
    names = list(loads)
    for round_ in range(args.rounds):
        for conc in (1, 64):
            got: dict[str, CellResult] = {}
            for name in rotated(names, round_):
                load = Load(
                    loads[name].url, loads[name].body, loads[name].headers, conc, args.duration, args.warmup
                )
                got[name] = run_cell(load, args.driver)
                out.cells.setdefault((name, conc), []).append(got[name])
                print(
                    f"round {round_ + 1} c={conc} {name}: {got[name].rps:,.0f} req/s "
                    f"p50 {got[name].p50_ms:.2f} ms "
                    f"p99 {got[name].p99_ms:.2f} ms errors {got[name].errors}",
                    flush=True,
                )
            mine = got["modelport"]
            for name, cell in got.items():
                if name != "modelport" and cell.rps > 0:
                    out.ratios.setdefault((name, conc), []).append(mine.rps / cell.rps)
    return out


def report(out: Outcome, loads: dict[str, Load], phases: dict[str, dict[str, float]], rows: int) -> str:
    lines = [
        f"Feature-spec endpoint vs Feast's feature server: 1 key, 10 float64 features, {rows:,} rows.",
        "",
        "| peer | c=1 p50 ms | c=1 p99 ms | c=64 req/s | c=64 p99 ms "
        "| modelport req/s ÷ peer (c=1 / c=64) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in loads:
        one, many = median_of(out.cells[(name, 1)]), median_of(out.cells[(name, 64)])
        errors = sum(c.errors for conc in (1, 64) for c in out.cells[(name, conc)])
        if name == "modelport":
            ratio = "—"
        else:
            r1 = statistics.median(out.ratios.get((name, 1), [0.0]))
            r64 = statistics.median(out.ratios.get((name, 64), [0.0]))
            ratio = f"{r1:.2f}x / {r64:.2f}x"
        lines.append(
            f"| {name} | {one.p50_ms:.2f} | {one.p99_ms:.2f} | {many.rps:,.0f} | {many.p99_ms:.2f} "
            f"| {ratio} | {errors} |"
        )
    lines += [
        "",
        "Set-up times (s): "
        + "; ".join(f"{n}: " + ", ".join(f"{k} {v:.1f}" for k, v in p.items()) for n, p in phases.items()),
    ]
    return "\n".join(lines) + "\n"


def targets(out: Outcome) -> list[str]:
    p99 = median_of(out.cells[("modelport", 1)]).p99_ms
    lines = [f"- feature-spec endpoint p99 at c=1 <= 2 ms: {p99:.2f} ms ({'met' if p99 <= 2 else 'missed'})"]
    feast = [k for k in out.ratios if k[1] == 64]
    if feast:
        best = min(statistics.median(out.ratios[k]) for k in feast)
        lines.append(
            f"- req/s >= 3x Feast's Python feature server (c=64, its fastest store here): {best:.2f}x "
            f"({'met' if best >= 3 else 'missed'})"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    run_arguments(parser, "1 round of 2 s cells, 20,000 rows")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the table (default %(default)s)")
    parser.add_argument("--feast", default="redis,sqlite", help="Feast online stores to run ('' for none)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.rows = 1, 2.0, 0.5, 20_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_wrk()
    data = make_data(args.rows)
    stores = [s for s in args.feast.split(",") if s]
    python = feast_python() if stores else None
    running: list[Running] = []
    loads: dict[str, Load] = {}
    phases: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fs-") as tmp:
        workdir = Path(tmp)
        try:
            mp, load = start_modelport(workdir, data)
            running.append(mp)
            loads["modelport"] = load
            phases["modelport"] = {"ready": mp.startup_s, **mp.phases}
            expected = modelport_values(load)
            if python is not None:
                for store in stores:
                    feast = start_feast(python, workdir, data, store)
                    running.append(feast)
                    name = f"feast ({store})"
                    loads[name] = feast_load(feast)
                    phases[name] = {"ready": feast.startup_s, **feast.phases}
                    got = feast_values(loads[name])
                    if not np.allclose(got, expected):
                        raise PeerFailed(f"{name} answers {got}, modelport {expected}")
            for peer in running:
                wait_idle(peer)
            out = run_rounds(loads, args)
        finally:
            for peer in running:
                peer.stop()
            if "redis" in stores:
                _flush_redis()
    items = [
        machine(),
        f"Load average before: {load_average()}",
        f"Driver: {driver_name(args.driver)}; {args.rounds} rounds of {args.duration:.0f} s cells",
        source(),
        f"Feast: {' '.join(FEAST_SPEC)} (own venv)" if python is not None else "Feast: not run",
    ]
    text = report(out, loads, phases, args.rows) + "\nTargets:\n" + "\n".join(targets(out)) + "\n"
    publish(header("feature-spec endpoints vs Feast", items, Path(__file__).name, argv), text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
