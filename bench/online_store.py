"""Online stores: publish time for a big feature table, and key-lookup latency.

Builds a feature table of ``--rows`` rows (an int64 key in shuffled order and 10 float64
features), then measures, in this process:

- ``publish (Arrow -> SQLite)``: :meth:`OnlineStore.publish` of the table already in memory (the
  issue's target: 1 million rows in at most 30 s);
- ``publish (Delta -> SQLite)``: what the server does for ``publish_table``: read the Delta table at
  its version with :class:`FeatureTables`, then publish it;
- lookup latency of :meth:`OnlineReader.lookup` with the 10 features named (as a served model asks),
  for 1 random key and for 100 random keys per call, p50/p99 over ``--calls`` calls after a warm-up.

With ``--stores sqlite,postgresql,redis`` the same table is also published to PostgreSQL (``--pg``,
a schema of its own) and Redis (``--redis``, a key prefix of its own), and the same lookups are
timed there (over loopback TCP: each lookup is one round trip), beside the embedded store's.

Run: ``python bench/online_store.py [--rows 1000000] [--calls 5000] [--stores sqlite,postgresql,redis]``.
Everything lives in a temporary folder, schema or key prefix that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from modelport.tables.features import FeatureTableInfo, FeatureTables
from modelport.tables.online_store import OnlineReader, OnlineStore
from modelport.tables.online_stores import LookupReader, open_reader, open_store

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


def measure(reader: LookupReader, rows: int, per_call: int, calls: int) -> dict[str, float]:
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


def other_store(kind: str, url: str, info: FeatureTableInfo, data: pa.Table, calls: int) -> dict[str, float]:
    """Publish ``data`` to a fresh schema (PostgreSQL) or key prefix (Redis) at ``url``, time
    1-key and 100-key lookups, then remove everything it made."""
    namespace = f"bench_{uuid.uuid4().hex[:10]}"
    param = f"schema={namespace}" if kind == "postgresql" else f"prefix=mp-bench:{namespace}:"
    location = f"{url}{'&' if '?' in url else '?'}{param}"
    store = open_store(location)
    try:
        start = time.perf_counter()
        assert store.publish(info, data, mode="snapshot")["rows"] == data.num_rows
        published = time.perf_counter() - start
        reader = open_reader(location)
        one = measure(reader, data.num_rows, 1, calls)
        hundred = measure(reader, data.num_rows, 100, max(200, calls // 2))
        reader.close()
    finally:
        store.drop(info.name)
        store.close()
        if kind == "postgresql":
            import psycopg

            with psycopg.connect(url, autocommit=True) as con:
                con.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
        else:
            import redis

            with redis.Redis.from_url(url) as client:
                client.delete(f"mp-bench:{namespace}:tables", f"mp-bench:{namespace}:generation")
    return {
        "publish": published,
        "p50_1": one["p50"],
        "p99_1": one["p99"],
        "p50_100": hundred["p50"],
        "p99_100": hundred["p99"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in the feature table (default 1000000)"
    )
    parser.add_argument("--calls", type=int, default=5_000, help="lookup calls per cell (default 5000)")
    parser.add_argument(
        "--stores",
        default="sqlite",
        help="stores to time, comma-separated: sqlite, postgresql, redis (default sqlite)",
    )
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL database of --stores postgresql (default postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/0",
        help="Redis database of --stores redis (default redis://127.0.0.1:6379/0)",
    )
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"sqlite", "postgresql", "redis"}
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")
    others: dict[str, dict[str, float]] = {}

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
        for kind in stores:
            if kind != "sqlite":
                url = args.pg if kind == "postgresql" else args.redis
                others[kind] = other_store(kind, url, info, data, args.calls)

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
    if others:
        print(
            "\n| store | publish (Arrow ->) s | 1 key p50 ms | 1 key p99 ms | 100 keys p50 ms "
            "| 100 keys p99 ms |\n|---|---:|---:|---:|---:|---:|"
        )
        print(
            f"| sqlite (embedded) | {arrow_publish:.2f} | {one['p50']:.3f} | {one['p99']:.3f} | "
            f"{hundred['p50']:.3f} | {hundred['p99']:.3f} |"
        )
        for kind, got in others.items():
            print(
                f"| {kind} | {got['publish']:.2f} | {got['p50_1']:.3f} | {got['p99_1']:.3f} | "
                f"{got['p50_100']:.3f} | {got['p99_100']:.3f} |"
            )


if __name__ == "__main__":
    main()
