"""Replica-level micro benchmark: one worker process, batching on and off, no HTTP server.

Starts ``python -m modelport.runtime.worker`` on unix sockets (one per source tree and
batching mode, all at once), then drives each with a closed loop of ``--concurrency``
requests in flight on one connection, the way the server talks to a replica
(``runtime/protocol.py``). Cells are interleaved: every round visits every worker for every
body size, so slow drift of this shared machine hits all of them alike.

    python bench/worker_batching.py                       # this tree, auto vs off
    python bench/worker_batching.py --src before=/tmp/old --src after=.  # compare two trees

The model is ``custom_model.py``'s: a LogisticRegression on 5 features with a signature;
the bodies are ``dataframe_split`` with ``--rows`` rows; a cell ``1+100`` mixes bodies of
1 and 100 rows (connection slot ``i`` sends the ``i``-th size, round robin).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modelport.runtime import protocol  # noqa: E402

FEATURES = [f"x{i}" for i in range(5)]


def save_model(path: Path) -> None:
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) + rng.normal(scale=0.5, size=2000) > 0).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES)
    model = LogisticRegression().fit(frame, y)
    signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(model, str(path), signature=signature, pip_requirements=["scikit-learn"])


def body(rows: int) -> bytes:
    rng = np.random.default_rng(rows)
    data = np.round(rng.normal(size=(rows, 5)), 4).tolist()
    return orjson.dumps({"dataframe_split": {"columns": FEATURES, "data": data}})


@dataclass
class Worker:
    label: str
    src: Path
    mode: str
    socket: str
    proc: subprocess.Popen[bytes] | None = None
    results: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)

    def start(self, model: Path, extra: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.src)}
        args = [sys.executable, "-m", "modelport.runtime.worker", "--socket", self.socket]
        args += ["--model-path", str(model), "--batching", self.mode, *extra]
        self.proc = subprocess.Popen(args, cwd=self.src, env=env, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


async def drive(
    socket: str, payloads: list[bytes], concurrency: int, seconds: float
) -> tuple[int, list[float]]:
    """Closed loop on one connection: ``concurrency`` requests in flight for ``seconds``."""
    reader, writer = await asyncio.open_unix_connection(socket)
    ids = itertools.count(1)
    pending: dict[int, asyncio.Future[int]] = {}

    async def read() -> None:
        while True:
            request_id, kind, _ = await protocol.read_frame(reader)
            pending.pop(request_id).set_result(kind)

    reading = asyncio.get_running_loop().create_task(read())
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def slot(payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        while time.perf_counter() < deadline:
            request_id = next(ids)
            fut: asyncio.Future[int] = loop.create_future()
            pending[request_id] = fut
            sent = time.perf_counter()
            writer.write(protocol.encode(request_id, protocol.PREDICT, payload))
            if await fut != protocol.OK:
                raise RuntimeError("the worker answered an error")
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    await asyncio.gather(*(slot(payloads[i % len(payloads)]) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    reading.cancel()
    writer.close()
    return int(len(latencies) / elapsed), latencies


async def wait_ready(workers: list[Worker]) -> None:
    deadline = time.monotonic() + 180
    for w in workers:
        while not os.path.exists(w.socket):
            if w.proc is not None and w.proc.poll() is not None:
                raise SystemExit(f"worker {w.label}/{w.mode} exited with {w.proc.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit("workers did not start")
            await asyncio.sleep(0.1)


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mpwb-", dir="/tmp"))
    model = tmp / "model"
    save_model(model)
    sources = [s.split("=", 1) if "=" in s else (s, s) for s in args.src or ["this=."]]
    workers = [
        Worker(label, Path(src).resolve(), mode, str(tmp / f"{i}.sock"))
        for i, ((label, src), mode) in enumerate(itertools.product(sources, args.modes.split(",")))
    ]
    extra = ["--max-batch-size", str(args.max_batch_size), "--max-batch-wait-ms", str(args.max_batch_wait_ms)]
    rows_list = args.rows.split(",")
    try:
        for w in workers:
            w.start(model, extra)
        await wait_ready(workers)
        for rnd in range(args.rounds):
            order = workers if rnd % 2 == 0 else workers[::-1]
            for rows in rows_list:
                payloads = [body(int(n)) for n in rows.split("+")]
                for w in order:
                    await drive(w.socket, payloads, args.concurrency, args.warmup)
                    rps, lat = await drive(w.socket, payloads, args.concurrency, args.duration)
                    lat.sort()
                    p50, p99 = lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3
                    w.results.setdefault(rows, []).append((rps, p50, p99))
                    print(f"round {rnd + 1} rows {rows:>5} {w.label:>8} {w.mode:>4}: {rps:6d} req/s "
                          f"p50 {p50:6.2f} ms p99 {p99:6.2f} ms", flush=True)  # fmt: skip
    finally:
        for w in workers:
            w.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nmedian over {args.rounds} rounds, concurrency {args.concurrency}, "
          f"max batch {args.max_batch_size} rows, wait {args.max_batch_wait_ms} ms")  # fmt: skip
    print("| rows | tree | batching | req/s | p50 ms | p99 ms |")
    print("|---:|---|---|---:|---:|---:|")
    for rows in rows_list:
        for w in workers:
            cells = w.results[rows]
            rps, p50, p99 = (statistics.median(c[i] for c in cells) for i in range(3))
            print(f"| {rows} | {w.label} | {w.mode} | {rps:,.0f} | {p50:.2f} | {p99:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", action="append", help="LABEL=DIR of a source tree (repeatable)")
    parser.add_argument("--modes", default="auto,off", help="batching modes (default %(default)s)")
    parser.add_argument("--rows", default="1,100", help="rows per body (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each cell")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-batch-wait-ms", type=float, default=2.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
