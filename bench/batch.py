"""Batch inference (issue 19, first target): ``--rows`` rows of a custom model through ``ai_query`` in
SQL against the same rows sent to the same endpoint by a tuned Python client and by Ray Data.

Set-up: one ``modelport serve`` (system endpoints off), the LogisticRegression of ``harness.py``
(5 float features, an int64 prediction) registered through the MLflow client and served by one
endpoint (``workload_size`` Small, batching as shipped). The rows (5 float64 columns drawn with a
fixed seed) are written as the Delta table ``main.bench.rows`` under the server's tables root
(``<data-dir>/tables/main/bench/rows``, which the SQL route reads).

Paths measured, each answering every row; rows/s = rows / wall seconds seen by this process:

- ``ai_query``: ``POST /api/2.0/modelport/tables/query`` with
  ``SELECT count(*), sum(p) FROM (SELECT ai_query('ep', named_struct('f0', f0, ...)) AS p FROM
  main.bench.rows)``: the server reads the table, and its vectorized function sends the rows to
  the endpoint in-process as ``dataframe_split`` requests (``modelport/batch/ai_query.py``: the
  2048-row vectors of DuckDB's threads share requests of up to ``BATCH_ROWS`` rows; the client
  is also run at that shape, :func:`ai_query_shape`, on the sweep's rows);
- client: ``httpx.AsyncClient`` sending ``dataframe_split`` bodies of ``batch`` rows to
  ``/serving-endpoints/{name}/invocations`` with ``concurrency`` requests in flight (each body
  built from a NumPy block with ``orjson`` inside the timed loop, as a client has to). The sweep
  (``--batches`` x ``--concurrencies``) runs on the first ``--sweep-rows`` rows; the best cell is
  then run on all rows, interleaved with ``ai_query`` over ``--rounds`` rounds (order rotating);
- Ray Data: ``ray.data.from_arrow(table).map_batches(Caller, batch_size=..., concurrency=2)``
  where ``Caller`` is a callable class holding one ``httpx.Client`` per actor (Ray's documented
  pattern for stateful calls, e.g. a client or model loaded once per actor), at the client's best
  batch size, on ``ray.init(num_cpus=2)`` started and shut down by this script; on the first
  ``--ray-rows`` rows, reported as the whole run and as its steady part (:func:`run_ray`);
- in-process ``model.predict`` on all rows, as a reference (no JSON, no HTTP).

Every path's sum of predictions must equal the in-process sum over the same rows.

Ray Data's start-up per execution (starting its actors) is a fixed cost: the target is judged
against its steady rate (see :func:`run_ray`), the higher one. Tables show medians over
rounds. ``--duration``, ``--warmup`` and ``--driver`` (shared options) are not used: every path
sends all its rows once per round.

Run: ``python bench/batch.py [--quick] [--rows 1000000] [--rounds 3] [--out bench/RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow as pa
from harness import (
    FEATURES,
    HEADERS,
    MODEL_NAME,
    PeerFailed,
    header,
    load_average,
    machine,
    one_line,
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

ENDPOINT = "bench-batch"
TABLE = ("main", "bench", "rows")
PACKAGES = ("modelport", "mlflow", "scikit-learn", "duckdb", "deltalake", "httpx", "ray")
TARGET_CLIENT = 0.70  # ai_query >= 70% of the best client's rows/s
TARGET_RAY = 3.0  # ai_query >= 3x Ray Data's rows/s


@dataclass(frozen=True)
class Run:
    rows: int
    seconds: float
    total: int  # the sum of the predictions

    @property
    def rps(self) -> float:
        return self.rows / self.seconds


@dataclass
class Outcome:
    sweep: dict[tuple[int, int], Run] = field(default_factory=dict)
    best: tuple[int, int] = (0, 0)
    shape: tuple[int, int] = (0, 0)  # ai_query's rows per request and requests in flight
    shaped: Run | None = None  # the client at that shape, on the sweep's rows
    ai_query: list[Run] = field(default_factory=list)
    client: list[Run] = field(default_factory=list)
    ray: Run | None = None  # the whole run, actors' start included
    ray_steady: Run | None = None  # first request sent to last answer (see run_ray)
    ray_note: str = ""
    predict: Run | None = None
    expected: dict[int, int] = field(default_factory=dict)  # rows -> in-process sum
    failures: list[str] = field(default_factory=list)


# -- data ------------------------------------------------------------------------------------------


def make_rows(rows: int) -> np.ndarray:
    return np.random.default_rng(19).normal(size=(rows, len(FEATURES)))


def write_table(tables_root: Path, x: np.ndarray) -> Path:
    """``x`` as the Delta table ``main.bench.rows`` under ``tables_root``."""
    from deltalake import write_deltalake

    path = tables_root.joinpath(*TABLE)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({name: x[:, i] for i, name in enumerate(FEATURES)})
    write_deltalake(str(path), table, mode="overwrite")
    return path


# -- the paths -------------------------------------------------------------------------------------


def ai_query_sql() -> str:
    struct = ", ".join(f"'{f}', {f}" for f in FEATURES)
    return (
        f"SELECT count(*) AS n, sum(p) AS s FROM (SELECT ai_query('{ENDPOINT}', named_struct({struct})) AS p"
        f" FROM {'.'.join(TABLE)})"
    )


def ai_query_shape() -> tuple[int, int]:
    """``ai_query``'s rows per request and requests in flight on this machine: DuckDB (one thread
    per CPU) hands each thread 2048 rows at a time, and the threads' vectors share requests of up
    to ``BATCH_ROWS`` rows (``modelport/batch/ai_query.py``)."""
    from modelport.batch.ai_query import BATCH_ROWS

    vectors = (os.cpu_count() or 1) * 2048
    return min(BATCH_ROWS, vectors), max(1, vectors // BATCH_ROWS)


def run_ai_query(base: str) -> Run:
    started = time.perf_counter()
    answer = httpx.post(
        f"{base}/api/2.0/modelport/tables/query", json={"sql": ai_query_sql()}, headers=HEADERS, timeout=1800
    )
    seconds = time.perf_counter() - started
    if answer.status_code != 200:
        raise PeerFailed(f"ai_query: {answer.status_code} {answer.text[:800]}")
    (n, total), *_ = answer.json()["rows"]
    return Run(int(n), seconds, int(total))


def run_client(url: str, x: np.ndarray, batch: int, concurrency: int) -> Run:
    """``x`` in ``dataframe_split`` bodies of ``batch`` rows, ``concurrency`` in flight."""

    async def go() -> int:
        starts = list(range(0, len(x), batch))
        total = 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        headers = {"Content-Type": "application/json", **HEADERS}
        async with httpx.AsyncClient(timeout=300, limits=limits, headers=headers) as client:

            async def worker() -> None:
                nonlocal total
                while starts:
                    start = starts.pop(0)
                    block = x[start : start + batch]
                    body = orjson.dumps(
                        {"dataframe_split": {"columns": FEATURES, "data": block}},
                        option=orjson.OPT_SERIALIZE_NUMPY,
                    )
                    answer = await client.post(url, content=body)
                    if answer.status_code != 200:
                        raise PeerFailed(f"client: {answer.status_code} {answer.text[:500]}")
                    predictions = orjson.loads(answer.content)["predictions"]
                    if len(predictions) != len(block):
                        raise PeerFailed(f"client: {len(predictions)} answers for {len(block)} rows")
                    total += int(sum(predictions))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total

    started = time.perf_counter()
    total = asyncio.run(go())
    return Run(len(x), time.perf_counter() - started, total)


class Caller:
    """Ray Data's stateful transform: one HTTP client per actor, one request per batch; each output
    row also carries when its request was sent and answered (wall clock, shared by the actors)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.client = httpx.Client(timeout=300, headers={"Content-Type": "application/json", **headers})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sent = time.time()
        block = np.column_stack([batch[f] for f in FEATURES])
        body = orjson.dumps(
            {"dataframe_split": {"columns": FEATURES, "data": block}}, option=orjson.OPT_SERIALIZE_NUMPY
        )
        answer = self.client.post(self.url, content=body)
        answer.raise_for_status()
        predictions = np.asarray(orjson.loads(answer.content)["predictions"], dtype=np.int64)
        n = len(predictions)
        return {"prediction": predictions, "sent": np.full(n, sent), "done": np.full(n, time.time())}


def run_ray(url: str, x: np.ndarray, batch: int, actors: int) -> tuple[Run, Run]:
    """``x`` through Ray Data ``map_batches`` with :class:`Caller` on a local 2-CPU Ray: the whole
    run (from ``map_batches`` to the last row read back, its actors' start included) and the
    steady part (from the first request an actor sent to the last answer it got)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, throwaway cluster
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=512 * 1024 * 1024)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        table = pa.table({name: x[:, i] for i, name in enumerate(FEATURES)})
        blocks = max(actors * 4, len(x) // (batch * 8))
        ds = ray.data.from_arrow(table).repartition(blocks).materialize()
        started = time.perf_counter()
        out = ds.map_batches(
            Caller,
            fn_constructor_args=(url, HEADERS),
            batch_size=batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=0.5,  # I/O bound: both actors and the driver fit on the 2 CPUs
        )
        total = rows = 0
        first, last = float("inf"), 0.0
        for got in out.iter_batches(batch_format="numpy", batch_size=None):
            total += int(got["prediction"].sum())
            rows += len(got["prediction"])
            first, last = min(first, float(got["sent"].min())), max(last, float(got["done"].max()))
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    if rows != len(x):
        raise PeerFailed(f"Ray Data answered {rows} rows for {len(x)}")
    return Run(rows, seconds, total), Run(rows, last - first, total)


def run_predict(model: Any, x: np.ndarray) -> Run:
    import pandas as pd

    frame = pd.DataFrame(x, columns=FEATURES)
    started = time.perf_counter()
    total = int(model.predict(frame).sum())
    return Run(len(x), time.perf_counter() - started, total)


# -- the benchmark ---------------------------------------------------------------------------------


def checked(out: Outcome, name: str, run: Run) -> Run:
    want = out.expected.get(run.rows)
    if want is None or run.total != want:
        raise PeerFailed(f"{name}: sum of predictions {run.total} over {run.rows} rows, expected {want}")
    print(f"  {name:<44} {run.rows:>9,} rows {run.seconds:8.2f} s {run.rps:>11,.0f} rows/s", flush=True)
    return run


def attempt(out: Outcome, name: str, fn: Callable[[], Run]) -> Run | None:
    try:
        return checked(out, name, fn())
    except (PeerFailed, OSError, httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
        out.failures.append(f"{name}: {one_line(str(exc) or repr(exc), 800)}")
        print(f"  FAILED {name}: {one_line(str(exc) or repr(exc), 800)}", flush=True)
        return None


def measure(args: argparse.Namespace, workdir: Path) -> Outcome:
    out = Outcome()
    x = make_rows(args.rows)
    sweep_x, ray_x = x[: args.sweep_rows], x[: args.ray_rows]
    model, signature, _ = train_model(workdir)
    for part in (x, sweep_x, ray_x):
        out.expected[len(part)] = run_predict(model, part).total
    data = workdir / "data"
    print("starting modelport serve", flush=True)
    server = serve_modelport(data, system_endpoints=False)
    try:
        base = server.url
        register_model(base, model, signature)
        entity = {"entity_name": MODEL_NAME, "entity_version": "1", "workload_size": "Small"}
        answer = httpx.post(
            f"{base}/api/2.0/serving-endpoints",
            json={"name": ENDPOINT, "config": {"served_entities": [entity]}},
            headers=HEADERS,
            timeout=60,
        )
        if answer.status_code != 200:
            raise PeerFailed(f"creating {ENDPOINT}: {answer.status_code} {answer.text[:500]}")
        wait_deployed(base, ENDPOINT)
        url = f"{base}/serving-endpoints/{ENDPOINT}/invocations"
        started = time.perf_counter()
        write_table(data / "tables", x)
        print(
            f"Delta table of {args.rows:,} rows written in {time.perf_counter() - started:.2f} s", flush=True
        )
        run_client(url, x[:1000], 256, 2)  # warm-up: the replica's first batches
        wait_idle(server)
        print(f"sweep on {len(sweep_x):,} rows; load average {load_average()}", flush=True)
        for batch in args.batches:
            for conc in args.concurrencies:
                got = attempt(
                    out,
                    f"client batch {batch} c={conc}",
                    lambda b=batch, c=conc: run_client(url, sweep_x, b, c),
                )
                if got is not None:
                    out.sweep[(batch, conc)] = got
        if not out.sweep:
            raise PeerFailed("no client cell answered")
        out.best = max(out.sweep, key=lambda k: out.sweep[k].rps)
        out.shape = ai_query_shape()
        out.shaped = attempt(
            out,
            f"client at ai_query's shape: batch {out.shape[0]} c={out.shape[1]}",
            lambda: run_client(url, sweep_x, *out.shape),
        )
        batch, conc = out.best
        paths: list[tuple[str, Callable[[], Run], list[Run]]] = [
            ("ai_query", lambda: run_ai_query(base), out.ai_query),
            (f"client batch {batch} c={conc} (best)", lambda: run_client(url, x, batch, conc), out.client),
        ]
        for round_no in range(args.rounds):
            print(
                f"[round {round_no + 1}/{args.rounds}] {args.rows:,} rows; load average {load_average()}",
                flush=True,
            )
            for name, fn, runs in rotated(paths, round_no):
                wait_idle(server)
                got = attempt(out, name, fn)
                if got is not None:
                    runs.append(got)
        print(f"Ray Data on {len(ray_x):,} rows (batch {batch}, 2 actors)", flush=True)
        wait_idle(server)
        try:
            runs = run_ray(url, ray_x, batch, 2)
            out.ray = checked(out, "Ray Data map_batches (whole run)", runs[0])
            out.ray_steady = runs[1]
            print(f"  Ray Data steady (first request to last answer): {runs[1].rps:,.0f} rows/s", flush=True)
        except (PeerFailed, ImportError, OSError, RuntimeError, ValueError, httpx.HTTPError) as exc:
            out.ray_note = f"Ray Data could not run: {one_line(str(exc) or repr(exc), 800)}"
            out.failures.append(out.ray_note)
            print(f"  FAILED {out.ray_note}", flush=True)
        out.predict = attempt(out, "in-process predict", lambda: run_predict(model, x))
    finally:
        server.stop()
    return out


# -- the report ------------------------------------------------------------------------------------


def _median_rps(runs: list[Run]) -> float:
    return statistics.median(r.rps for r in runs) if runs else float("nan")


def report(out: Outcome, args: argparse.Namespace) -> str:
    ai = _median_rps(out.ai_query)
    client = _median_rps(out.client)
    # The target is judged against Ray's steady rate (its actors' start left out).
    ray = out.ray_steady.rps if out.ray_steady else float("nan")
    ray_kind = "steady"
    batch, conc = out.best
    lines = ["| Path | Rows | Rows/s | Seconds | ai_query / path |", "|---|---:|---:|---:|---:|"]

    def row(name: str, runs: list[Run]) -> None:
        if runs:
            rps = _median_rps(runs)
            secs = statistics.median(r.seconds for r in runs)
            lines.append(f"| {name} | {runs[0].rows:,} | {rps:,.0f} | {secs:.2f} | {ai / rps:.2f}x |")
        else:
            lines.append(f"| {name} | - | failed | - | - |")

    row("`ai_query` in SQL (tables/query route)", out.ai_query)
    row(f"Python client, best: batch {batch}, concurrency {conc}", out.client)
    row(f"Ray Data `map_batches`, batch {batch}, 2 actors: whole run", [out.ray] if out.ray else [])
    row("Ray Data, steady (first request to last answer)", [out.ray_steady] if out.ray_steady else [])
    row("in-process `predict` (reference)", [out.predict] if out.predict else [])
    sweep = ["", f"Client sweep on {args.sweep_rows:,} rows (rows/s):", ""]
    sweep.append("| Batch \\ concurrency | " + " | ".join(str(c) for c in args.concurrencies) + " |")
    sweep.append("|---:|" + "---:|" * len(args.concurrencies))
    for b in args.batches:
        cells = [
            f"{out.sweep[(b, c)].rps:,.0f}" if (b, c) in out.sweep else "failed" for c in args.concurrencies
        ]
        sweep.append(f"| {b} | " + " | ".join(cells) + " |")
    if out.shaped:
        sweep += [
            "",
            f"The same client at `ai_query`'s own shape ({out.shape[0]} rows a request, {out.shape[1]} in "
            f"flight: DuckDB's 2048-row vectors of its {os.cpu_count()} threads sharing requests of up to "
            f"`BATCH_ROWS`): {out.shaped.rps:,.0f} rows/s.",
        ]
    met_client = ai >= TARGET_CLIENT * client
    met_ray = ai >= TARGET_RAY * ray
    targets = [
        "",
        "Targets:",
        f"- `ai_query` >= 70% of the best client: {ai / client:.0%} of it: "
        + ("met" if met_client else "MISSED"),
        f"- `ai_query` >= 3x Ray Data ({ray_kind}): {ai / ray:.2f}x: {'met' if met_ray else 'MISSED'}"
        + (f" ({out.ray_note})" if out.ray_note else ""),
        "- every path's sum of predictions equals in-process `predict`'s over the same rows: "
        + ("yes" if not out.failures else "see failures"),
    ]
    if out.failures:
        targets += ["", "Failures:", *(f"- {f}" for f in out.failures)]
    return "\n".join(lines + sweep + targets) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ai_query vs a tuned client and Ray Data (issue 19).")
    run_arguments(parser, "100,000 rows, 20,000-row sweep of batch 256/1024 x concurrency 2/4, 1 round")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table (default %(default)s)")
    parser.add_argument(
        "--sweep-rows", type=int, default=200_000, help="rows per client sweep cell (default %(default)s)"
    )
    parser.add_argument(
        "--ray-rows",
        type=int,
        default=1_000_000,
        help="rows sent by Ray Data (default: all, at most %(default)s)",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--concurrencies", type=int, nargs="+", default=[2, 4, 8])
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    if args.quick:
        args.rounds = 1
        if "--rows" not in given:
            args.rows = 100_000
        if "--sweep-rows" not in given:
            args.sweep_rows = 20_000
        if "--ray-rows" not in given:
            args.ray_rows = 50_000
        if "--batches" not in given:
            args.batches = [256, 1024]
        if "--concurrencies" not in given:
            args.concurrencies = [2, 4]
    args.sweep_rows = min(args.sweep_rows, args.rows)
    args.ray_rows = min(args.ray_rows, args.rows)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host = machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        out = measure(args, Path(tmp))
    items = [
        f"Machine: {host}; load average at the end {load_average()}; "
        f"whole run {time.monotonic() - started:.0f} s",
        f"Versions: {versions(*PACKAGES)}; modelport from {source()}",
        f"LogisticRegression on {len(FEATURES)} float features (int64 prediction), endpoint `workload_size` "
        f"Small, one server process; {args.rows:,} rows in the Delta table `{'.'.join(TABLE)}`; "
        f"{args.rounds} round(s) of ai_query and the best client, order rotating; rows/s = rows / wall "
        "seconds seen by the benchmark",
    ]
    publish(
        header("batch inference, custom model (issue 19)", items, "batch.py", argv),
        report(out, args),
        args.out,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
