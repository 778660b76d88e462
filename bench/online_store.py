"""Embedded online store: publish time for a big feature table, and key-lookup latency.

Builds a feature table of ``--rows`` rows (an int64 key in shuffled order and 10 float64
features), then measures, in this process:

- ``publish (Arrow -> SQLite)``: :meth:`OnlineStore.publish` of the table already in memory (the
  issue's target: 1 million rows in at most 30 s);
- ``publish (Delta -> SQLite)``: what the server does for ``publish_table``: read the Delta table at
  its version with :class:`FeatureTables`, then publish it;
- lookup latency of :meth:`OnlineReader.lookup` with the 10 features named (as a served model asks),
  for 1 random key and for 100 random keys per call, p50/p99 over ``--calls`` calls after a warm-up.

Run: ``python bench/online_store.py [--rows 1000000] [--calls 5000]``. Everything lives in a
temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from modelport.tables.features import FeatureTables
from modelport.tables.online_store import OnlineReader, OnlineStore

FEATURES = [f"f{i}" for i in range(10)]


def build(rows: int) -> pa.Table:
    rng = np.random.default_rng(7)
    columns = {"customer_id": rng.permutation(rows).astype(np.int64)}
    for name in FEATURES:
        columns[name] = rng.random(rows)
    return pa.table(columns)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(reader: OnlineReader, rows: int, per_call: int, calls: int) -> dict[str, float]:
    rng = random.Random(11)
    batches = [[(rng.randrange(rows),) for _ in range(per_call)] for _ in range(calls)]
    for keys in batches[: max(50, calls // 20)]:  # warm-up: connection, statements, page cache
        reader.lookup("main.fs.bench", keys, FEATURES)
    samples = []
    for keys in batches:
        start = time.perf_counter()
        out = reader.lookup("main.fs.bench", keys, FEATURES)
        samples.append((time.perf_counter() - start) * 1000)
        assert out[0] is not None
    return {
        "p50": statistics.median(samples),
        "p99": percentile(samples, 99),
        "mean": statistics.fmean(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in the feature table (default 1000000)"
    )
    parser.add_argument("--calls", type=int, default=5_000, help="lookup calls per cell (default 5000)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="online-bench-") as tmp:
        root = Path(tmp)
        data = build(args.rows)
        tables = FeatureTables(str(root / "tables"))
        start = time.perf_counter()
        schema = data.schema
        tables.create("main.fs.bench", ["customer_id"], schema, description="bench", data=data)
        delta_write = time.perf_counter() - start
        info = tables.get("main.fs.bench")

        store = OnlineStore(root / "online" / "features.sqlite")
        start = time.perf_counter()
        state = store.publish(info, data, mode="snapshot")
        arrow_publish = time.perf_counter() - start
        assert state["rows"] == args.rows

        start = time.perf_counter()
        table = tables.read(info.name, info.version)
        delta_read = time.perf_counter() - start
        store.publish(info, table, mode="snapshot")
        delta_publish = time.perf_counter() - start

        size = sum(p.stat().st_size for p in (root / "online").iterdir()) / 2**20
        reader = OnlineReader(root / "online" / "features.sqlite")
        one = measure(reader, args.rows, 1, args.calls)
        hundred = measure(reader, args.rows, 100, max(200, args.calls // 2))
        reader.close()
        store.close()

    print(f"online store bench: {args.rows:,} rows (int64 key + 10 float64), {os.cpu_count()} CPUs")
    print("| step | seconds |\n|---|---:|")
    print(f"| Delta write (create + first write) | {delta_write:.2f} |")
    print(f"| publish (Arrow -> SQLite) | {arrow_publish:.2f} |")
    print(f"| publish (Delta read {delta_read:.2f} s + Arrow -> SQLite) | {delta_publish:.2f} |")
    print(f"\nSQLite file: {size:.0f} MiB\n")
    print("| lookup (10 features named) | calls | p50 ms | p99 ms | mean ms |\n|---|---:|---:|---:|---:|")
    calls_100 = max(200, args.calls // 2)
    print(f"| 1 key | {args.calls} | {one['p50']:.3f} | {one['p99']:.3f} | {one['mean']:.3f} |")
    print(f"| 100 keys | {calls_100} | {hundred['p50']:.3f} | {hundred['p99']:.3f} | {hundred['mean']:.3f} |")


if __name__ == "__main__":
    main()
